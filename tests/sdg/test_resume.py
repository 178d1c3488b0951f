"""A `lab generate` killed with SIGKILL mid-run resumes with the same samples and no duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sdg_taxonomy import LEAVES, write_leaf

from lab_tools.jsonl import read_jsonl

REPO = Path(__file__).resolve().parents[2]


def _taxonomy(root: Path) -> None:
    for path, data in LEAVES.items():
        if not path.startswith("knowledge"):
            write_leaf(root, path, data)
    # a third skill, so that the run has several leaves in flight
    write_leaf(root, "compositional_skills/writing/poetry/limerick",
               dict(LEAVES["compositional_skills/writing/poetry/haiku"], task_description="Write a limerick."))


def _cmd(root: Path, out: Path, cache: Path, script: Path) -> list[str]:
    cfg = cache.parent / f"{cache.name}.yaml"
    cfg.write_text(f"cache_dir: {cache}\ngenerate:\n  samples: 4\n")
    return [sys.executable, "-m", "lab_tools", "generate", str(root), "--teacher", f"scripted:{script}",
            "--out", str(out), "--config", str(cfg), "--quiet"]


def _samples(out: Path) -> list[str]:
    return [json.dumps(s, sort_keys=True) for p in ("kt1", "kt2", "st") for s in read_jsonl(out / f"{p}.jsonl")]


@pytest.mark.parametrize("concurrent", [False, True], ids=["rounds", "leaf-threads"])
def test_kill_9_mid_run_then_resume(tmp_path, concurrent):
    """In-process backends run leaves in rounds, server backends each leaf on its own thread:
    both resume exactly."""
    root = tmp_path / "taxonomy"
    _taxonomy(root)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"delay": 0.03, "concurrent": concurrent}))  # ~100 requests: ~3 s
    env = dict(os.environ, PYTHONPATH=str(REPO))

    ref_out = tmp_path / "ref"
    subprocess.run(_cmd(root, ref_out, tmp_path / "ref-cache", script), env=env, check=True,
                   capture_output=True, timeout=120)
    reference = _samples(ref_out)
    assert reference

    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = subprocess.Popen(_cmd(root, out, cache, script), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(cache.rglob("stage-1.json")) and time.monotonic() < deadline:
        time.sleep(0.02)  # wait until the first checkpoints are on disk: we are mid-run
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL  # killed, not finished
    assert not (out / "st.jsonl").exists()  # the datasets are written only at the end

    subprocess.run(_cmd(root, out, cache, script), env=env, check=True, capture_output=True, timeout=120)
    resumed = _samples(out)
    assert len(resumed) == len(set(resumed))  # no duplicates
    assert sorted(resumed) == sorted(reference)  # nothing lost, nothing different
    ids = [json.loads(s)["metadata"]["id"] for s in resumed]
    assert len(ids) == len(set(ids))
