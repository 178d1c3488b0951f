"""End to end on CPU with the tiny random model: KT/1 -> KT/2 -> ST, replay, selection, resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab_tools.errors import LabError

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def full_run(tiny_model, tmp_path_factory):
    """One uninterrupted three-phase run (shared by the assertions below)."""
    import yaml

    from tests.train.conftest import FAST_PRESET, FakeJudge, write_phase_data
    from lab_tools.train.phases import train_phases

    tmp = tmp_path_factory.mktemp("full")
    data = write_phase_data(tmp / "data")
    preset = tmp / "fast.yaml"
    preset.write_text(yaml.safe_dump(FAST_PRESET))
    judge = FakeJudge()
    result = train_phases(data, tiny_model, tmp / "out", preset=preset, judge=judge, progress=False)
    with (tmp / "out" / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return {"result": result, "rows": rows, "judge": judge, "data": data, "preset": preset, "tmp": tmp}


def test_loss_goes_down_in_each_phase(full_run):
    for phase in ("kt1", "kt2", "st"):
        losses = [float(r["loss"]) for r in full_run["rows"] if r["phase"] == phase]
        assert len(losses) >= 4
        first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
        assert last < first, (phase, losses)


def test_replay_samples_are_used_in_kt2_and_st(full_run):
    phases = full_run["result"].manifest["phases"]
    assert set(phases["kt1"]["samples"]) == {"kt1"}
    assert phases["kt2"]["samples"]["replay_kt1"] > 0
    assert phases["st"]["samples"]["replay_kt1"] > 0 and phases["st"]["samples"]["replay_kt2"] > 0
    # the steps consumed own + replay samples: 2 epochs x (12 own + 6 replay) samples / batch 4
    assert phases["kt2"]["steps"] == 2 * 5


def test_lr_warms_up_then_stays_constant_in_every_phase(full_run):
    for phase in ("kt1", "kt2", "st"):
        lrs = [float(r["lr"]) for r in full_run["rows"] if r["phase"] == phase]
        peak = 3e-3
        assert lrs[:3] == pytest.approx([peak / 3, 2 * peak / 3, peak])
        assert lrs[2:] == pytest.approx([peak] * (len(lrs) - 2))  # no decay, also across epochs


def test_padding_free_batches_and_metrics(full_run):
    rows = full_run["rows"]
    assert all(float(r["real_token_fraction"]) >= 0.95 for r in rows)
    assert all(float(r["tokens_per_s"]) > 0 for r in rows)
    assert (full_run["tmp"] / "out" / "loss.png").stat().st_size > 1000


def test_manifest_selection_and_checkpoints(full_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lab_tools.weights import file_digests

    m, out = full_run["result"].manifest, full_run["result"].out_dir
    assert m["preset"] == "fast" and m["hyperparameters"]["kt2"]["replay_fraction"] == 0.5
    for phase in ("kt1", "kt2", "st"):
        # recorded relative to the manifest's folder (issue 27: a run folder can move), with the
        # digests of each checkpoint's files as written (issue 23)
        ckpts = m["phases"][phase]["checkpoints"]
        assert ckpts == [f"{phase}/epoch-1", f"{phase}/epoch-2"]
        assert all((out / c / "model.safetensors").is_file() for c in ckpts)
        assert all(m["weights"][c] == file_digests(out / c) and "model.safetensors" in m["weights"][c]
                   for c in ckpts)
    # KT/1 is selected too; every phase scored both epochs on the selection part of the held-out
    # items (2 of the 4 MC items, the 1 prompt), far too few to show a gain: the earlier stays (LAB)
    for phase in ("kt1", "kt2", "st"):
        entry = m["phases"][phase]
        assert entry["selected"].endswith(f"{phase}/epoch-1"), (phase, entry["selection"])
        assert entry["decision"]["verdict"] == "too small to decide" and len(entry["scores"]) == 2
        assert all(c["n"] == (2 if phase != "st" else 1) for c in entry["decision"]["candidates"].values())
        assert {i["leaf"] for i in entry["decision"]["items"]} == {
            "knowledge/leaf" if phase != "st" else "compositional_skills/leaf"}
    assert m["phases"]["kt2"]["selection"].startswith("knowledge score")
    # the fake judge rates everything 7: on its calibration pair (reference vs a poor answer) it
    # gives a tie, so it is unable to judge and ST is selected by reference log-likelihood
    st = m["phases"]["st"]
    assert not st["decision"]["judge"]["used"] and "unable to judge" in st["decision"]["judge"]["reason"]
    assert all(v < 0 for v in st["scores"].values()) and "reference log-likelihood" in st["selection"]
    assert len(full_run["judge"].requests) == 2  # the calibration pair only
    assert m["selected"] == st["selected"] == "st/epoch-1" and full_run["result"].selected == out / "st/epoch-1"
    assert json.loads((out / "manifest.json").read_text()) == m
    AutoModelForCausalLM.from_pretrained(out / m["selected"])
    AutoTokenizer.from_pretrained(out / m["selected"])


def test_a_finished_out_dir_is_not_overwritten_without_resume(full_run, tiny_model):
    from lab_tools.train.phases import train_phases

    out = full_run["tmp"] / "out"
    with pytest.raises(LabError, match="--resume"):
        train_phases(full_run["data"], tiny_model, out, preset=full_run["preset"], progress=False)
    again = train_phases(full_run["data"], tiny_model, out, preset=full_run["preset"], resume=True,
                         progress=False)  # nothing left to do: no judge needed
    assert again.manifest["selected"] == full_run["result"].manifest["selected"]


SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from conftest import FakeJudge
from lab_tools.train.phases import train_phases
train_phases({data!r}, {model!r}, {out!r}, preset={preset!r}, judge=FakeJudge(), progress=False)
"""


