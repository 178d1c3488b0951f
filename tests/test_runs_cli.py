"""`lab runs list` / `lab runs show` on a built run.

``tests/data/built_run/main`` holds the JSON files of a real `lab build` (tests/e2e/build_fixture.py's
taxonomy, scripted teacher and judge, tiny student; commit 0e27bbc): ``build_state.json`` (its
``hash_memo`` emptied), ``run.json``, ``train/manifest.json``, ``eval/eval.json``,
``release/release.json`` and ``SHA256SUMS``, with ``/tmp/...`` paths rewritten to ``/srv/lab``.
tests/e2e/test_build.py also lists a run it has just built."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lab_tools.runs import iso

DATA = Path(__file__).parent / "data" / "built_run"


@pytest.fixture()
def runs_dir(tmp_path) -> Path:
    shutil.copytree(DATA, tmp_path / "runs")
    return tmp_path / "runs"


def _state(run: Path) -> dict:
    return json.loads((run / "build_state.json").read_text())


def test_list_shows_each_run_with_status_time_commit_and_release(runs_dir, run_lab):
    state = _state(runs_dir / "main")
    code, out = run_lab(["runs", "list", "--runs-dir", str(runs_dir), "--json"])
    assert code == 0, out.err
    (row,) = json.loads(out.out)
    commit = json.loads((runs_dir / "main" / "run.json").read_text())["taxonomy"]["commit"]
    assert row == {"name": "main", "path": str(runs_dir / "main"), "status": "done",
                   "finished": iso(state["last_build"]["finished"]), "seconds": state["last_build"]["seconds"],
                   "stages": {"done": 6, "failed": 0, "running": 0}, "commit": commit,
                   "release": str(runs_dir / "main" / "release")}
    code, out = run_lab(["runs", "list", "--runs-dir", str(runs_dir)])
    assert code == 0
    assert out.out.split()[:3] == ["main", "done", iso(state["last_build"]["finished"])]
    assert f"commit {commit[:12]}" in out.out and str(runs_dir / "main" / "release") in out.out


def test_show_gives_stages_fingerprints_times_training_evaluation_and_release(runs_dir, run_lab):
    run = runs_dir / "main"
    state = _state(run)
    code, out = run_lab(["runs", "show", "main", "--runs-dir", str(runs_dir), "--json"])
    assert code == 0, out.err
    d = json.loads(out.out)
    assert [s["name"] for s in d["stages"]] == ["validate", "licenses", "generate", "train", "evaluate", "release"]
    for s in d["stages"]:
        st = state["stages"][s["name"]]
        assert (s["status"], s["fingerprint"], s["seconds"], s["summary"]) == \
            (st["status"], st["fingerprint"], st["seconds"], st["summary"])
        assert s["finished"] == iso(st["finished"])
    manifest = json.loads((run / "train" / "manifest.json").read_text())
    assert d["training"]["selected"] == manifest["selected"]
    assert {p: e["steps"] for p, e in d["training"]["phases"].items()} == {"kt1": 2, "kt2": 2, "st": 2}
    assert d["training"]["phases"]["st"]["decision"]["n"] == manifest["phases"]["st"]["decision"]["n"]
    totals = json.loads((run / "eval" / "eval.json").read_text())["report"]["totals"]
    assert d["evaluation"] == totals
    sums = (run / "release" / "SHA256SUMS").read_text().split()[1::2]
    assert d["release"]["checksummed_files"] == sums and d["release"]["selected_checkpoint"] == "train/st/epoch-1"
    assert d["reward_model"] is None  # feedback was off in this build

    code, out = run_lab(["runs", "show", str(run)])  # a path works too
    assert code == 0, out.err
    fp = state["stages"]["train"]["fingerprint"][:12]
    assert any(line.split()[:3] == ["train", "done", fp] for line in out.out.splitlines())
    k = totals["knowledge"]
    assert f"knowledge: base 0 [0, {k['base_interval'][1]:.4g}] -> trained 0 " in out.out and "n=7" in out.out
    assert "release: " in out.out and "14 files in SHA256SUMS" in out.out


def test_a_failed_build_shows_where_it_stopped_and_why(runs_dir, run_lab):
    run = runs_dir / "main"
    state = _state(run)
    # what run_build records when a stage raises: the entry it wrote when the stage started
    # (fingerprint, started), status failed and the error
    train = state["stages"]["train"]
    state["stages"]["train"] = {"fingerprint": train["fingerprint"], "status": "failed",
                                "started": train["finished"] - train["seconds"], "error": "LabError: boom"}
    for name in ("evaluate", "release"):
        del state["stages"][name]
    del state["last_build"]
    (run / "build_state.json").write_text(json.dumps(state))
    shutil.rmtree(run / "release")
    code, out = run_lab(["runs", "list", "--runs-dir", str(runs_dir), "--json"])
    (row,) = json.loads(out.out)
    assert row["status"] == "failed at train" and row["release"] is None and row["seconds"] is None
    assert row["finished"] == iso(state["stages"]["generate"]["finished"])
    code, out = run_lab(["runs", "show", "main", "--runs-dir", str(runs_dir)])
    assert code == 0 and "failed at train" in out.out and "LabError: boom" in out.out
    assert "release: none" in out.out
    # a stage left running (killed build) reads as interrupted
    state["stages"]["train"]["status"] = "running"
    (run / "build_state.json").write_text(json.dumps(state))
    code, out = run_lab(["runs", "list", "--runs-dir", str(runs_dir)])
    assert "interrupted at train" in out.out


def test_bad_or_missing_runs_are_clean_errors(runs_dir, run_lab, tmp_path):
    code, out = run_lab(["runs", "show", "nope", "--runs-dir", str(runs_dir)])
    assert code == 1 and "no run 'nope'" in out.err and "Traceback" not in out.err
    code, out = run_lab(["runs", "list", "--runs-dir", str(tmp_path / "absent")])
    assert code == 1 and "runs folder not found" in out.err
    (runs_dir / "main" / "build_state.json").write_text('{"stages": {\n  "validate": }\n')
    code, out = run_lab(["runs", "show", "main", "--runs-dir", str(runs_dir)])
    assert code == 1 and f"{runs_dir / 'main' / 'build_state.json'}:2: invalid JSON" in out.err
    (runs_dir / "main" / "build_state.json").write_text('{"stages": []}')
    code, out = run_lab(["runs", "list", "--runs-dir", str(runs_dir)])
    assert code == 1 and "build_state.json: stages: expected" in out.err
