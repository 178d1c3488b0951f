"""On-policy preference pairs, ``pref.method: dpo_onpolicy`` (ALMoST, arXiv 2305.13735, section 3.3
"Reinforcement Learning from Synthetic Feedback": the SFT policy is tuned against the synthetic
reward model on its *own* samples; ALMoST used PPO through TRLX and left the RL code "TBA").

TRL no longer ships PPO (``../shared/notes/almost-and-trl.md`` section 2.4). Besides RLOO/GRPO
with the reward model (:mod:`lab_tools.train.pref`), this option makes DPO on-policy, one round:
the ST policy samples ``pref.onpolicy_samples`` answers per prompt (the comparisons' prompts;
temperature ``pref.temperature``, up to ``pref.max_completion_length`` tokens), the reward model
scores each (prompt, answer), and the best and the worst answer of a prompt become its (chosen,
rejected) pair. A prompt is dropped when its best-worst reward gap is not positive or below
``pref.onpolicy_min_gap``, or when fewer than two non-empty answers came back. DPO then trains
on these pairs instead of the offline comparisons. The pairs, their rewards and every drop are
kept in ``pref/onpolicy_pairs.jsonl`` / ``pref/onpolicy.json`` (a resumed run reuses them).

:func:`policy_reward_shift` measures what any method did to the policy: the reward model's mean
reward of the policy's greedy answers on the pref prompts, before (ST) and after (the pref
candidate), with n and the paired change and its 95% interval.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from lab_tools.atomic import write_json_atomic, write_jsonl_atomic
from lab_tools.engines.load import REFERENCE_SCORER, Scorer
from lab_tools.errors import LabError
from lab_tools.eval.decisions import compare
from lab_tools.eval.stats import bootstrap_mean
from lab_tools.feedback.evaluate import evenly_spaced, load_rm, rewards
from lab_tools.jsonl import read_jsonl

FORMAT = "onpolicy-1"


def unique_prompts(rows: list[dict]) -> list[list[dict]]:
    """The distinct ``prompt`` message lists of comparison ``rows``, in first-seen order."""
    seen: dict[str, list[dict]] = {}
    for r in rows:
        seen.setdefault(json.dumps(r["prompt"], sort_keys=True), r["prompt"])
    return list(seen.values())


def best_worst(prompts: list[list[dict]], samples: list[list[str]], rewards: list[list[float | None]],
               min_gap: float) -> tuple[list[dict], dict]:
    """DPO pairs from RM-scored samples: per prompt the highest-reward answer (the first on a tie)
    is ``chosen`` and the lowest (the last on a tie) ``rejected``; None rewards (empty answers)
    are left out. Returns ``(pairs, record)``: pairs ``{"prompt", "chosen", "rejected", "gap",
    "rewards"}`` and ``{"prompts", "pairs", "dropped": {reason: n}, "min_gap", "mean_gap",
    "mean_reward" (all scored samples), "scored"}``."""
    pairs, dropped, scored = [], Counter(), []
    for prompt, texts, rs in zip(prompts, samples, rewards):
        valid = [(r, t) for r, t in zip(rs, texts) if r is not None]
        scored += [r for r, _ in valid]
        if len(valid) < 2:
            dropped["fewer than 2 non-empty answers"] += 1
            continue
        best = max(range(len(valid)), key=lambda i: (valid[i][0], -i))
        worst = min(range(len(valid)), key=lambda i: (valid[i][0], -i))
        gap = valid[best][0] - valid[worst][0]
        if valid[best][1] == valid[worst][1] or gap <= 0:
            dropped["no reward gap"] += 1
        elif gap < min_gap:
            dropped["reward gap below pref.onpolicy_min_gap"] += 1
        else:
            pairs.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": valid[best][1]}],
                          "rejected": [{"role": "assistant", "content": valid[worst][1]}], "gap": gap,
                          "rewards": list(rs)})
    return pairs, {"prompts": len(prompts), "pairs": len(pairs), "dropped": dict(dropped), "min_gap": min_gap,
                   "mean_gap": sum(p["gap"] for p in pairs) / len(pairs) if pairs else None,
                   "mean_reward": sum(scored) / len(scored) if scored else None, "scored": len(scored)}


def sample_answers(model, tok, prompts: list[list[dict]], n: int, *, max_new_tokens: int, temperature: float,
                   seed: int, batch_size: int = 8) -> list[list[str]]:
    """``n`` sampled answers per chat prompt (message list), left-padded batches, seeded."""
    import torch

    torch.manual_seed(seed)
    side, tok.padding_side = tok.padding_side, "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    out: list[list[str]] = []
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                     for p in prompts[start:start + batch_size]]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                     top_p=1.0, top_k=0, num_return_sequences=n, pad_token_id=tok.pad_token_id)
            flat = [t.strip() for t in tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
            out += [flat[i:i + n] for i in range(0, len(flat), n)]
    finally:
        tok.padding_side = side
    return out


def rm_score_fn(rm_dir: str, max_length: int, *, skip_empty: bool = True):
    """``score(prompts, answers) -> [reward | None]``: the reward model at ``rm_dir`` on each
    (prompt messages, answer); None for an empty answer when ``skip_empty``."""
    model, tok = load_rm(rm_dir)

    def score(prompts: list[list[dict]], answers: list[str]) -> list[float | None]:
        idx = [i for i, a in enumerate(answers) if a.strip() or not skip_empty]
        got = rewards(model, tok, [prompts[i] + [{"role": "assistant", "content": answers[i]}] for i in idx],
                      max_length=max_length) if idx else []
        out: list[float | None] = [None] * len(answers)
        for i, r in zip(idx, got):
            out[i] = r
        return out
    return score


def _policy_sampler(st_dir: str, pc, seed: int):
    def sample(prompts: list[list[dict]]) -> list[list[str]]:
        from lab_tools.models import load_model

        model, tok = load_model(st_dir)
        return sample_answers(model, tok, prompts, pc.onpolicy_samples, max_new_tokens=pc.max_completion_length,
                              temperature=pc.temperature, seed=seed)
    return sample


def build_pairs(st_dir: str, rows: list[dict], rm_dir: str | None, pc, out_dir: Path, seed: int, *,
                sample=None, score=None, say=print) -> tuple[list[dict], dict]:
    """The on-policy DPO pairs of the ST policy at ``st_dir`` on the prompts of the comparisons
    ``rows`` (module doc); cached in ``out_dir`` and reused while ST, the reward model, the
    prompts and the settings are the same. ``sample(prompts) -> [[answer]]`` and
    ``score(prompts, answers) -> [reward | None]`` replace the policy and the reward model
    (tests). Returns ``(pairs as {"prompt", "chosen", "rejected"}, record)``; the record adds
    ``samples_per_prompt`` to :func:`best_worst`'s.

    Raises:
        LabError: no reward model, or no prompt left with a usable pair.
    """
    if score is None and not rm_dir:
        raise LabError("pref.method dpo_onpolicy needs a reward model to score the policy's samples: "
                       "run `lab train --phase rm` first", field="pref.method")
    prompts = unique_prompts(rows)
    key = hashlib.sha256(json.dumps({"format": FORMAT, "st": str(st_dir), "rm": str(rm_dir), "seed": seed,
                                     "prompts": prompts, "settings": [pc.onpolicy_samples, pc.onpolicy_min_gap,
                                     pc.temperature, pc.max_completion_length]}, sort_keys=True).encode()).hexdigest()
    out_dir = Path(out_dir)
    rec_path, pairs_path = out_dir / "onpolicy.json", out_dir / "onpolicy_pairs.jsonl"
    if rec_path.is_file() and pairs_path.is_file():
        record = json.loads(rec_path.read_text(encoding="utf-8"))
        if record.get("key") == key:
            return [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in read_jsonl(pairs_path)], record
    say(f"[pref] on-policy: {pc.onpolicy_samples} samples for each of {len(prompts)} prompts")
    samples = (sample or _policy_sampler(st_dir, pc, seed))(prompts)
    score = score or rm_score_fn(str(rm_dir), pc.max_length)
    flat_p = [p for p, s in zip(prompts, samples) for _ in s]
    flat = list(score(flat_p, [a for s in samples for a in s]))
    rewards, i = [], 0
    for s in samples:
        rewards.append(flat[i:i + len(s)])
        i += len(s)
    pairs, record = best_worst(prompts, samples, rewards, pc.onpolicy_min_gap)
    record = {"key": key, "samples_per_prompt": pc.onpolicy_samples, **record}
    if not pairs:
        raise LabError(f"pref.method dpo_onpolicy: no prompt's best and worst sample differ by at least "
                       f"pref.onpolicy_min_gap={pc.onpolicy_min_gap} in reward ({record['dropped']})",
                       field="pref.onpolicy_min_gap")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(pairs_path, pairs)
    write_json_atomic(rec_path, record, indent=1)
    say(f"[pref] on-policy: {record['pairs']} pairs from {record['prompts']} prompts "
        f"(dropped {sum(record['dropped'].values())}, mean gap {record['mean_gap']:.3f})")
    return [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs], record


def policy_reward_shift(before: str, after: str, rows: list[dict], rm_dir: str | None, pc, sel, *,
                        answer=None, score=None, scorer: Scorer = REFERENCE_SCORER) -> dict | None:
    """How much the preference phase moved the policy by the reward model: greedy answers
    (``pref.max_completion_length`` tokens) of ``before`` (ST) and ``after`` (the pref candidate)
    on ``pref.reward_shift_prompts`` evenly spaced prompts of the comparisons ``rows`` (the pref
    prompts), scored by the RM. Returns ``{"n", "prompts": "pref", "before", "after" (mean
    rewards with 95% bootstrap intervals), "change" (:func:`lab_tools.eval.decisions.compare`:
    paired gain, n, verdict)}``, or None without a reward model or prompts. ``answer(model_dir,
    prompts) -> [answer]`` and ``score(prompts, answers) -> [reward | None]`` replace the models
    (tests); ``scorer``: the engine the greedy answers are decoded on
    (:class:`lab_tools.engines.load.Scorer`)."""
    if (score is None and not rm_dir) or not pc.reward_shift_prompts:
        return None
    prompts = evenly_spaced(unique_prompts(rows), pc.reward_shift_prompts)
    if not prompts:
        return None
    if answer is None:
        def answer(model_dir, ps):
            from lab_tools.eval.scoring import answer_prompts

            model, tok = scorer.load(model_dir)
            return answer_prompts(model, tok, [{"messages": p} for p in ps], pc.max_completion_length,
                                  batch_size=sel.batch_size)
    got = {name: answer(d, prompts) for name, d in (("before", before), ("after", after))}
    score = score or rm_score_fn(str(rm_dir), pc.max_length, skip_empty=False)  # an empty answer is scored too
    r = {name: list(score(prompts, got[name])) for name in got}
    return {"n": len(prompts), "prompts": "pref", "before": bootstrap_mean(r["before"]).to_dict(),
            "after": bootstrap_mean(r["after"]).to_dict(), "change": compare(r["before"], r["after"],
                                                                            is_proportion=False)}
