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
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.atomic import write_json_atomic, write_jsonl_atomic, write_text_atomic
from lab_tools.errors import LabError, plural
from lab_tools.feedback import pairing, rubric
from lab_tools.feedback.raw import cut_at_next_turn
from lab_tools.jsonl import read_jsonl
from lab_tools.sdg.backends import ChatRequest
from lab_tools.sdg import filters, quality
from lab_tools.sdg.cache import LeafCache, cache_key

# 2: SDG quality filters and the seed-copy rule on every response, prompts by the seed rule
CACHE_FORMAT = "comparisons-2"
STAGE = "comparisons"
KEY_SETTINGS = ("prompts_per_leaf", "max_new_tokens", "temperature", "min_chars", "seed")
PHASE_FILES = ("kt1.jsonl", "kt2.jsonl", "st.jsonl")


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


def leaf_prompts(data_dir: str | Path, files: tuple[str, ...] = PHASE_FILES) -> dict[str, list[str]]:
    """``{leaf: [instruction, ...]}`` from the phase datasets ``files`` in ``data_dir`` (file
    order): the first user turn of each generated sample, duplicates removed."""
    out: dict[str, list[str]] = {}
    for name in files:
        path = Path(data_dir) / name
        if not path.is_file():
            continue
        for s in read_jsonl(path):
            user = next((m["content"] for m in s.get("messages", []) if m.get("role") == "user"), None)
            leaf = (s.get("metadata") or {}).get("leaf")
            if user and leaf and user not in out.setdefault(leaf, []):
                out[leaf].append(user)
    return out


def _seed(fb, leaf, conf, i: int) -> int:
    src = f"{fb.seed}:{leaf.content_hash}:{conf.name}:{i}"
    return int(hashlib.sha256(src.encode()).hexdigest()[:8], 16)


def _request(fb, leaf, conf, prompt: str, i: int) -> ChatRequest:
    msgs = rubric.messages(conf, leaf, prompt)
    if conf.format == "raw":
        msgs = [{"role": "user", "content": rubric.raw_prompt(msgs)}]
    return ChatRequest(msgs, max_tokens=fb.max_new_tokens, temperature=fb.temperature,
                       seed=_seed(fb, leaf, conf, i), tag="feedback")


@dataclass
class _Job:
    leaf: object
    prompts: list[str]
    cache: LeafCache
    state: dict
    error: str | None = None
    dropped_prompts: list = field(default_factory=list)


class Backends:
    """Teacher backends by spec, built once (``known``: a dict of already loaded ones, e.g. the
    build's, which new ones are added to); a raw-format configuration gets a raw view of the same
    loaded model."""

    def __init__(self, cfg, known: dict | None = None):
        self.cfg, self.known = cfg, known if known is not None else {}

    def name(self, conf) -> str:
        """The configuration's model as recorded in metadata (e.g. ``transformers:SmolLM2-135M-Instruct+raw``)."""
        from lab_tools.sdg.backends import teacher_name

        return teacher_name(conf.model, self.cfg.cache_path) + ("+raw" if conf.format == "raw" else "")

    def identity(self, conf) -> str:
        """The model's full identity (weights digest, server URL) for the cache key."""
        from lab_tools.sdg.backends import teacher_identity

        return teacher_identity(conf.model, self.cfg.cache_path) + ("+raw" if conf.format == "raw" else "")

    def get(self, conf):
        if conf.model not in self.known:
            from lab_tools.sdg.backends import make_teacher, teacher_options

            self.known[conf.model] = make_teacher(conf.model, self.cfg.cache_path, **teacher_options(
                self.cfg.generate, batch_size=self.cfg.feedback.batch_size))
        model = self.known[conf.model]
        if conf.format == "raw":
            from lab_tools.feedback.raw import RawTransformersTeacher
            from lab_tools.sdg.backends import TransformersTeacher

            if isinstance(model, TransformersTeacher):
                key = conf.model + "+raw"
                self.known.setdefault(key, RawTransformersTeacher(model))
                return self.known[key]
        return model


def _key(leaf, prompts, confs, names, fb, fcfg) -> str:
    return cache_key({"format": CACHE_FORMAT, "leaf": leaf.path, "leaf_hash": leaf.content_hash,
                      "prompts": prompts, "demos": rubric.demos_version(),
                      "configurations": [dict(c.as_dict(), backend=names[c.name]) for c in confs],
                      "settings": {k: getattr(fb, k) for k in KEY_SETTINGS},
                      "filters": dataclasses.asdict(fcfg)})


def select_prompts(leaf, prompts: list[str], n: int, seed_threshold: float,
                   stage: str = STAGE) -> tuple[list[str], list[dict]]:
    """``(chosen, dropped)``: the first ``n`` of ``prompts`` that do not near-copy a seed example
    of ``leaf`` (:func:`lab_tools.sdg.quality.seed_copy` over :func:`lab_tools.sdg.filters.seed_texts`,
    the rule SDG applies to its instructions, ``generate.filters.seed_threshold``), and a rejected
    row (``stage``, step ``prompts``, reason) for each one passed over."""
    seeds, chosen, dropped = filters.seed_texts(leaf), [], []
    for p in prompts:
        if len(chosen) >= n:
            break
        copied = quality.seed_copy(p, seeds, seed_threshold)
        if copied is None:
            chosen.append(p)
        else:
            dropped.append({"leaf": leaf.path, "prompt": p, "stage": stage, "step": "prompts",
                            "reason": filters.SEED_COPY, "detail": f"copies {copied[:60]!r}"})
    return chosen, dropped


