"""`lab build` stops at a failed stage with a clear message, keeps its outputs, and resumes an
interrupted training stage with --resume."""

from __future__ import annotations

import json
import re
from pathlib import Path


from lab_tools.build import STATE_FILE

from build_fixture import LEAVES


def test_license_failure_stops_the_build(build_repo, cache_dir, tmp_path, run_lab):
    attr = build_repo / LEAVES[0] / "attribution.txt"
    attr.write_text(re.sub(r"License of the work: .*", "License of the work: CC-BY-NC-4.0", attr.read_text()))
    out = tmp_path / "run"
    code, io = run_lab(["build", str(build_repo), "--out", str(out), "--quiet"])
    err = io.err
    assert code == 1
    assert "build stopped at stage 'licenses'" in err and "attribution.txt" in err and "Traceback" not in err
    state = json.loads((out / STATE_FILE).read_text())["stages"]
    assert state["validate"]["status"] == "done" and state["licenses"]["status"] == "failed"
    assert "generate" not in state and not (out / "data").exists()


def test_crash_in_training_then_resume(build_repo, cache_dir, tmp_path, run_lab, monkeypatch):
    import lab_tools.train.phases as phases

    real = phases.train_phases
    calls = []

    def crash_after_kt1(*a, **kw):
        calls.append(kw["resume"])
        if len(calls) == 1:
            real(*a, **{**kw, "phases": ("kt1", "kt2")})
            raise RuntimeError("power cut during st")
        return real(*a, **kw)

    monkeypatch.setattr(phases, "train_phases", crash_after_kt1)
    out = tmp_path / "run"
    code, io = run_lab(["build", str(build_repo), "--out", str(out), "--quiet"])
    err = io.err
    assert code == 1 and "build stopped at stage 'train'" in err and "power cut during st" in err
    assert "lab build --resume" in err
    assert "build.log" in err and "power cut" in (out / "build.log").read_text()
    assert (out / "data" / "kt1.jsonl").is_file()  # what generate produced is kept
    done = json.loads((out / "train" / "manifest.json").read_text())["phases"]
    assert set(done) == {"kt1", "kt2"}
    ckpts = [c for entry in done.values() for c in entry.get("checkpoints", [])]
    assert ckpts, done
    # checkpoints are recorded relative to the manifest's folder (issue 27: a run folder can move)
    assert not any(Path(c).is_absolute() for c in ckpts), ckpts
    stamps = {c: (out / "train" / c / "model.safetensors").stat().st_mtime_ns for c in ckpts}

    code, io = run_lab(["build", str(build_repo), "--out", str(out), "--quiet", "--resume"])
    err = io.err
    assert code == 0, err
    assert calls == [False, True]
    after = json.loads((out / "train" / "manifest.json").read_text())["phases"]
    assert {p: after[p] for p in done} == done and "st" in after  # finished phases were not redone
    assert {c: (out / "train" / c / "model.safetensors").stat().st_mtime_ns for c in ckpts} == stamps
    state = json.loads((out / STATE_FILE).read_text())
    assert state["stages"]["train"]["data"]["resumed"] is True
    assert {s["status"] for s in state["last_build"]["stages"].values()} == {"skipped", "ran"}
    assert state["last_build"]["stages"]["generate"]["status"] == "skipped"
    assert (out / "release" / "SHA256SUMS").is_file()
