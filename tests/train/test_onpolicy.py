"""On-policy DPO pairs (pref.method dpo_onpolicy, lab_tools.train.onpolicy; ALMoST's RL from
synthetic feedback on the policy's own samples): the best and worst RM-scored samples of the
policy become the pair, small gaps are dropped, and the phase records which method moved the
policy and by how much (RM reward of its answers before vs after, with n)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from lab_tools.errors import LabError
from lab_tools.train.config import preset_from_dict
from lab_tools.train.onpolicy import best_worst, build_pairs, policy_reward_shift, sample_answers

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "Summarize the text.",
           "Name a prime number."]


def _msgs(q):
    return [{"role": "user", "content": q}]


def _pc(**kw):
    return SimpleNamespace(**{"onpolicy_samples": 4, "onpolicy_min_gap": 0.0, "temperature": 1.0,
                              "max_completion_length": 12, "max_length": 96, "reward_shift_prompts": 16, **kw})


def test_best_and_worst_samples_become_the_pair_and_small_gaps_are_dropped():
    prompts = [_msgs(q) for q in PROMPTS]
    samples = [["a", "bb", "ccc", "dd"], ["same", "same", "same", "same"], ["x", "y", "z", ""], ["p", "q", "r", "s"]]
    rewards = [[0.5, 2.0, -1.0, 2.0], [1.0, 1.0, 1.0, 1.0], [0.1, 0.4, 0.2, None], [0.0, 0.05, 0.1, 0.02]]
    pairs, rec = best_worst(prompts, samples, rewards, min_gap=0.2)
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [("bb", "ccc"), ("y", "x")]
    assert pairs[0]["gap"] == pytest.approx(3.0) and pairs[1]["gap"] == pytest.approx(0.3)
    assert rec["dropped"] == {"no reward gap": 1, "reward gap below pref.onpolicy_min_gap": 1}
    assert rec["pairs"] == 2 and rec["prompts"] == 4 and rec["scored"] == 15
    # min_gap 0: any strictly positive gap counts
    assert best_worst(prompts, samples, rewards, min_gap=0.0)[1]["pairs"] == 3


def test_build_pairs_scores_the_policys_own_samples_and_reuses_them(tiny_model, tmp_path):
    from lab_tools.models import load_model
    from lab_tools.tiny import make_tiny_reward_model
    from lab_tools.train.onpolicy import rm_score_fn

    rm = make_tiny_reward_model(tiny_model, tmp_path / "rm")
    rows = [{"prompt": _msgs(q), "chosen": [], "rejected": []} for q in PROMPTS * 2]  # duplicate prompts
    pc = _pc()
    pairs, rec = build_pairs(str(tiny_model), rows, str(rm), pc, tmp_path / "pref", seed=3, say=lambda *_: None)
    assert rec["prompts"] == 4 and rec["samples_per_prompt"] == 4 and rec["pairs"] == len(pairs) >= 1
    model, tok = load_model(tiny_model)  # the same seeded samples, scored again independently
    samples = sample_answers(model, tok, [_msgs(q) for q in PROMPTS], 4, max_new_tokens=12, temperature=1.0, seed=3)
    score = rm_score_fn(str(rm), 96)
    by_prompt = {json.dumps(_msgs(q)): (s, score([_msgs(q)] * 4, s)) for q, s in zip(PROMPTS, samples)}
    for p in pairs:
        texts, rewards = by_prompt[json.dumps(p["prompt"])]
        valid = [(r, t) for r, t in zip(rewards, texts) if r is not None]
        assert p["chosen"][0]["content"] == max(valid, key=lambda x: x[0])[1]
        assert p["rejected"][0]["content"] == min(valid, key=lambda x: x[0])[1]
        assert set(p) == {"prompt", "chosen", "rejected"}
    # a resumed run reuses the pairs without sampling again
    again = build_pairs(str(tiny_model), rows, str(rm), pc, tmp_path / "pref", seed=3, say=lambda *_: None,
                        sample=lambda ps: pytest.fail("sampled again"))
    assert again[0] == pairs
    with pytest.raises(LabError, match="needs a reward model"):
        build_pairs(str(tiny_model), rows, None, pc, tmp_path / "other", seed=3)
    with pytest.raises(LabError, match="onpolicy_min_gap"):
        build_pairs("st", rows, None, pc, tmp_path / "gap", seed=3, sample=lambda ps: [["a", "b"]] * len(ps),
                    score=lambda ps, ans: [1.0] * len(ans), say=lambda *_: None)


def test_policy_reward_shift_reports_before_after_and_n():
    rows = [{"prompt": _msgs(q)} for q in PROMPTS]
    answers = {"st": ["short"] * 4, "pref": ["a longer and better answer"] * 4}
    shift = policy_reward_shift("st", "pref", rows, None, _pc(reward_shift_prompts=3), None,
                                answer=lambda d, ps: answers[d][:len(ps)],
                                score=lambda ps, ans: [float(len(a.split())) for a in ans])
    assert shift["n"] == 3 and shift["before"]["value"] == 1.0 and shift["after"]["value"] == 5.0
    assert shift["change"]["gain"]["value"] == 4.0 and shift["change"]["n"] == 3
    assert policy_reward_shift("st", "pref", rows, None, _pc(), None) is None  # no reward model


def test_dpo_onpolicy_trains_on_the_policys_pairs_and_records_the_shift(tiny_model, tmp_path):
    from lab_tools.tiny import make_tiny_reward_model
    from lab_tools.train.pref import train_pref

    run, data = tmp_path / "run", tmp_path / "data"
    run.mkdir()
    data.mkdir()
    (run / "manifest.json").write_text(json.dumps({"phases": {"st": {"steps": 3, "selected": str(tiny_model)}},
                                                   "selected": str(tiny_model)}))
    (data / "comparisons.jsonl").write_text("".join(json.dumps(
        {"prompt": _msgs(q), "chosen": [{"role": "assistant", "content": "Good answer."}],
         "rejected": [{"role": "assistant", "content": "no"}], "metadata": {"leaf": "a/b"}}) + "\n" for q in PROMPTS))
    (data / "heldout_prompts.jsonl").write_text("".join(json.dumps(
        {"leaf": "a/b", "messages": _msgs(q), "reference": "Fine."}) + "\n" for q in PROMPTS))
    rm = make_tiny_reward_model(tiny_model, tmp_path / "rm")
    preset = preset_from_dict({
        "max_seq_len": 128, "micro_batch_tokens": 256, "dtype": "float32", "mixed_precision": "no", "seed": 1,
        "selection": {"max_prompts": 2, "max_new_tokens": 8, "batch_size": 2, "max_mc_items": 0, "max_checkpoints": 2},
        "pref": {"method": "dpo_onpolicy", "learning_rate": 5e-3, "effective_batch_size": 2, "micro_batch_size": 2,
                 "epochs": 1, "checkpoints": 1, "max_length": 96, "max_completion_length": 12,
                 "onpolicy_samples": 3, "reward_shift_prompts": 4}})
    entry = train_pref(run, data, preset=preset, judge_dir=None, rm_dir=str(rm), progress=False)
    assert entry["method"] == "dpo_onpolicy" and entry["comparisons"] == 4
    onp = entry["onpolicy"]
    assert onp["prompts"] == 4 and onp["samples_per_prompt"] == 3 and onp["pairs"] >= 1
    assert entry["steps"] == -(-onp["pairs"] // 2)  # DPO over the on-policy pairs, not the comparisons
    pairs = [json.loads(x) for x in (run / "pref" / "onpolicy_pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == onp["pairs"] and all(p["gap"] > 0 and max(r for r in p["rewards"] if r is not None)
                                              - min(r for r in p["rewards"] if r is not None)
                                              == pytest.approx(p["gap"]) for p in pairs)
    shift = entry["policy_reward"]
    assert shift["n"] == 4 and shift["before"]["n"] >= 1 and shift["after"]["n"] >= 1 and "verdict" in shift["change"]
    assert json.loads((run / "manifest.json").read_text())["phases"]["pref"]["policy_reward"] == shift


def test_the_preset_accepts_dpo_onpolicy_and_checks_its_settings():
    from lab_tools.errors import ConfigError

    assert preset_from_dict({"pref": {"method": "dpo_onpolicy"}}).pref.onpolicy_samples == 4
    with pytest.raises(ConfigError, match="dpo\\|dpo_onpolicy\\|rloo\\|grpo"):
        preset_from_dict({"pref": {"method": "ppo"}})
    with pytest.raises(ConfigError, match="onpolicy_samples"):
        preset_from_dict({"pref": {"onpolicy_samples": 1}})
    with pytest.raises(ConfigError, match="onpolicy_min_gap"):
        preset_from_dict({"pref": {"onpolicy_min_gap": -0.5}})
