"""One model's scores on an :class:`~lab_tools.eval.evalset.EvalSet` (:func:`score_model`), for
`lab evaluate` and the build's evaluate stage (:mod:`lab_tools.eval.evaluate`):

- **knowledge**: multiple-choice log-likelihood accuracy (MMLU style) on items held out from the
  knowledge leaves' seed examples (:mod:`lab_tools.eval.heldout`), per leaf;
- **mmlu**: the same metric on user-supplied MMLU-format files (CSV ``question,A,B,C,D,answer``
  like MMLU's dev/test files, or JSONL), per file;
- **judge**: the judge's 1-10 single-answer rating (MT-Bench style, explanation kept) of the
  model's answers to held-out skill prompts, per leaf; prompts with several user turns are
  answered turn by turn with the model's own earlier answers in the history (MT-Bench multi-turn),
  and the judge grades the last answer in that context.

The metric code lives in :mod:`lab_tools.eval.scoring` (shared with checkpoint selection); this
module batches the items, reports progress and aggregates per leaf (file). Every total and
per-leaf figure carries n and a 95% interval (:mod:`lab_tools.eval.stats`).
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

from lab_tools.engines.load import load_scoring_model
from lab_tools.eval.evalset import EvalSet
from lab_tools.eval.lm_eval_task import acc_sum
from lab_tools.eval.scoring import judge_scores, reference_logprob
from lab_tools.eval.stats import bootstrap_mean, wilson
from lab_tools.progress import Progress, token_budget


SCORES_VERSION = "4"  # bump when score_model's output changes (invalidates cached scores)


def _is_correct(x) -> bool:
    """scoring.mc_accuracy's per-item entries: a bool/number, or a dict with ``correct``."""
    if isinstance(x, dict):
        return bool(x.get("correct"))
    return bool(x)


def _judge_entry(x) -> tuple[float | None, str]:
    """scoring.judge_scores's per-item entries: a number, or a dict with ``rating``/``explanation``."""
    if isinstance(x, dict):
        s = x.get("rating", x.get("score"))
        return (float(s) if s is not None else None), str(x.get("explanation", ""))
    return (float(x) if x is not None else None), ""


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _mc_scores(model, tok, items: list[dict], group: str, tick, bar=None, task: str = "multiple choice") -> dict | None:
    """MC accuracy of ``items`` in chunks of 16 (``tick`` per chunk); one token budget over all of
    them on ``bar`` (task ``<task> tokens``), which every forward pass moves."""
    from lab_tools.eval.scoring import mc_accuracy, mc_token_count

    if not items:
        return None
    correct: list[bool] = []
    preds: list[int | None] = []
    scored: list = []  # every per-item entry, for the lm-eval-comparable acc_sum
    with token_budget(bar, task, mc_token_count(tok, items) if bar is not None and bar.enabled else 0):
        for chunk in _batches(items, 16):
            _, per_item = mc_accuracy(model, tok, chunk)
            scored += per_item
            correct += [_is_correct(x) for x in per_item]
            preds += [x.get("pred") if isinstance(x, dict) else None for x in per_item]
            tick(len(chunk))
    per: dict[str, dict] = {}
    for it, ok in zip(items, correct):
        row = per.setdefault(it[group], {"correct": 0, "n": 0})
        row["correct"] += ok
        row["n"] += 1
    per_out = {k: {"accuracy": v["correct"] / v["n"], "n": v["n"],
                   "interval": wilson(v["correct"], v["n"]).to_dict()["interval"]} for k, v in sorted(per.items())}
    key = "per_leaf" if group == "leaf" else "per_source"
    total = wilson(sum(correct), len(correct))
    return {"accuracy": sum(correct) / len(correct), "n": len(correct), "interval": total.to_dict()["interval"],
            "too_small": total.too_small, key: per_out, "acc_sum": acc_sum(scored),
            "items": [{group: it[group], "question": it["question"], "answer": it["answer"], "pred": p,
                       "correct": ok} for it, p, ok in zip(items, preds, correct)]}


def _reference_scores(model, tok, prompts: list[dict], tick, bar=None, task: str = "reference") -> dict | None:
    """Held-out reference log-likelihood per skills leaf (see scoring.reference_logprob), with
    bootstrap 95% intervals; ``items`` keeps every prompt's value (None without a reference) for
    the branch report's paired comparison."""
    if not prompts:
        return None
    values = reference_logprob(model, tok, prompts, progress=bar, task=task)  # moves per forward pass
    tick(len(prompts))
    per: dict[str, list] = {}
    for p, v in zip(prompts, values):
        if v is not None:
            per.setdefault(p["leaf"], [p.get("kind", ""), []])[1].append(v)
    valid = [v for v in values if v is not None]
    if not valid:
        return None
    return {"mean": sum(valid) / len(valid), "n": len(valid), "interval": bootstrap_mean(valid).to_dict()["interval"],
            "per_leaf": {k: {"mean": sum(v) / len(v), "n": len(v), "kind": kind,
                             "interval": bootstrap_mean(v).to_dict()["interval"]}
                         for k, (kind, v) in sorted(per.items())},
            "items": [{"leaf": p["leaf"], "value": v} for p, v in zip(prompts, values)]}


