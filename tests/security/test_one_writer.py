"""Issue 23 item 9: one writer per run folder and per SDG cache entry.

The faults: two ``lab generate`` or ``lab build`` runs on the same output folder or cache raced
(last writer wins); a checkpoint in the SDG cache that is valid JSON of the wrong shape (``{}``)
crashed every rerun with KeyError. Another process holds the locks here (a child Python that
takes the same ``filelock`` lock), so the attack is a real second writer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.bot.conftest import HAIKU, skill_leaf

pytestmark = pytest.mark.timeout(180)

LIMERICK = [(f"Write a limerick about {t}.", f"A {t} sat down by the sea,\nand sang to a bird in a tree,\n"
             "the bird sang along,\nthe whole day long,\nand both were as glad as can be.")
            for t in ("cat", "goat", "kettle", "river", "clock")]


@pytest.fixture()
def root(tmp_path, cache_dir) -> Path:
    """A taxonomy with two skills leaves (no documents), the scripted teacher in its lab.yaml."""
    r = tmp_path / "taxonomy"
    for rel, task, pairs in (("compositional_skills/writing/poetry/haiku", "Write haiku.", HAIKU),
                             ("compositional_skills/writing/poetry/limerick", "Write limericks.", LIMERICK)):
        (r / rel).mkdir(parents=True)
        (r / rel / "qna.yaml").write_text(skill_leaf(task, pairs), encoding="utf-8")
    (tmp_path / "lab.yaml").write_text("generate:\n  teacher: 'scripted:'\n  samples: 2\n", encoding="utf-8")
    return r


class Holder:
    """A child process holding the ``filelock`` lock at ``path`` until :meth:`release`."""

    def __init__(self, path: Path, seconds: float = 120):
        code = ("import sys, time, filelock\n"
                "lock = filelock.FileLock(sys.argv[1]); lock.acquire()\n"
                "print('held', flush=True)\n"
                "time.sleep(float(sys.argv[2]))\n")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def release(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _generate(run_lab, root: Path, out: Path):
    return run_lab(["generate", str(root), "--out", str(out), "--config", str(root.parent / "lab.yaml"), "--quiet"])


def test_a_second_lab_generate_on_the_same_output_folder_stops(run_lab, root, tmp_path):
    out = tmp_path / "out"
    holder = Holder(out / ".lab-writer.lock")
    try:
        code, cap = _generate(run_lab, root, out)
    finally:
        holder.release()
    assert code == 1 and "Traceback" not in cap.err
    assert "another run is writing to this folder" in cap.err and str(out) in cap.err, cap.err
    assert not (out / "kt1.jsonl").exists() and not (out / "st.jsonl").exists()  # nothing written
    code, cap = _generate(run_lab, root, out)  # the first run is over: the folder is free again
    assert code == 0, cap.err
    assert (out / "st.jsonl").read_text().count("\n") == 4


def test_lab_generate_into_a_folder_of_a_running_build_stops(run_lab, root, tmp_path):
    run = tmp_path / "runs" / "main"
    holder = Holder(run / ".lab-writer.lock")  # `lab build --out runs/main` is running
    try:
        code, cap = _generate(run_lab, root, run / "data")
    finally:
        holder.release()
    assert code == 1 and f"another run is writing to {run.resolve()}" in cap.err, cap.err


def test_a_second_lab_build_on_the_same_output_folder_stops(run_lab, root, tmp_path, monkeypatch):
    from lab_tools import build

    out = tmp_path / "build"
    called = []
    monkeypatch.setattr(build, "run_build", lambda *a, **k: called.append(a))
    holder = Holder(out / ".lab-writer.lock")
    try:
        code, cap = run_lab(["build", str(root), "--out", str(out), "--quiet",
                             "--config", str(root.parent / "lab.yaml")])
    finally:
        holder.release()
    assert code == 1 and "another run is writing to this folder" in cap.err and "lab build" in cap.err, cap.err
    assert called == []  # no stage started


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(p.parent for p in (cache_dir / "sdg").glob("*/*/shard.json"))


def test_a_run_waits_for_the_run_that_writes_the_same_cache_entry(run_lab, root, tmp_path, cache_dir):
    code, cap = _generate(run_lab, root, tmp_path / "first")
    assert code == 0, cap.err
    entry = _entries(cache_dir)[0]
    holder = Holder(entry.parent / f"{entry.name}.lock")
    started = time.monotonic()
    import threading

    threading.Timer(2.0, holder.release).start()  # the other run finishes after 2 s
    code, cap = _generate(run_lab, root, tmp_path / "second")
    assert code == 0, cap.err
    assert "waiting for another run writing cache entry" in cap.err and entry.name[:12] in cap.err, cap.err
    assert time.monotonic() - started >= 1.9


@pytest.mark.parametrize("name,text,words", [
    ("stage-0.json", "{}", "not a stage checkpoint of this cache (missing 'candidates')"),
    ("stage-0.json", '{"candidates": {}}', "not a stage checkpoint of this cache"),
    ("stage-0.json", "[]", "not a stage checkpoint of this cache (an object expected"),
])
def test_a_wrong_shaped_checkpoint_is_treated_as_absent_and_named(run_lab, root, tmp_path, cache_dir, name, text,
                                                                    words):
    code, cap = _generate(run_lab, root, tmp_path / "first")
    assert code == 0, cap.err
    for entry in _entries(cache_dir):
        for f in entry.iterdir():
            f.unlink()
        (entry / name).write_text(text, encoding="utf-8")
    code, cap = _generate(run_lab, root, tmp_path / "again")
    assert code == 0 and "KeyError" not in cap.err, cap.err
    assert words in cap.err and "treated as absent" in cap.err, cap.err
    assert (tmp_path / "again" / "st.jsonl").read_text() == (tmp_path / "first" / "st.jsonl").read_text()


def test_a_wrong_shaped_shard_is_treated_as_absent_and_named(run_lab, root, tmp_path, cache_dir):
    code, cap = _generate(run_lab, root, tmp_path / "first")
    assert code == 0, cap.err
    for entry in _entries(cache_dir):
        (entry / "shard.json").write_text(json.dumps({"key": entry.name}), encoding="utf-8")
    code, cap = _generate(run_lab, root, tmp_path / "again")
    assert code == 0 and "KeyError" not in cap.err, cap.err
    assert "not a shard of this cache (missing 'leaf')" in cap.err
    assert (tmp_path / "again" / "st.jsonl").read_text() == (tmp_path / "first" / "st.jsonl").read_text()
