"""Checkpoint selection and the preference phase's selection score on the configured engine
(issue 26): on CTranslate2 in float32 a model's greedy answers, reference log-likelihood and MC
answers are those of the transformers reference; the per-checkpoint score cache is keyed by the
engine, so scores of one engine are never reused for another."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("ctranslate2")

from lab_tools.engines.ct2 import CT2Model  # noqa: E402
from lab_tools.engines.load import REFERENCE_SCORER, Scorer  # noqa: E402
from lab_tools.train.config import preset_from_dict  # noqa: E402

QUESTIONS = [f"{q} ({i})" for i in range(12) for q in
             ("what is a leaf?", "name a colour of the sea", "x", "write one line about rain")]


def _data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    mc = [{"leaf": f"knowledge/l{i % 2}", "question": q, "choices": ["a qna file", "the sea", "rain"], "answer": i % 3}
          for i, q in enumerate(QUESTIONS)]
    prompts = [{"leaf": f"skills/s{i % 2}", "messages": [{"role": "user", "content": q}], "reference": "a short answer"}
               for i, q in enumerate(QUESTIONS)]
    (data / "heldout_mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mc))
    (data / "heldout_prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prompts))
    return data


def _preset():
    return preset_from_dict({"selection": {"max_mc_items": 24, "max_prompts": 12, "max_new_tokens": 8,
                                           "max_checkpoints": 2, "batch_size": 2}})


def test_pref_measurements_on_ct2_equal_the_reference(tmp_path, varied_model, monkeypatch):
    import lab_tools.engines.load as load
    from lab_tools.eval.sets import selection_sets
    from lab_tools.train.pref_select import _measure

    data = _data(tmp_path)
    sel = _preset().selection
    mc, prompts = selection_sets(data, sel.max_mc_items, sel.max_prompts)
    loaded = []
    real = load.load_scoring_model
    monkeypatch.setattr(load, "load_scoring_model", lambda *a, **k: loaded.append(real(*a, **k)[0]) or
                        (loaded[-1], loaded[-1].tok if isinstance(loaded[-1], CT2Model) else real(*a, **k)[1]))
    fast = _measure(str(varied_model), prompts, mc, sel, answers=True,
                    scorer=Scorer("ctranslate2", "float32", str(tmp_path / "cache")))
    assert isinstance(loaded[-1], CT2Model)  # the engine the scorer names ran
    ref = _measure(str(varied_model), prompts, mc, sel, answers=True, scorer=REFERENCE_SCORER)
    assert not isinstance(loaded[-1], CT2Model)
    assert fast["answers"] == ref["answers"] and len(set(ref["answers"])) > 1
    assert fast["reference"] == pytest.approx(ref["reference"], abs=1e-3)
    assert fast["mc"] == ref["mc"] and len(fast["mc"]) == len(mc) > 10


def test_selection_scores_are_cached_per_engine(tmp_path, varied_model):
    from lab_tools.train.phases import _select, stage_console

    data = _data(tmp_path)
    ckpts = [str(tmp_path / "epoch-1"), str(tmp_path / "epoch-2")]
    for c in ckpts:
        shutil.copytree(varied_model, c)
    fast = Scorer("ctranslate2", "float32", str(tmp_path / "cache"))
    phase_dir = tmp_path / "kt1"
    phase_dir.mkdir()
    got = _select("kt1", ckpts, _preset(), data, phase_dir, None, stage_console(False), scorer=fast)
    cache = json.loads((phase_dir / "scores.json").read_text())
    assert "+ctranslate2-" in cache["key"] and "-float32" in cache["key"]
    assert got[0] == ckpts[0]  # the same weights: the incumbent stays
    # planted scores under the CT2 key are reused by CT2, never by the reference engine
    for c in ckpts:
        cache["per_item"][c]["mc_accuracy"] = [1.0 if c.endswith("2") else 0.0] * len(cache["per_item"][c]["mc_accuracy"])
    (phase_dir / "scores.json").write_text(json.dumps(cache))
    assert _select("kt1", ckpts, _preset(), data, phase_dir, None, stage_console(False), scorer=fast)[0] == ckpts[1]
    ref = _select("kt1", ckpts, _preset(), data, phase_dir, None, stage_console(False))
    assert ref[0] == ckpts[0]  # rescored on transformers, not the planted CT2 scores
    assert "+ctranslate2-" not in json.loads((phase_dir / "scores.json").read_text())["key"]