def _weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def test_killed_run_resumes_to_the_same_final_state(full_run, tiny_model, tmp_path):
    import torch

    from tests.train.conftest import FakeJudge
    from lab_tools.train.phases import train_phases

    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT.format(here=str(HERE), data=str(full_run["data"]),
                                                    model=str(tiny_model), out=str(out),
                                                    preset=str(full_run["preset"]))))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    marker = out / "kt2" / "state" / "progress.json"
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9, mid-KT/2
    proc.wait()
    assert json.loads((out / "manifest.json").read_text())["selected"] is None  # really unfinished
    assert "kt1" in json.loads((out / "manifest.json").read_text())["phases"]

    resumed = train_phases(full_run["data"], tiny_model, out, preset=full_run["preset"],
                           judge=FakeJudge(), resume=True, progress=False)
    assert resumed.manifest["selected"].replace(str(out), "") == \
        full_run["result"].manifest["selected"].replace(str(full_run["tmp"] / "out"), "")
    a, b = _weights(resumed.selected), _weights(full_run["result"].selected)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-6)
    with (out / "metrics.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(full_run["rows"])  # no step counted twice


def test_replay_draw_is_proportional_deterministic_and_keeps_small_sources():
    from lab_tools.train.phases import draw_replay

    src = {"kt1": list(range(8)), "kt2": list(range(100, 106))}
    got = draw_replay(6, 0.25, src, seed=3)
    assert {k: len(v) for k, v in got.items()} == {"kt1": 1, "kt2": 1}
    assert got == draw_replay(6, 0.25, src, seed=3)
    big = draw_replay(10, 2.0, {"kt1": [1, 2, 3]}, seed=0)["kt1"]  # more than the source: cycles
    assert len(big) == 20 and set(big) == {1, 2, 3}
    assert draw_replay(10, 0.0, src, seed=0) == {"kt1": [], "kt2": []}


def test_st_selection_falls_back_to_reference_loglik_when_no_rating_parses(full_run, tmp_path):
    """A judge too small to grade (no parseable rating) must not decide by accident: selection
    then uses the held-out reference log-likelihood, and the method says so."""
    from lab_tools.sdg.backends import Completion
    from lab_tools.train.config import load_preset
    from lab_tools.train.phases import _select, stage_console

    class MuteJudge:
        name = "mute"

        def generate(self, requests):
            return [Completion(text="I like turtles.") for _ in requests]

    ckpts = [str(full_run["result"].out_dir / c) for c in full_run["result"].manifest["phases"]["st"]["checkpoints"]]
    selected, scores, method, decision = _select("st", ckpts, load_preset(full_run["preset"]), full_run["data"],
                                                 tmp_path, lambda: MuteJudge(), stage_console(False))
    assert "reference log-likelihood" in method and "unable to judge" in method
    assert all(isinstance(v, float) and v < 0 for v in scores.values())
    assert selected == ckpts[0] and decision["verdict"] == "too small to decide"  # 1 prompt decides nothing


def test_st_selection_without_a_rating_judge_uses_reference_loglik_and_generates_nothing(full_run, tmp_path,
                                                                                         monkeypatch):
    """``generate.model_judges`` false (judge_factory None): no answers are generated and no judge
    is asked; the checkpoints are ranked by held-out reference log-likelihood, the method says why."""
    import lab_tools.eval.scoring as scoring
    from lab_tools.train.config import load_preset
    from lab_tools.train.phases import _select, stage_console

    def no_answers(*a, **k):
        raise AssertionError("answers generated although no judge can rate them")

    monkeypatch.setattr(scoring, "answer_prompts", no_answers)
    ckpts = [str(full_run["result"].out_dir / c) for c in full_run["result"].manifest["phases"]["st"]["checkpoints"]]
    selected, scores, method, decision = _select("st", ckpts, load_preset(full_run["preset"]), full_run["data"],
                                                 tmp_path, None, stage_console(False))
    assert "reference log-likelihood" in method and "model_judges" in method
    assert all(isinstance(v, float) and v < 0 for v in scores.values())
    assert selected == ckpts[0]
    cached = json.loads((tmp_path / "scores.json").read_text())["per_item"]
    assert all(cached[c]["reference"][0] == pytest.approx(scores[c], abs=1e-6) for c in ckpts)


def test_self_play_demonstrations_train_in_st_as_their_own_source(tiny_model, phase_data, fast_preset, tmp_path):
    from tests.train.conftest import FakeJudge
    from lab_tools.train.phases import train_phases

    conv = [{"role": "user", "content": "Write a haiku about rain."},
            {"role": "assistant", "content": "Rain taps the window."},
            {"role": "user", "content": "Now one about snow."},
            {"role": "assistant", "content": "Snow hushes the street."}]
    rows = [{"messages": conv, "metadata": {"leaf": "compositional_skills/leaf", "source": "rmsp",
                                            "phase": "st", "turn_rewards": [1.0, 2.0]}}] * 3
    (phase_data / "selfplay.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = train_phases(phase_data, tiny_model, tmp_path / "out", preset=fast_preset, phases=("st",),
                          judge=FakeJudge(), progress=False)
    used = result.manifest["phases"]["st"]["samples"]
    assert used["st"] == 12 and used["selfplay"] == 3
    # 2 epochs x (15 own + round(0.5 * 15) replay) samples / batch 4
    assert result.manifest["phases"]["st"]["steps"] == 2 * -(-(15 + 8) // 4)
