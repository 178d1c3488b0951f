"""The preference phase (lab_tools/train/pref.py): DPO raises the chosen-vs-rejected margin,
RLOO with a tiny reward model logs reward and KL, selection by win rate keeps the earlier on a
tie, a regression of the knowledge score keeps ST, and a killed run resumes to the same state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab_tools.errors import LabError
from lab_tools.train.config import SelectionConfig, preset_from_dict
from lab_tools.tiny import make_tiny_reward_model

PAIRS = [("What is the capital of France?", "Paris is the capital of France.", "no no no no"),
         ("Write a haiku about the sea.", "Waves fold into foam.", "yes yes yes yes"),
         ("Summarize the text.", "The quick brown fox jumps over the lazy dog.", "no yes no yes")]


def _preset(**pref):
    return preset_from_dict(_raw(**pref))


def _raw(**pref):
    return {"max_seq_len": 128, "micro_batch_tokens": 256, "dtype": "float32", "mixed_precision": "no",
            "seed": 1,
            "selection": {"max_prompts": 2, "max_new_tokens": 8, "batch_size": 2, "max_mc_items": 4,
                          "max_checkpoints": 3},
            "pref": {"learning_rate": 5e-3, "effective_batch_size": 2, "micro_batch_size": 2, "epochs": 2,
                     "checkpoints": 2, "max_length": 96, **pref}}


def _run(tmp_path: Path, model: Path) -> tuple[Path, Path]:
    """A training run whose ST selected ``model`` and a data dir with comparisons + held-out files."""
    run, data = tmp_path / "run", tmp_path / "data"
    run.mkdir(parents=True)
    data.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps(
        {"phases": {"st": {"steps": 3, "selected": str(model)}}, "selected": str(model)}))
    rows = [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}], "metadata": {"leaf": "a/b"}}
            for q, c, r in PAIRS * 2]
    (data / "comparisons.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = [{"leaf": "a/b", "messages": [{"role": "user", "content": q}], "reference": c}
               for q, c, _ in PAIRS]
    (data / "heldout_prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return run, data


def _margin(model_dir) -> float:
    from lab_tools.eval.scoring import mc_accuracy
    from lab_tools.models import load_model

    model, tok = load_model(model_dir)
    items = [{"question": q, "choices": [c, r], "answer": 0} for q, c, r in PAIRS]
    _, per = mc_accuracy(model, tok, items)
    return sum(s["scores"][0] - s["scores"][1] for s in per) / len(per)


def test_dpo_raises_the_chosen_vs_rejected_margin(tmp_path, tiny_model, run_lab):
    import yaml

    from lab_tools.train.pref import train_pref

    run, data = _run(tmp_path, tiny_model)
    before = _margin(tiny_model)
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump(_raw()))
    code, io = run_lab(["train", "--phase", "pref", "--data", str(data), "--out", str(run), "--preset",
                        str(preset), "--judge", f"transformers:{tiny_model}", "--quiet"])
    assert code == 0, io.err
    assert "preference phase (dpo, 6 comparisons, 6 steps)" in io.out and "decision:" in io.out
    entry = json.loads((run / "manifest.json").read_text())["phases"]["pref"]
    assert entry["method"] == "dpo" and entry["steps"] == 6 and len(entry["checkpoints"]) == 2
    # recorded relative to the run folder (issue 27), with each candidate's digests (issue 23)
    assert entry["checkpoints"] == ["pref/checkpoint-3", "pref/checkpoint-6"]
    from lab_tools.weights import file_digests

    weights = json.loads((run / "manifest.json").read_text())["weights"]
    assert all(weights[c] == file_digests(run / c) for c in entry["checkpoints"])
    after = _margin(run / entry["candidate"])
    assert after > before + 0.05, (before, after)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["phases"]["pref"]["candidates"].keys() == set(entry["checkpoints"])
    # the judge named by --judge is the ST model itself: refused, so held-out reference
    # log-likelihood decided (no reward model), and the record says so
    assert not entry["judges"][0]["used"] and "is the ST model" in entry["judges"][0]["reason"]
    assert entry["decision"]["metric"].startswith("reference log-likelihood")
    assert all(c["reference"]["n"] == 2 for c in entry["candidates"].values())  # the selection part
    assert manifest["selected"] == entry["selected"]
    # no optimizer state left behind once the phase is done; candidates load in plain transformers
    from transformers import AutoModelForCausalLM

    for c in entry["checkpoints"]:
        assert not (run / c / "optimizer.pt").exists()
        AutoModelForCausalLM.from_pretrained(run / c)
    # a finished phase is not retrained
    assert train_pref(run, data, preset=_preset(), judge_dir=str(tiny_model), progress=False) == \
        manifest["phases"]["pref"]


def _planted(monkeypatch, mc_right, reference=-1.0):
    """``pref_select._measure`` planted: every model answers "x", reference ``reference`` on every prompt,
    MC right as ``mc_right(model_dir, item_index)`` says."""
    import lab_tools.train.pref_select as pref_select

    monkeypatch.setattr(pref_select, "_measure", lambda d, prompts, items, sel, answers=True, **_: {
        "answers": ["x"] * len(prompts), "reference": [reference] * len(prompts),
        "mc": [float(mc_right(d, i)) for i in range(len(items))]})


def _many(data: Path, prompts: int = 40, mc: int = 60) -> None:
    (data / "heldout_prompts.jsonl").write_text("".join(json.dumps(
        {"leaf": f"s/{i % 2}", "messages": [{"role": "user", "content": f"Task {i}"}], "reference": f"Done {i}."})
        + "\n" for i in range(prompts)))
    (data / "heldout_mc.jsonl").write_text("".join(json.dumps(
        {"leaf": f"k/{i % 3}", "question": f"q{i}?", "choices": ["a", "b"], "answer": 0}) + "\n" for i in range(mc)))


def test_knowledge_regression_keeps_st(tmp_path, monkeypatch):
    from lab_tools.train.pref_select import select_pref

    _, data = _run(tmp_path, tmp_path / "no-model")
    _many(data)
    _planted(monkeypatch, lambda d, i: d == "st-dir" or i % 2)  # pref loses half the knowledge items
    rm = lambda prompts, xs, ys, **_: [1.0] * len(prompts)  # noqa: E731  the RM prefers pref everywhere
    out = select_pref("st-dir", ["c1"], data, None, SelectionConfig(max_prompts=40, max_mc_items=60),
                      rm_verdicts=rm)
    assert out["decision"]["pref_vs_st"]["verdict"] == "measurable gain"
    assert out["kept"] == "st" and out["selected"] == "st-dir"
    assert "regressed the knowledge score" in out["reason"]
    assert out["decision"]["guards"]["knowledge"]["n"] == 30 and out["knowledge"] == {"st": 1.0, "pref": 0.5}
    # the same pref without the regression replaces ST, and the record says no capable judge was used
    _planted(monkeypatch, lambda d, i: True)
    out = select_pref("st-dir", ["c1"], data, None, SelectionConfig(max_prompts=40, max_mc_items=60),
                      rm_verdicts=rm)
    assert out["kept"] == "pref" and out["selected"] == "c1" and "no capable judge was used" in out["reason"]


def test_selection_prefers_the_earlier_candidate_on_a_tie(tmp_path, tiny_model, monkeypatch):
    import lab_tools.eval.preference as preference
    from lab_tools.train.pref_select import select_pref

    _, data = _run(tmp_path, tiny_model)
    _many(data)
    _planted(monkeypatch, lambda d, i: True)
    rates = {"c1": 0.0, "c2": 1.0, "c3": 1.0}
    monkeypatch.setattr(preference, "pairwise_win_rate", lambda model, tok, prompts, xs, ys, **k: {
        "verdicts": [rates[calls.pop(0)]] * len(prompts)})
    calls = ["c1", "c2", "c3"]
    out = select_pref("st-dir", ["c1", "c2", "c3"], data, str(tiny_model),
                      SelectionConfig(max_prompts=40, max_mc_items=60))
    assert out["judges"][0]["used"]
    assert out["candidate"] == "c2" and out["kept"] == "pref"  # c3 ties c2: the earlier one stays
    assert [c["verdict"] for c in out["decision"]["candidates"]["comparisons"]] == ["measurable gain",
                                                                                     "no measurable gain"]


def test_refuses_without_comparisons_or_st(tmp_path, tiny_model):
    from lab_tools.train.pref import train_pref

    run, data = _run(tmp_path, tiny_model)
    (data / "comparisons.jsonl").write_text("")
    with pytest.raises(LabError, match="no synthetic comparisons"):
        train_pref(run, data, preset=_preset(), judge_dir=str(tiny_model), progress=False)
    (run / "manifest.json").write_text(json.dumps({"phases": {"st": {"skipped": "no samples"}}}))
    with pytest.raises(LabError, match="no trained ST"):
        train_pref(run, data, preset=_preset(), judge_dir=str(tiny_model), progress=False)
    run2, data2 = _run(tmp_path / "b", tiny_model)
    (data2 / "comparisons.jsonl").write_text('{"prompt": "not a list"}\n')
    with pytest.raises(LabError, match="list of messages") as exc:
        train_pref(run2, data2, preset=_preset(), judge_dir=str(tiny_model), progress=False)
    assert exc.value.line == 1


def test_rloo_with_a_tiny_reward_model_logs_reward_and_kl(tmp_path, tiny_model):
    from lab_tools.train.pref import train_pref

    run, data = _run(tmp_path, tiny_model)
    rm = make_tiny_reward_model(tiny_model, tmp_path / "rm")
    entry = train_pref(run, data, preset=_preset(method="rloo", max_steps=2, num_generations=2,
                                                 max_completion_length=8, checkpoints=1),
                       judge_dir=str(tiny_model), rm_dir=str(rm), progress=False)
    assert entry["steps"] == 2
    logged = set().union(*(r.keys() for r in entry["log"]))
    assert "reward" in logged and "kl" in logged, logged


SCRIPT = """
import sys
from lab_tools.train.pref import train_pref
from lab_tools.train.config import SelectionConfig, preset_from_dict
import json
preset = preset_from_dict(json.loads(sys.argv[3]))
train_pref(sys.argv[1], sys.argv[2], preset=preset, judge_dir=sys.argv[4], progress=False)
"""


def _weights(d):
    from safetensors.torch import load_file

    return load_file(str(Path(d) / "model.safetensors"))


@pytest.mark.slow
def test_killed_pref_run_resumes_to_the_same_state(tmp_path, tiny_model):
    import torch

    raw = {"max_seq_len": 128, "micro_batch_tokens": 256, "dtype": "float32", "mixed_precision": "no",
           "seed": 1, "selection": {"max_prompts": 1, "max_new_tokens": 4, "batch_size": 2},
           "pref": {"learning_rate": 5e-3, "effective_batch_size": 2, "micro_batch_size": 2,
                    "epochs": 4, "checkpoints": 4, "max_length": 96}}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    args = [json.dumps(raw), str(tiny_model)]
    ref_run, ref_data = _run(tmp_path / "ref", tiny_model)
    subprocess.run([sys.executable, "-c", SCRIPT, str(ref_run), str(ref_data), *args], env=env, check=True)
    run, data = _run(tmp_path / "killed", tiny_model)
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(run), str(data), *args], env=env)
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "pref" / "checkpoint-3" / "trainer_state.json").is_file():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "pref" / "checkpoint-12").exists(), "the run finished before it was killed"
    subprocess.run([sys.executable, "-c", SCRIPT, str(run), str(data), *args], env=env, check=True)
    a, b = _weights(ref_run / "pref" / "checkpoint-12"), _weights(run / "pref" / "checkpoint-12")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
