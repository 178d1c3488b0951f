"""`lab --help` and `lab taxonomy validate` never import torch (or transformers): CI stays light."""

from __future__ import annotations

import subprocess
import sys

from .helpers import skill, write_leaf

CODE = """
import sys
from lab_tools.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
else:
    code = 0
heavy = [m for m in ("torch", "transformers", "vllm", "accelerate") if m in sys.modules]
print("HEAVY", heavy, "EXIT", code)
"""


def _run(*args):
    out = subprocess.run([sys.executable, "-c", CODE, *args], capture_output=True, text=True)
    assert "HEAVY" in out.stdout, out.stderr
    return out.stdout


def test_help_and_validate_do_not_import_torch(tmp_path):
    assert "HEAVY [] EXIT 0" in _run("--help")
    write_leaf(tmp_path, "compositional_skills/a/b", skill())
    assert "HEAVY [] EXIT 0" in _run("taxonomy", "validate", str(tmp_path))
    write_leaf(tmp_path, "compositional_skills/a/c", {"version": 3})
    assert "HEAVY [] EXIT 1" in _run("taxonomy", "validate", str(tmp_path))
    assert "HEAVY [] EXIT 0" in _run("taxonomy", "licenses", str(tmp_path))