def _answers(comps, conf, max_tokens: int) -> list[dict]:
    """Completions as stored answers; ``truncated``: stopped by the token bound (a raw reply cut
    at the model's next turn is complete)."""
    out = []
    for c in comps:
        text, cut = cut_at_next_turn(c.text) if conf.format == "raw" else (c.text.strip(), False)
        out.append({"text": text, "tokens": c.completion_tokens, "error": c.error,
                    "truncated": (not cut) and c.completion_tokens >= max_tokens})
    return out


def request_chunk(model, fb) -> float:
    """Requests per ``generate`` call for teacher ``model`` (whole leaves: a leaf's prompts are
    never split, so a call carries at least this many, unless fewer are left):
    ``feedback.request_chunk`` when > 0; else every request of the configuration at once
    (``inf``) for a teacher that keeps its own queue (a server: ``concurrent``; vLLM:
    ``schedules_batches``), so the queue never runs empty between calls, or
    ``2 * feedback.batch_size`` for an in-process batching teacher (transformers: nothing is
    lost by chunking, and each chunk checkpoints and advances the progress bar).
    Smaller chunks lose less to a crash: a leaf's responses are checkpointed after its call."""
    if fb.request_chunk > 0:
        return fb.request_chunk
    if getattr(model, "concurrent", False) or getattr(model, "schedules_batches", False):
        return float("inf")
    return max(1, fb.batch_size) * 2


def _run(jobs: list[_Job], confs, fb, backends: Backends, progress, max_error_fraction: float) -> float:
    """Answer every job's prompts with each configuration it still lacks (checkpoint after each
    configuration); returns the seconds spent in the backends' ``generate``. A leaf fails (no
    checkpoint, ``error`` set) when more than ``max_error_fraction`` of one configuration's
    requests failed (``generate.max_request_error_fraction``, as SDG); fewer failed requests
    are invalid responses (``teacher error``), never pair members."""
    gen_seconds = 0.0
    max_errors = max_error_fraction
    for i, conf in enumerate(confs):
        todo = [j for j in jobs if j.error is None and len(j.state["responses"]) == i]
        if not todo:
            continue
        model = backends.get(conf)
        piece = request_chunk(model, fb)
        progress.add(f"responses {conf.name}", sum(len(j.prompts) for j in todo))
        group: list[_Job] = []
        for n, job in enumerate(todo):
            group.append(job)
            if sum(len(j.prompts) for j in group) < piece and n < len(todo) - 1:
                continue
            reqs = [_request(fb, j.leaf, conf, p, k) for j in group for k, p in enumerate(j.prompts)]
            t = time.monotonic()
            comps = model.generate(reqs)
            gen_seconds += time.monotonic() - t
            at = 0
            for j in group:
                answers = _answers(comps[at:at + len(j.prompts)], conf, fb.max_new_tokens)
                at += len(j.prompts)
                errors = [a["error"] for a in answers if a["error"]]
                if len(errors) > max_errors * len(answers) or len(errors) == len(answers):
                    j.error = f"teacher error ({conf.name}, {len(errors)} of {len(answers)}): {errors[0]}"[:400]
                    continue
                j.state["responses"].append({"config": conf.name, "answers": answers})
                j.state["seconds"] += (time.monotonic() - t) * len(j.prompts) / max(1, len(reqs))
                j.cache.write_checkpoint(i, j.state)
            progress.advance(f"responses {conf.name}", len(reqs))
            group = []
    return gen_seconds


def _message(role: str, text: str) -> list[dict]:
    return [{"role": role, "content": text}]


def _screen(prompt: str, seeds: list[str], fcfg):
    """The SDG filters and the seed-copy rule for one prompt's responses (see :mod:`pairing`)."""
    return lambda r: filters.screen_turn(prompt, r.text, fcfg, seeds=seeds, hit_limit=r.truncated)


def _shard(job: _Job, confs, names, fb, fcfg) -> dict:
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
    from lab_tools.sdg.pipeline import _Progress
    from lab_tools.taxonomy.leaf import load_leaf

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
                                                 cfg.generate.filters.seed_threshold)
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
            jobs.append(_Job(leaf, chosen, cache, state, dropped_prompts=dropped_prompts))
    bar = _Progress(progress)
    try:
        gen_seconds = _run(jobs, confs, fb, pool, bar, cfg.generate.max_request_error_fraction) if jobs else 0.0
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
    """Set the ``feedback`` block of ``dataset_card.json`` (written by the SDG stage) and append
    a section to ``dataset_card.md``."""
    jpath, mpath = data_dir / "dataset_card.json", data_dir / "dataset_card.md"
    card = json.loads(jpath.read_text(encoding="utf-8")) if jpath.is_file() else {}
    card["feedback"] = block
    write_json_atomic(jpath, card, indent=2, newline=True)
    from lab_tools.feedback.report import comparisons_markdown

    md = mpath.read_text(encoding="utf-8") if mpath.is_file() else "# Dataset card\n"
    md = md.split("\n## Synthetic comparisons", 1)[0].rstrip("\n") + "\n\n" + comparisons_markdown(block)
    write_text_atomic(mpath, md)


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
