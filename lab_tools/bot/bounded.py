"""Bounded work per pull request (issue 23.3) and previews that deliver what they announce
(issue 27.3): what the bot's small generation may spend, and how it reaches its sample count.

- at most ``bot.max_leaves`` changed leaves are generated (:func:`pick_leaves`; every changed leaf
  is still validated, the comment lists the skipped ones);
- the whole generation, retries included, stops at ``bot.time_budget`` seconds (the pipeline's
  ``deadline``: no stage or call starts after it; the comment says which leaf it stopped where);
- the teacher's prompts are cut to ``bot.max_prompt_tokens`` (and the model's context), counted;
- a leaf that keeps fewer than the requested samples (filters drop candidates: near-duplicates of
  a seed example, the judge's verdicts, ...) is generated again with new request seeds
  (``generate.seed + attempt``) until it has them, ``bot.max_attempts`` rounds at most, within the
  budget (:func:`generate_until`); when it still falls short, :func:`shortfall` says why, filter by
  filter with counts, next to the count.

:func:`bounded_generate` is all of it for one preview, shared by the bot (:mod:`lab_tools.bot.preview`)
and ``lab ui``'s preview (:mod:`lab_tools.ui.jobs`), so both deliver under the same bounds;
:func:`count_line` is the one-line count (and why) either shows.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.errors import plural
from lab_tools.sdg import quality
from lab_tools.sdg.pipeline import generate_dataset


def pick_leaves(paths: list[str], max_leaves: int) -> tuple[list[str], list[str]]:
    """``(generated, skipped)``: the first ``max_leaves`` of ``paths`` (sorted, so the choice is
    the same on every run of the same pull request) and the rest."""
    ordered = sorted(paths)
    return ordered[:max_leaves], ordered[max_leaves:]


@dataclass
class LeafOutcome:
    """One leaf over all attempts: ``samples`` (at most the requested count, no two near-duplicate
    questions), ``rejected`` records of every attempt, summed ``stats`` (the shape of
    :func:`lab_tools.bot.preview._leaf_stats`), ``seconds``, the last ``error``, ``attempts``
    made, ``budget_cut`` (stage the time budget stopped it before, else None) and
    ``truncated_prompts``."""
    samples: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    seconds: float | None = None
    error: str | None = None
    attempts: int = 0
    budget_cut: str | None = None
    truncated_prompts: int = 0


def _add_counts(into: dict, more: dict) -> None:
    for k, v in (more or {}).items():
        into[k] = into.get(k, 0) + int(v)


def _question(sample: dict) -> str:
    return next((m.get("content", "") for m in sample.get("messages") or [] if m.get("role") == "user"), "")


def _merge(out: LeafOutcome, rec, samples: list[dict], rejected: list[dict], k: int, threshold: float) -> None:
    """Fold one attempt of one leaf (``rec``: its :class:`lab_tools.sdg.pipeline.LeafStats`) into
    ``out``; new samples that repeat a question already kept count as ``dedup`` rejections."""
    out.attempts += 1
    s = out.stats or {"generated": 0, "kept": 0, "rejected": {}, "malformed": {}, "errors": {},
                      "cached": True, "unused": 0}
    s["generated"] += int(rec.generated)
    _add_counts(s["rejected"], rec.rejected)
    _add_counts(s["malformed"], rec.malformed)
    _add_counts(s["errors"], rec.errors)
    s["unused"] += int(rec.unused)
    s["cached"] = s["cached"] and bool(rec.cached)
    out.stats = s
    out.rejected += rejected
    for sample in samples:
        q = _question(sample)
        if len(out.samples) >= k:
            s["unused"] += 1
        elif quality.near_duplicate(q, [_question(x) for x in out.samples], threshold):
            s["rejected"]["dedup"] = s["rejected"].get("dedup", 0) + 1
            out.rejected.append({"stage": "dedup", "reason": "near-duplicate of another generated question",
                                 "question": q, "attempt": out.attempts})
        else:
            out.samples.append(sample)
    s["kept"] = len(out.samples)
    out.seconds = (out.seconds or 0.0) + float(rec.seconds or 0.0)
    out.error = rec.error
    out.budget_cut = rec.budget_cut
    out.truncated_prompts += int(getattr(rec, "truncated_prompts", 0) or 0)


def _read(out_dir: Path, name: str) -> list[dict]:
    path = out_dir / name
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _by_leaf(rows: list[dict], key) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(str(key(row)), []).append(row)
    return out


def generate_until(root: Path, paths: list[str], cfg, k: int, out_dir: Path, deadline: float, *,
                   max_attempts: int, scratch: Path, teacher=None,
                   judge=None) -> tuple[dict[str, LeafOutcome], object]:
    """Generate ``paths`` until each has ``k`` samples, ``max_attempts`` rounds at most, none
    starting after ``deadline`` (``time.monotonic()``). Attempt 0 writes its datasets into
    ``out_dir``; later ones (seed ``generate.seed + attempt``, only the leaves still short and
    not failed or cut) into folders under ``scratch``. ``teacher``/``judge``: Teacher objects to
    reuse (``lab ui`` keeps one loaded), else built from ``cfg`` by the pipeline.

    Returns ``({leaf: LeafOutcome}, first GenerateReport)``.
    """
    outcomes = {p: LeafOutcome() for p in paths}
    todo, first, attempt = list(paths), None, 0
    base_seed = cfg.generate.seed
    while todo and attempt < max_attempts and (attempt == 0 or time.monotonic() < deadline):
        run_cfg = copy.deepcopy(cfg)
        run_cfg.generate.seed = base_seed + attempt
        target = out_dir if attempt == 0 else scratch / f"attempt-{attempt}"
        target.mkdir(parents=True, exist_ok=True)
        report = generate_dataset(root, todo, target, run_cfg, teacher=teacher, judge=judge, progress=False,
                                  deadline=deadline)
        first = first or report
        samples = _by_leaf([x for name in ("kt1.jsonl", "kt2.jsonl", "st.jsonl") for x in _read(target, name)],
                           lambda x: (x.get("metadata") or {}).get("leaf", ""))
        rejected = _by_leaf(_read(target, "rejected.jsonl"), lambda r: r.get("leaf", ""))
        recs = {r.leaf: r for r in report.leaves}
        for p in todo:
            if p in recs:
                _merge(outcomes[p], recs[p], samples.get(p, []), rejected.get(p, []), k,
                       cfg.generate.dedup_threshold)
        todo = [p for p in todo if len(outcomes[p].samples) < k and not outcomes[p].error
                and not outcomes[p].budget_cut]
        attempt += 1
    return outcomes, first


def shortfall(outcome: LeafOutcome, k: int, *, budget: float, max_attempts: int) -> str | None:
    """Why ``outcome`` holds fewer than ``k`` samples, or None when it does not: the filters that
    took candidates with their counts (most first), and what stopped the retries (the time
    budget, or ``bot.max_attempts``). A leaf that failed says so through its ``error``."""
    kept = len(outcome.samples)
    if kept >= k or outcome.error:
        return None
    reasons = Counter(f"{r.get('stage', '?')}: {r.get('reason', '?')}" for r in outcome.rejected)
    took = "; ".join(f"{why} took {n}" for why, n in reasons.most_common()) or "no candidate was rejected"
    if outcome.budget_cut:
        stop = f"the time budget (bot.time_budget = {budget:g} s) ran out before stage {outcome.budget_cut}"
    elif outcome.attempts >= max_attempts:
        stop = f"after {plural(outcome.attempts, 'attempt')} (bot.max_attempts)"
    else:
        stop = f"the time budget (bot.time_budget = {budget:g} s) ran out after {plural(outcome.attempts, 'attempt')}"
    return f"{kept} of {k} samples: {took}; {stop}"


def preview_bounds(cfg, k: int) -> None:
    """Set ``cfg`` (changed in place) to a preview's bounds: ``generate.samples`` = ``k`` and the
    teacher's prompts cut to ``bot.max_prompt_tokens`` (the smaller of it and
    ``generate.max_prompt_tokens`` when both are set; 0 leaves ``generate.max_prompt_tokens``)."""
    cfg.generate.samples = k
    if cfg.bot.max_prompt_tokens:
        caps = [c for c in (cfg.bot.max_prompt_tokens, cfg.generate.max_prompt_tokens) if c]
        cfg.generate.max_prompt_tokens = min(caps)


@dataclass
class BoundedRun:
    """What :func:`bounded_generate` delivered: ``outcomes`` per leaf, the first attempt's
    ``report`` (a :class:`lab_tools.sdg.pipeline.GenerateReport`), each leaf's ``shortfalls`` (why it
    holds fewer than ``k`` samples, else None), ``budget_cut`` (``"<leaf> (before stage <s>)"`` per
    leaf the time budget stopped) and ``truncated_prompts`` (teacher prompts cut to fit)."""
    outcomes: dict[str, LeafOutcome]
    report: object
    shortfalls: dict[str, str | None]
    budget_cut: list[str]
    truncated_prompts: int


def bounded_generate(root: Path, paths: list[str], cfg, k: int, out_dir: Path, deadline: float, *,
                     scratch: Path, teacher=None, judge=None) -> BoundedRun:
    """One preview's generation under the bot's bounds: :func:`preview_bounds` applied to ``cfg``
    (in place, so a later step such as the preview's comparisons runs under them too), then
    :func:`generate_until` (``k`` samples per leaf, ``bot.max_attempts`` rounds, nothing started
    after ``deadline``, a ``time.monotonic()`` value: the caller's start + ``bot.time_budget``),
    and :func:`shortfall` per leaf. ``teacher``/``judge``: as :func:`generate_until`."""
    preview_bounds(cfg, k)
    outcomes, report = generate_until(root, paths, cfg, k, out_dir, deadline, max_attempts=cfg.bot.max_attempts,
                                      scratch=scratch, teacher=teacher, judge=judge)
    return BoundedRun(
        outcomes=outcomes, report=report,
        shortfalls={p: shortfall(o, k, budget=cfg.bot.time_budget, max_attempts=cfg.bot.max_attempts)
                    for p, o in outcomes.items()},
        budget_cut=[f"{p} (before stage {o.budget_cut})" for p, o in outcomes.items() if o.budget_cut],
        truncated_prompts=sum(o.truncated_prompts for o in outcomes.values()))


def count_line(outcome: LeafOutcome, k: int, why: str | None) -> str:
    """One line for a leaf: ``"2 of 2 samples (2 attempts)"``; when short, :func:`shortfall`'s
    ``why`` (count, the filters that took candidates, what stopped the retries); when the leaf
    failed, ``"0 of 2 samples: generation failed: <error>"``."""
    if why:
        return why
    if outcome.error:
        return f"{len(outcome.samples)} of {k} samples: generation failed: {outcome.error}"
    return f"{len(outcome.samples)} of {k} samples ({plural(outcome.attempts, 'attempt')})"
