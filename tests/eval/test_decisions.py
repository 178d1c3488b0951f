"""Decisions on measured gains (lab_tools/eval/decisions.py) and which judges may decide
(lab_tools/eval/judges.py)."""

from __future__ import annotations

import shutil

from lab_tools.eval.decisions import GAIN, SAME, TOO_SMALL, choose, compare, win_rate
from lab_tools.sdg.backends import Completion


def test_the_incumbent_wins_a_tie():
    same = [1.0, 0.0] * 20
    rec = choose(["epoch-1", "epoch-2", "epoch-3"], {"epoch-1": same, "epoch-2": same, "epoch-3": same},
                 metric="mc_accuracy", is_proportion=True)
    assert rec["chosen"] == "epoch-1" and rec["verdict"] == SAME
    assert [c["replaced"] for c in rec["comparisons"]] == [False, False]
    assert rec["candidates"]["epoch-2"]["n"] == 40 and len(rec["candidates"]["epoch-2"]["interval"]) == 2


def test_a_measurable_gain_replaces_and_a_small_one_does_not():
    base = [1.0] * 30 + [0.0] * 30
    better = [1.0] * 55 + [0.0] * 5
    slightly = [1.0] * 32 + [0.0] * 28
    rec = choose(["a", "b", "c"], {"a": base, "b": slightly, "c": better}, metric="mc_accuracy", is_proportion=True)
    assert rec["chosen"] == "c" and rec["verdict"] == GAIN
    assert [(c["challenger"], c["verdict"]) for c in rec["comparisons"]] == [("b", SAME), ("c", GAIN)]
    assert rec["comparisons"][1]["gain"]["interval"][0] > 0


def test_too_small_sets_never_decide():
    assert compare([0.0] * 4, [1.0] * 4, is_proportion=False)["verdict"] == TOO_SMALL  # n < 5
    # 8 items all flipped: the gain is clear, but the accuracies' intervals are wider than +-15 points
    assert compare([0.0] * 8, [1.0] * 8, is_proportion=True)["verdict"] == TOO_SMALL
    assert compare([0.0] * 60, [1.0] * 60, is_proportion=True)["verdict"] == GAIN
    # items a model could not be scored on (None) are left out of the pairs
    assert compare([None, 1.0, 1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0, None], is_proportion=False)["n"] == 4


def test_win_rate_has_n_interval_and_ties():
    wr = win_rate([1.0, 0.5, 0.5, 0.5])  # the "0.62 = 1 win and 3 ties on 4 prompts"
    assert wr["win_rate"] == 0.625 and (wr["wins"], wr["ties"], wr["losses"], wr["n"]) == (1, 3, 0, 4)
    assert wr["interval"][0] < 0.5 < wr["interval"][1] and wr["too_small"]


class ConstantJudge:
    """Rates every answer the same: it cannot tell a reference from a poor answer."""
    name = "constant"

    def generate(self, requests):
        return [Completion(text="Rating: [[7]]") for _ in requests]


class MuteJudge:
    name = "mute"

    def generate(self, requests):
        return [Completion(text="I like turtles.") for _ in requests]


class ReferenceJudge:
    """Rates a reference answer 9, anything else 2."""
    name = "reference"

    def generate(self, requests):
        return [Completion(text="Rating: [[9]]" if "Waves fold" in r.messages[-1]["content"].split(
            "[The Start of Assistant's Answer]")[-1] else "Rating: [[2]]") for r in requests]


PROMPTS = [{"leaf": "s/a", "messages": [{"role": "user", "content": f"Write about the sea {i}."}],
            "reference": "Waves fold into foam."} for i in range(3)] + \
          [{"leaf": "s/b", "messages": [{"role": "user", "content": "Capital of France?"}],
            "reference": "Paris is the capital of France."}]


def test_a_judge_of_ties_or_unparseable_verdicts_is_refused():
    from lab_tools.eval.judges import calibrate_rating

    for judge, why in ((ConstantJudge(), "4 ties"), (MuteJudge(), "4 unparseable")):
        status = calibrate_rating(judge, PROMPTS)
        assert not status["used"] and "unable to judge" in status["reason"] and why in status["reason"]
    ok = calibrate_rating(ReferenceJudge(), PROMPTS)
    assert ok["used"] and ok["calibration"]["ties"] <= 2


def test_a_pairwise_judge_of_even_preferences_is_refused(tiny_model, monkeypatch):
    import lab_tools.eval.preference as preference
    from lab_tools.eval.judges import calibrate_pairwise
    from lab_tools.models import load_model

    model, tok = load_model(tiny_model)
    assert calibrate_pairwise(model, tok, PROMPTS, name="tiny")["used"]  # a random model is not even
    monkeypatch.setattr(preference, "ab_preferences", lambda m, t, items, **k: [0.5] * len(items))
    status = calibrate_pairwise(model, tok, PROMPTS, name="tiny")
    assert not status["used"] and "unable to judge" in status["reason"]


def test_a_judge_is_never_the_model_under_test_nor_its_base(tiny_model, tmp_path):
    from lab_tools.eval.judges import judge_model_dir, refusal

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)  # the same weights elsewhere are the same model
    why = refusal(judge_model_dir(f"transformers:{copy}"), {"base": str(tiny_model), "ST": str(tmp_path / "st")})
    assert why and "is the base model" in why
    assert refusal(judge_model_dir(str(tiny_model)), {"candidate epoch-1": str(tiny_model)}).startswith("the judge")
    assert refusal(judge_model_dir("openai:http://127.0.0.1:1/v1#m"), {"base": str(tiny_model)}) is None
    other = tmp_path / "other"
    from lab_tools.tiny import make_tiny_model

    make_tiny_model(other, seed=1)
    assert refusal(judge_model_dir(f"transformers:{other}"), {"base": str(tiny_model)}) is None
