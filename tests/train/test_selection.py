"""Checkpoint selection and the pref-vs-ST decision on planted scores (no training): stratified
selection sets, the incumbent rule, judges that may not decide."""

from __future__ import annotations

import json

import pytest

from lab_tools.train.config import preset_from_dict

LEAVES = [f"knowledge/l{k}" for k in range(4)]


def _write_mc(data, per_leaf: int = 30):
    """A leaf-sorted heldout_mc.jsonl, as `lab generate` writes it."""
    data.mkdir(parents=True, exist_ok=True)
    rows = [{"leaf": leaf, "question": f"{leaf} q{i}?", "choices": ["right", "wrong"], "answer": 0}
            for leaf in LEAVES for i in range(per_leaf)]
    (data / "heldout_mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _plant(monkeypatch, right):
    """Checkpoints are names; ``right(checkpoint, item) -> bool`` plants their MC answers."""
    import lab_tools.eval.scoring as scoring
    import lab_tools.models as models

    monkeypatch.setattr(models, "load_model", lambda path, **k: (path, None))
    monkeypatch.setattr(scoring, "mc_accuracy", lambda model, tok, items, batch_size=8: (
        0.0, [{"correct": right(model, it)} for it in items]))


def _preset(**selection):
    return preset_from_dict({"selection": {"max_mc_items": 60, "max_checkpoints": 3, **selection}})


@pytest.mark.parametrize("phase", ["kt1", "kt2"])
def test_a_candidate_better_on_one_leaf_and_worse_on_the_rest_is_not_selected(tmp_path, monkeypatch, phase):
    from lab_tools.train.phases import _select, stage_console

    _write_mc(tmp_path / "data")
    # epoch-2 is right on every item of the first leaf of the file and wrong elsewhere; epoch-1
    # the reverse. The head of the leaf-sorted file (the old selection set) holds only the first
    # leaf, where epoch-2 looks perfect.
    _plant(monkeypatch, lambda ckpt, it: (it["leaf"] == LEAVES[0]) == (ckpt == "epoch-2"))
    selected, scores, method, decision = _select(phase, ["epoch-1", "epoch-2"], _preset(), tmp_path / "data",
                                                 tmp_path, None, stage_console(False))
    assert selected == "epoch-1", (scores, method)
    assert {i["leaf"] for i in decision["items"]} == set(LEAVES)  # every leaf in the selection set
    assert decision["comparisons"][0]["verdict"] == "measurable loss"
    assert method.startswith("knowledge score") and "selection items of 4 leaves" in method
    c = decision["candidates"]["epoch-1"]
    assert c["n"] == 60 and c["value"] == pytest.approx(0.75) and c["interval"][0] < 0.75 < c["interval"][1]


def test_a_candidate_better_on_every_leaf_is_selected_and_kt1_is_selected_too(tmp_path, monkeypatch):
    from lab_tools.train.phases import _select, stage_console

    _write_mc(tmp_path / "data")
    _plant(monkeypatch, lambda ckpt, it: ckpt == "epoch-2" or it["question"].endswith(("0?", "2?", "4?", "6?", "8?")))
    selected, _, _, decision = _select("kt1", ["epoch-1", "epoch-2"], _preset(), tmp_path / "data", tmp_path,
                                       None, stage_console(False))
    assert selected == "epoch-2" and decision["verdict"] == "measurable gain"
    # the scores are cached per set: a resumed selection does not load a model again
    _plant(monkeypatch, lambda ckpt, it: 1 / 0)
    assert _select("kt1", ["epoch-1", "epoch-2"], _preset(), tmp_path / "data", tmp_path, None,
                   stage_console(False))[0] == "epoch-2"


def test_on_a_set_too_small_to_decide_the_earlier_checkpoint_stays(tmp_path, monkeypatch):
    from lab_tools.train.phases import _select, stage_console

    _write_mc(tmp_path / "data", per_leaf=2)  # 4 selection items
    _plant(monkeypatch, lambda ckpt, it: ckpt == "epoch-2")  # 0/4 vs 4/4
    selected, _, _, decision = _select("kt2", ["epoch-1", "epoch-2"], _preset(), tmp_path / "data", tmp_path,
                                       None, stage_console(False))
    assert selected == "epoch-1" and decision["verdict"] == "too small to decide"


# ----------------------------------------------------------------------------- pref vs ST

PROMPTS = [{"leaf": f"compositional_skills/s{k}", "messages": [{"role": "user", "content": f"Task {k}.{i}"}],
            "reference": f"Answer {k}.{i}."} for k in range(3) for i in range(40)]


def _pref_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "heldout_prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    return data


def _measures(monkeypatch, answer, reference=lambda d, p: -1.0):
    """Planted measurements: ``answer(dir, prompt)``, ``reference(dir, prompt)``; MC all right."""
    import lab_tools.train.pref_select as pref_select

    monkeypatch.setattr(pref_select, "_measure", lambda d, prompts, items, sel, answers=True, **_: {
        "answers": [answer(d, p) for p in prompts], "reference": [reference(d, p) for p in prompts],
        "mc": [1.0] * len(items)})


def test_the_incumbent_st_wins_a_tie(tmp_path, tiny_model, monkeypatch):
    """Every pref answer equals ST's: all ties. Before, pref was kept whenever the knowledge score
    did not drop; now ST (the incumbent) stays, and the record says why."""
    from lab_tools.train.pref_select import select_pref

    data = _pref_data(tmp_path)
    _measures(monkeypatch, lambda d, p: "the same answer")
    out = select_pref("st-dir", ["c1", "c2"], data, str(tiny_model), _preset(max_prompts=60).selection)
    assert out["kept"] == "st" and out["selected"] == "st-dir" and out["candidate"] == "c1"
    assert [j["used"] for j in out["judges"]] == [True]  # the tiny judge is neither ST nor a candidate
    assert out["candidates"]["c1"]["ties"] == 60 and out["candidates"]["c1"]["win_rate"] == 0.5
    assert out["decision"]["pref_vs_st"]["verdict"] == "no measurable gain"
    assert "keeps ST" in out["reason"]


def test_a_judge_of_ties_is_refused_and_the_decision_falls_back(tmp_path, tiny_model, monkeypatch):
    import lab_tools.eval.preference as preference
    from lab_tools.train.pref_select import select_pref

    data = _pref_data(tmp_path)
    _measures(monkeypatch, lambda d, p: f"{d} says {p['reference']}",
              reference=lambda d, p: {"st-dir": -2.0, "c1": -1.0}[d] + 0.01 * len(p["reference"]))
    monkeypatch.setattr(preference, "ab_preferences", lambda m, t, items, **k: [0.5] * len(items))
    out = select_pref("st-dir", ["c1"], data, str(tiny_model), _preset(max_prompts=60).selection)
    assert [(j["kind"], j["used"]) for j in out["judges"]] == [("pairwise", False)]
    assert "unable to judge" in out["judges"][0]["reason"]
    assert out["decision"]["metric"] == "reference log-likelihood (nats/token)"
    assert "no capable judge was used" in out["reason"]
    assert out["kept"] == "pref"  # reference log-likelihood rose by 1 nat/token on every prompt


def test_the_judge_may_not_be_the_base_and_a_reward_model_decides_with_a_guard(tmp_path, tiny_model, monkeypatch):
    from lab_tools.train.pref_select import select_pref

    data = _pref_data(tmp_path)
    _measures(monkeypatch, lambda d, p: d, reference=lambda d, p: {"st-dir": -1.0, "c1": -3.0}[d])
    rm = lambda prompts, xs, ys, **_: [1.0] * len(prompts)  # noqa: E731  the RM prefers pref everywhere
    out = select_pref("st-dir", ["c1"], data, str(tiny_model), _preset(max_prompts=60).selection,
                      base=str(tiny_model), rm_verdicts=rm)
    assert "is the base model" in out["judges"][0]["reason"]
    assert out["decision"]["metric"] == "win rate vs ST (reward model)"
    assert out["decision"]["pref_vs_st"]["verdict"] == "measurable gain"
    # ... but reference log-likelihood regressed measurably: ST stays
    assert out["decision"]["guards"]["reference"]["verdict"] == "measurable loss" and out["kept"] == "st"
