"""The reward model as an SDG scorer (lab_tools.feedback.scorer): its name is a digest of the RM
weights and the baseline, its rewards are the RM's minus the mean rejected-response reward, and
a threshold rejects low-reward samples with the reason "pair evaluation by reward"."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from lab_tools.errors import LabError
from lab_tools.feedback.scorer import rm_digest, rm_scorer
from lab_tools.sdg.filters import REWARD_REJECTION
from lab_tools.sdg.stages import keep_top, new_state


def _tiny_rm(tiny_model, out, seed=0):
    from lab_tools.tiny import make_tiny_reward_model

    return make_tiny_reward_model(tiny_model, out, seed=seed)


def _comparisons(path, rejected_texts):
    rows = [{"prompt": [{"role": "user", "content": f"Question {i}?"}],
             "chosen": [{"role": "assistant", "content": "A careful, complete answer."}],
             "rejected": [{"role": "assistant", "content": t}]} for i, t in enumerate(rejected_texts)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rewards_are_the_rms_relative_to_the_mean_rejected_reward(tiny_model, tmp_path):
    from lab_tools.feedback.evaluate import load_rm, rewards

    rm = _tiny_rm(tiny_model, tmp_path / "rm")
    comps = _comparisons(tmp_path / "comparisons.jsonl", ["no", "I don't know.", "Maybe later, sorry."])
    scorer = rm_scorer(rm, threshold=None, max_length=64, comparisons=comps)
    prompts, answers = ["What is 2 + 2?", "Name a planet."], ["4.", "Mars is a planet."]
    got = scorer(prompts, answers)

    model, tok = load_rm(rm)  # computed independently of the scorer
    rejected = [r["prompt"] + r["rejected"] for r in map(json.loads, comps.read_text().splitlines())]
    base = sum(rewards(model, tok, rejected, max_length=64)) / 3
    raw = rewards(model, tok, [[{"role": "user", "content": p}, {"role": "assistant", "content": a}]
                               for p, a in zip(prompts, answers)], max_length=64)
    assert scorer.baseline == pytest.approx(base, abs=1e-5) and scorer.baseline != 0.0
    assert got == pytest.approx([r - base for r in raw], abs=1e-5)
    # without comparisons the baseline is 0: the RM's own rewards
    assert rm_scorer(rm, threshold=None, max_length=64)(prompts, answers) == pytest.approx(raw, abs=1e-5)


def test_name_is_a_digest_of_the_weights_and_baseline(tiny_model, tmp_path):
    rm = _tiny_rm(tiny_model, tmp_path / "rm")
    name = rm_scorer(rm, threshold=None, max_length=64).name
    assert name.startswith("reward-model:") and len(name.split(":")[1]) == 16
    assert rm_scorer(rm, threshold=0.5, max_length=32).name == name  # same weights, same name
    comps = _comparisons(tmp_path / "comparisons.jsonl", ["no"])
    assert rm_digest(rm, comps) != rm_digest(rm)  # another baseline changes the cache key
    _tiny_rm(tiny_model, rm, seed=1)  # retrained: other weights
    assert rm_scorer(rm, threshold=None, max_length=64).name != name


def test_not_a_reward_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(LabError, match="not a reward model directory"):
        rm_scorer(tmp_path, threshold=None, max_length=64)


def test_threshold_rejects_low_rewards_with_the_reason_and_ranks_the_rest():
    def scorer(prompts, answers):
        return [float(a.split()[1]) for a in answers]

    scorer.name, scorer.threshold = "fake", 0.0
    rewards = [-2.0, 3.0, 0.5, -0.1, 2.0]
    cands = [{"id": i, "question": f"Q{i}?", "answer": f"A {r}", "scores": {"rules": 0.5}}
             for i, r in enumerate(rewards)]
    state = new_state()
    ctx = SimpleNamespace(cfg=SimpleNamespace(samples=2), scorer=scorer)
    keep_top(ctx, state, cands, "pair_eval")
    assert [c["score"] for c in state["candidates"]] == [3.0, 2.0]  # top 2 by reward
    assert {c["scorer"] for c in state["candidates"]} == {"reward:fake"}
    rej = state["rejected"]
    assert [(r["reason"], r["stage"]) for r in rej] == [(REWARD_REJECTION, "pair_eval")] * 2
    assert [r["answer"] for r in rej] == ["A -2.0", "A -0.1"]
    assert rej[0]["detail"] == "reward -2.000 < threshold 0" and rej[0]["scores"]["reward"] == -2.0
    assert state["rejected_by_stage"] == {"pair_eval": 2} and state["unused"] == 1  # 5 = 2 kept + 2 rejected + 1

    scorer.threshold = None  # no threshold: nothing rejected, the rest unused
    state = new_state()
    keep_top(ctx, state, [dict(c, scores={"rules": 0.5}) for c in cands], "pair_eval")
    assert state["rejected"] == [] and state["unused"] == 3
