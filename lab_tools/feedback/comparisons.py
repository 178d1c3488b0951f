"""The synthetic-comparison stage of ``lab generate`` (ALMoST, arXiv 2305.13735, section 3.1).

Per leaf: the prompts are the leaf's generated, accepted instructions (the user turns of its
samples in ``kt1/kt2/st.jsonl``; seed examples are held out and never prompts: a prompt that
near-copies one is dropped by SDG's seed rule), at most ``feedback.prompts_per_leaf``. Every
ranked configuration (:mod:`lab_tools.feedback.rubric`) answers every prompt; each response goes
through ALMoST's BAD rules and then the SDG quality filters with the seed-copy rule
(:func:`lab_tools.sdg.filters.screen_turn`: repetition, role leakage, refusals, cut answers,
restated prompts, near-copies of the leaf's seed questions and answers, which ``leaf``
demonstrations put in the teacher's context), so neither side of a pair, and so no DPO chosen
answer, is garbage or a held-out copy; the valid ones are paired by ALMoST's rule
(:mod:`lab_tools.feedback.pairing`).

Cached per leaf by content like SDG shards (:class:`lab_tools.sdg.cache.LeafCache` under
``<cache>/feedback``): the key covers the leaf's content hash, its prompts, the configurations
with their backends, the HHH dialogues and the sampling settings, so an unchanged leaf is reused
and a changed one regenerated. A leaf checkpoints after each configuration, so a run killed at
any moment (kill -9) resumes from the last finished configuration; the output files are written
only at the end, atomically, from the finished shards, so no pair is lost or duplicated.

Outputs in the data dir: ``comparisons.jsonl`` (TRL's conversational explicit-prompt preference
format: ``prompt``, ``chosen``, ``rejected`` message lists, plus ``metadata``),
``comparisons_rejected.jsonl`` (every drop: ``stage: comparisons``, the ``step`` that dropped it
-- ``prompts``, ``response``, ``pairing``, ``length rule`` -- and its ``reason``) and a ``feedback`` block in
``dataset_card.json`` (counts per leaf, per configuration pair, drops by reason).
A teacher error, or no pair at all, fails the stage (:class:`LabError`); a leaf with a teacher
error is never cached as finished.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.atomic import write_jsonl_atomic
from lab_tools.errors import LabError, plural
from lab_tools.feedback import pairing, rubric
from lab_tools.feedback.report import comparisons_markdown
from lab_tools.feedback.sampling import Backends, LeafJob, answer_jobs, leaf_prompts, select_prompts
from lab_tools.jsonl import read_jsonl
from lab_tools.sdg import filters
from lab_tools.sdg.cache import LeafCache, cache_key
from lab_tools.sdg.datacard import set_card_section
from lab_tools.sdg.rounds import SDGProgress
from lab_tools.taxonomy.leaf import load_leaf

# 2: SDG quality filters and the seed-copy rule on every response, prompts by the seed rule
CACHE_FORMAT = "comparisons-2"
STAGE = "comparisons"
KEY_SETTINGS = ("prompts_per_leaf", "max_new_tokens", "temperature", "min_chars", "seed")


@dataclass
class ComparisonReport:
    """What :func:`generate_comparisons` did: per-leaf ``leaves`` records (``leaf``, ``prompts``,
    ``pairs``, ``cached``, ``invalid`` {reason: n}, ``trimmed``, ``length_dropped``, ``skipped``,
    ``seconds``), output ``paths``, total ``pairs``, wall ``seconds`` and ``generation_seconds``
    (time inside the backends' ``generate``)."""
    leaves: list[dict]
    paths: dict[str, Path]
    pairs: int
    seconds: float
    generation_seconds: float
    card: dict = field(default_factory=dict)


def _key(leaf, prompts, confs, names, fb, fcfg) -> str:
    return cache_key({"format": CACHE_FORMAT, "leaf": leaf.path, "leaf_hash": leaf.content_hash,
                      "prompts": prompts, "demos": rubric.demos_version(),
                      "configurations": [dict(c.as_dict(), backend=names[c.name]) for c in confs],
                      "settings": {k: getattr(fb, k) for k in KEY_SETTINGS},
                      "filters": dataclasses.asdict(fcfg)})


def _message(role: str, text: str) -> list[dict]:
    return [{"role": role, "content": text}]


def _screen(prompt: str, seeds: list[str], fcfg):
    """The SDG filters and the seed-copy rule for one prompt's responses (see :mod:`pairing`)."""
    return lambda r: filters.screen_turn(prompt, r.text, fcfg, seeds=seeds, hit_limit=r.truncated)


def _shard(job: LeafJob, confs, names, fb, fcfg) -> dict:
    """Pair every prompt's responses; the leaf's rows, drops and counts. ``fcfg``: the SDG
    filters' settings (``generate.filters``)."""
    leaf, rows, dropped = job.leaf, [], list(job.dropped_prompts)
    seeds = filters.seed_texts(leaf)
    st = {"prompts": len(job.prompts), "pairs": 0, "invalid": Counter(), "trimmed": 0, "length_dropped": 0,
          "skipped": Counter(), "config_pairs": Counter(), "few_valid": 0}
    by_conf = {r["config"]: r["answers"] for r in job.state["responses"]}
    for k, prompt in enumerate(job.prompts):
        resp = [pairing.Response(c.name, c.rank, by_conf[c.name][k]["text"], by_conf[c.name][k]["truncated"])
                for c in confs if not by_conf[c.name][k]["error"]]
        res = pairing.make_pairs(resp, fb.min_chars, screen=_screen(prompt, seeds, fcfg))
        base = {"leaf": leaf.path, "prompt": prompt, "stage": STAGE}
        for c in confs:
            if by_conf[c.name][k]["error"]:
                st["invalid"]["teacher error"] += 1
                dropped.append({**base, "step": "response", "reason": "teacher error",
                                "config": c.name, "error": str(by_conf[c.name][k]["error"])[:300]})
        st["trimmed"] += sum(r.trimmed for r in resp)
        st["skipped"].update(res.skipped)
        for r in res.invalid:
            st["invalid"][r.bad] += 1
            dropped.append({**base, "step": "response", "reason": r.bad, "config": r.config,
                            "detail": r.detail, "trimmed": r.trimmed, "response": r.text[:500]})
        if res.threshold is None:
            st["few_valid"] += 1
            dropped.append({**base, "step": "pairing", "reason": "fewer than 2 valid responses"})
        for p in res.length_dropped:
            st["length_dropped"] += 1
            dropped.append({**base, "step": "length rule", "reason": "chosen shorter than rejected and "
                            "below mean - std/2", "chosen_config": p.chosen.config,
                            "rejected_config": p.rejected.config, "chosen_chars": len(p.chosen.text),
                            "rejected_chars": len(p.rejected.text), "threshold": round(res.threshold, 1)})
        for n, p in enumerate(res.pairs):
            st["pairs"] += 1
            st["config_pairs"][f"{p.chosen.config} > {p.rejected.config}"] += 1
            verdict = {"trimmed": None, "bad": None, "quality": "pass", "seed_copy": "pass"}
            md = {"leaf": leaf.path, "leaf_hash": leaf.content_hash, "kind": leaf.kind,
                  "id": f"{job.cache.key[:16]}-{k}-{n}",
                  "chosen_config": p.chosen.config, "rejected_config": p.rejected.config,
                  "ranks": {"chosen": p.chosen.rank, "rejected": p.rejected.rank},
                  "models": {"chosen": names[p.chosen.config], "rejected": names[p.rejected.config]},
                  "filters": {"chosen": dict(verdict, trimmed=p.chosen.trimmed, chars=len(p.chosen.text)),
                              "rejected": dict(verdict, trimmed=p.rejected.trimmed, chars=len(p.rejected.text)),
                              "length_threshold": round(res.threshold, 1), "length_rule": "pass"}}
            rows.append({"prompt": _message("user", prompt), "chosen": _message("assistant", p.chosen.text),
                         "rejected": _message("assistant", p.rejected.text), "metadata": md})
    stats = {k: dict(v) if isinstance(v, Counter) else v for k, v in st.items()}
    stats["seconds"] = round(job.state["seconds"], 2)
    return {"key": job.cache.key, "leaf": leaf.path, "rows": rows, "dropped": dropped, "stats": stats}


def generate_comparisons(root, data_dir, cfg, *, leaf_paths: list[str] | None = None, backends: dict | None = None,
                         progress: bool = True, require_pairs: bool = True) -> ComparisonReport:
    """Make the synthetic comparisons of ``leaf_paths`` (None: every leaf with samples in
    ``data_dir``) and write ``comparisons.jsonl``, ``comparisons_rejected.jsonl`` and the
    ``feedback`` block of ``dataset_card.json`` into ``data_dir``. Leaves not requested are taken
    from the cache when present. ``backends``: already loaded teachers by spec. ``require_pairs``:
    fail when no pair survived (off for the bot's small preview, which shows what it got).

    Raises:
        LabError: bad ``feedback`` settings; a teacher error (after writing what finished); no
        comparison at all.
    """
    t0 = time.monotonic()
    fb, data_dir = cfg.feedback, Path(data_dir)
    confs = rubric.resolve_configurations(fb, cfg.generate.teacher, cfg.train.student)
    pool = Backends(cfg, backends)
    names = {c.name: pool.name(c) for c in confs}
    identities = {c.name: pool.identity(c) for c in confs}
    prompts = leaf_prompts(data_dir)
    requested = set(prompts) if leaf_paths is None else {p.removesuffix("/qna.yaml").strip("/") for p in leaf_paths}
    root_cache = cfg.cache_path / "feedback"
    shards, jobs, cached = {}, [], set()
    for path in sorted(prompts):
        leaf = load_leaf(root, path)
        chosen, dropped_prompts = select_prompts(leaf, prompts[path], fb.prompts_per_leaf,
                                                 cfg.generate.filters.seed_threshold, STAGE)
        if not chosen:
            continue
        cache = LeafCache(root_cache, _key(leaf, chosen, confs, identities, fb, cfg.generate.filters))
        shard = cache.shard()
        if shard is not None:
            shards[path] = shard
            cached.add(path)
        elif path in requested:
            ck = cache.checkpoint()
            state = ck[1] if ck else {"responses": [], "seconds": 0.0}
            jobs.append(LeafJob(leaf, chosen, cache, state, dropped_prompts=dropped_prompts))
    bar = SDGProgress(progress)
    try:
        gen_seconds = answer_jobs(jobs, confs, fb, pool, bar, cfg.generate.max_request_error_fraction) if jobs else 0.0
    finally:
        bar.stop()
    for job in jobs:
        if job.error is None:
            shards[job.leaf.path] = _shard(job, confs, names, fb, cfg.generate.filters)
            job.cache.write_shard(shards[job.leaf.path])
    report = _write_outputs(shards, cached, confs, names, fb, data_dir, time.monotonic() - t0, gen_seconds)
    failed = [j for j in jobs if j.error]
    if failed:
        shown = "\n".join(f"  {j.leaf.path}: {j.error}" for j in failed)
        raise LabError(f"synthetic comparisons: the teacher failed for {plural(len(failed), 'leaf')} (not cached; "
                       f"a rerun retries them):\n{shown}")
    if report.pairs == 0 and require_pairs:
        raise LabError("synthetic comparisons: no pair survived the filters (see comparisons_rejected.jsonl "
                       f"in {data_dir}); a reward model trained on nothing would be meaningless: raise "
                       "feedback.prompts_per_leaf or feedback.max_new_tokens, or lower feedback.min_chars")
    return report


def _write_outputs(shards, cached, confs, names, fb, data_dir: Path, seconds: float, gen_seconds: float):
    order = sorted(shards)
    rows = [r for p in order for r in shards[p]["rows"]]
    dropped = [d for p in order for d in shards[p]["dropped"]]
    paths = {"comparisons": write_jsonl_atomic(data_dir / "comparisons.jsonl", rows),
             "comparisons_rejected": write_jsonl_atomic(data_dir / "comparisons_rejected.jsonl", dropped)}
    leaves = [dict(shards[p]["stats"], leaf=p, cached=p in cached) for p in order]
    card = {"method": "ALMoST synthetic comparisons (arXiv 2305.13735)",
            "configurations": [dict(c.as_dict(), backend=names[c.name]) for c in confs],
            "rubric": " > ".join(" = ".join(c.name for c in confs if c.rank == r)
                                 for r in sorted({c.rank for c in confs})),
            "teacher_licenses": sorted({f"{names[c.name]}: {c.license}" for c in confs if c.license}),
            "settings": {k: getattr(fb, k) for k in KEY_SETTINGS}, "demos_version": rubric.demos_version(),
            "pairs": len(rows), "per_leaf": {d["leaf"]: d["pairs"] for d in leaves},
            "per_config_pair": dict(sum((Counter(d["config_pairs"]) for d in leaves), Counter())),
            "dropped": dict(Counter(d["reason"] for d in dropped)),
            "trimmed": sum(d["trimmed"] for d in leaves), "leaves": leaves,
            "generation_seconds": round(gen_seconds, 2), "seconds": round(seconds, 2)}
    _update_card(data_dir, card)
    return ComparisonReport(leaves, paths, len(rows), seconds, gen_seconds, card)


def _update_card(data_dir: Path, block: dict) -> None:
    """Set the ``feedback`` block of ``dataset_card.json`` (written by the SDG stage) and the
    ``## Synthetic comparisons`` section of the dataset card ``README.md`` (its front matter gains
    the ``preference`` config: :func:`lab_tools.sdg.datacard.set_card_section`)."""
    set_card_section(data_dir, "feedback", block, "Synthetic comparisons", comparisons_markdown(block))


def print_table(report: ComparisonReport) -> None:
    """The per-leaf summary of :func:`generate_comparisons` on the terminal."""
    import sys

    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"synthetic comparisons: {report.card.get('rubric', '')}")
    for col in ("leaf", "prompts", "pairs", "invalid", "length rule", "trimmed", "seconds", "cached"):
        t.add_column(col, justify="left" if col == "leaf" else "right")
    for s in report.leaves:
        t.add_row(s["leaf"], str(s["prompts"]), str(s["pairs"]), str(sum(s["invalid"].values())),
                  str(s["length_dropped"]), str(s["trimmed"]), f"{s['seconds']:.1f}", "yes" if s["cached"] else "no")
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(t)
    console.print(f"{plural(report.pairs, 'comparison')} in {report.paths['comparisons']} ({report.seconds:.1f} s, "
                  f"{report.generation_seconds:.1f} s generating)")


def first_comparison(data_dir: str | Path, leaf: str) -> dict | None:
    """The first row of ``data_dir/comparisons.jsonl`` for ``leaf`` (the bot shows it), or None."""
    path = Path(data_dir) / "comparisons.jsonl"
    if not path.is_file():
        return None
    return next((r for r in read_jsonl(path) if (r.get("metadata") or {}).get("leaf") == leaf), None)