def _answer_all(model, tok, prompts: list[dict], max_new_tokens: int, tick) -> list[list[dict]]:
    """Answer every prompt turn by turn; returns each prompt's conversation ending with the answer."""
    from lab_tools.eval.scoring import answer_prompts

    user_turns = [[m for m in p["messages"] if m.get("role") == "user"] for p in prompts]
    system = [[m for m in p["messages"] if m.get("role") == "system"][:1] for p in prompts]
    convs = [list(s) for s in system]
    for turn in range(max((len(u) for u in user_turns), default=0)):
        idx = [i for i, u in enumerate(user_turns) if len(u) > turn]
        for i in idx:
            convs[i].append(user_turns[i][turn])
        for chunk in _batches(idx, 8):
            answers = answer_prompts(model, tok, [{"messages": convs[i]} for i in chunk], max_new_tokens)
            for i, a in zip(chunk, answers):
                convs[i].append({"role": "assistant", "content": a})
            tick(len(chunk))
    return convs


def _judge(judge, prompts: list[dict], convs: list[list[dict]], tick, max_tokens: int) -> dict | None:
    if not prompts or judge is None:
        return None
    graded = [dict(p, messages=c[:-1]) for p, c in zip(prompts, convs)]
    answers = [c[-1]["content"] for c in convs]
    entries = []
    for chunk in _batches(list(range(len(graded))), 8):
        _, per_item = judge_scores(judge, [graded[i] for i in chunk], [answers[i] for i in chunk],
                                   max_tokens=max_tokens)
        entries += [_judge_entry(x) for x in per_item]
        tick(len(chunk))
    items, per = [], {}
    for p, conv, (score, expl) in zip(prompts, convs, entries):
        items.append({"leaf": p["leaf"], "kind": p.get("kind", ""), "turns": sum(m["role"] == "user" for m in conv),
                      "prompt": conv[-2]["content"], "answer": conv[-1]["content"],
                      "score": score, "explanation": expl})
        # every prompted leaf gets a row, even when no rating could be parsed (mean None)
        row = per.setdefault(p["leaf"], {"sum": 0.0, "n": 0, "unparsed": 0, "kind": p.get("kind", "")})
        if score is None:
            row["unparsed"] += 1
        else:
            row["sum"] += score
            row["n"] += 1
    valid = [s for s, _ in entries if s is not None]
    return {"mean": sum(valid) / len(valid) if valid else None, "n": len(valid),
            "interval": bootstrap_mean(valid).to_dict()["interval"],
            "unparsed": len(entries) - len(valid), "judge": getattr(judge, "name", str(judge)),
            "per_leaf": {k: {"mean": v["sum"] / v["n"] if v["n"] else None, "n": v["n"],
                             "unparsed": v["unparsed"], "kind": v["kind"]} for k, v in sorted(per.items())},
            "items": items}


def score_model(spec: str | Path, evalset: EvalSet, judge=None, *, max_new_tokens: int = 64,
                judge_max_tokens: int = 48, progress: bool = True, label: str = "model",
                cache_dir: str | Path | None = None, engine: str = "auto", compute_type: str = "int8") -> dict:
    """Score one model on ``evalset``; ``engine``/``compute_type``: what runs the model's scores
    and answers (``generate.engine``: :func:`lab_tools.engines.load.load_scoring_model`).

    Args:
        spec: a local model directory or ``embedded``.
        judge: a :class:`lab_tools.sdg.backends.Teacher` used as judge, or None (no judge score).
        max_new_tokens: bound on each answer to a judge prompt.
        judge_max_tokens: bound on the judge's explanation + rating (MT-Bench asks for a short one).

    Returns:
        ``{"model", "knowledge": {"accuracy", "n", "interval", "too_small", "per_leaf", "items"} | None,
        "mmlu": {"accuracy", "n", "interval", "too_small", "per_source", "items"} | None,
        "reference": {"mean", "n", "interval", "per_leaf", "items"} | None (held-out reference
        answers' mean log-probability per token, nats), "judge": {"mean", "n", "interval",
        "unparsed", "judge", "per_leaf", "items"} | None, "seconds"}``. Accuracies are fractions
        0..1, judge means 1..10; ``interval``: 95% (Wilson for accuracies, bootstrap for means).
    """
    start = time.monotonic()
    n_judge = len(evalset.prompts) if judge is not None else 0
    n_turns = sum(sum(m.get("role") == "user" for m in p["messages"]) for p in evalset.prompts) if judge else 0
    with Progress(progress, stage="evaluate", transient=True) as bar:  # bars, or lines in CI logs
        bar.add(label, len(evalset.mc) + len(evalset.mmlu) + len(evalset.prompts) + n_turns + n_judge)

        def tick(n: int) -> None:
            bar.advance(label, n)

        model, tok = load_scoring_model(spec, cache_dir, engine=engine, compute_type=compute_type)
        try:
            knowledge = _mc_scores(model, tok, evalset.mc, "leaf", tick, bar, f"{label} knowledge")
            mmlu = _mc_scores(model, tok, evalset.mmlu, "source", tick, bar, f"{label} mmlu")
            reference = _reference_scores(model, tok, evalset.prompts, tick, bar, f"{label} reference")
            with token_budget(bar, f"{label} answers", n_turns * max_new_tokens):  # moves mid-batch
                convs = _answer_all(model, tok, evalset.prompts, max_new_tokens, tick) if judge is not None else []
        finally:
            del model
            gc.collect()
        with token_budget(bar, f"{label} judge", n_judge * judge_max_tokens):
            judged = _judge(judge, evalset.prompts, convs, tick, judge_max_tokens)
    return {"model": str(spec), "knowledge": knowledge, "mmlu": mmlu, "reference": reference,
            "judge": judged, "seconds": round(time.monotonic() - start, 2)}
