"""``generate_dataset``: SDG for a set of leaves, incremental and resumable (LAB 3.2).

Each requested leaf either has a finished shard in the content-addressed cache (reused as is) or
becomes a job that runs its stages (:mod:`lab_tools.sdg.skills`, :mod:`lab_tools.sdg.knowledge`)
from its newest checkpoint. With an in-process teacher, jobs advance in rounds: every job's next
stage is built, all their requests go to the teacher (or judge) together, so a small CPU model
batches across leaves; then each job consumes its completions and checkpoints. With a server
(``concurrent`` backends: openai), each leaf runs on its own thread with no barrier between leaves:
a leaf's responses go out while other leaves still wait for their instructions, which keeps a
batching server full (measured: 68 s vs 79 s for 26 samples on six corpus leaves, see
bench/results/sdg-cpu.md). Leaves not requested are read from the cache when present. Seed
examples are only in-context examples: they are never written as samples (they are the held-out
evaluation set, see :mod:`lab_tools.eval.heldout`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from lab_tools.config import Config
from lab_tools.errors import LabError, plural
from lab_tools.eval.heldout import write_heldout
from lab_tools.sdg import knowledge, skills
from lab_tools.sdg.backends import close_teacher, make_teacher, teacher_identity, teacher_name, teacher_options
from lab_tools.sdg.cache import SDG_SHARD_SHAPE, LeafCache, cache_key, holding_entries
from lab_tools.sdg.datacard import source_facts
from lab_tools.sdg.phases import PHASES, write_dataset_card, write_phase_datasets
from lab_tools.sdg.ray_engine import run_on_ray
from lab_tools.sdg.rounds import Job, LeafStats, SDGProgress, finish, model_identity, run_jobs, stats_of
from lab_tools.sdg.stages import LeafContext, new_state
from lab_tools.sdg.templates import prompt_version
from lab_tools.taxonomy import documents
from lab_tools.taxonomy.leaf import Leaf, iter_leaf_paths, load_leaf

# part of every shard key: bump it when a code change alters what a leaf generates or keeps
# (2: grounded skills dedup on context + question; 3: several instructions per request, loop filter;
# 4: the full teacher/judge identity in the key, request errors counted apart from rejections;
# 5: rule-based filters, the seed-copy filter on normalized text, the best `samples` by score)
CACHE_FORMAT = "sdg-shard-5"
# settings that change what is generated (kt_split_tokens only splits, so it is not here)
KEY_SETTINGS = ("samples", "question_factor", "questions_per_request", "max_new_tokens", "question_tokens", "context_tokens",
                "answer_tokens", "qa_tokens", "eval_tokens", "max_examples", "temperature", "seed",
                "pair_threshold", "model_judges", "dedup_threshold", "chunk_tokens", "chunk_overlap")


@dataclass
class GenerateReport:
    """What ``generate_dataset`` did: per-leaf stats (requested leaves, then cached others), the
    output ``paths`` by name (kt1, kt2, st, rejected, card_json, card_md, heldout_mc,
    heldout_prompts), sample counts per phase, wall ``seconds``."""
    leaves: list[LeafStats]
    paths: dict[str, Path]
    phases: dict[str, int]
    seconds: float
    teacher: str
    judge: str

    def failure(self) -> str | None:
        """Why this run must fail, or None: a leaf failed because its teacher's (or judge's)
        requests failed (the message names the model and the first error, see
        :func:`_check_errors`), every requested leaf failed, or no sample was written at all (a
        run that learned nothing fails loudly, DESIGN.md Trust boundary).

        The verdict depends on what each leaf came to, not on where it came from: a requested
        leaf read from the cache is a success like one generated now (only finished leaves are
        cached), and a failed leaf is never cached, so it fails again on a rerun. A first run and
        its rerun therefore get the same verdict. Leaves not requested (included from the cache)
        are not counted."""
        bad = [s for s in self.leaves if s.teacher_error]
        if bad:
            more = f" ({plural(len(bad) - 1, 'more leaf')} failed the same way)" if len(bad) > 1 else ""
            return f"{bad[0].leaf}: {bad[0].error}{more}"
        asked = [s for s in self.leaves if s.requested]
        if asked and all(s.error for s in asked):
            return (f"every requested leaf failed ({len(asked)} of {len(asked)}; "
                    f"first: {asked[0].leaf}: {asked[0].error})")
        if sum(self.phases.values()) == 0:
            return (f"no samples: {plural(len(self.leaves), 'leaf')} gave 0 samples in every phase "
                    f"(teacher {self.teacher}, judge {self.judge}); see rejected.jsonl and the dataset card")
        return None

    def summary(self) -> str:
        """The run's outcome in one line, identical whether leaves were generated now or read from
        the cache: leaves ok and failed, samples by phase, failed teacher/judge requests (a cached
        leaf keeps the counts of the run that made it). Timing and what came from the cache are
        apart from it (:meth:`cache_note`)."""
        failed = sum(1 for s in self.leaves if s.error)
        phases = ", ".join(f"{p}: {n}" for p, n in self.phases.items())
        n_err = sum(sum(s.errors.values()) for s in self.leaves)
        errs = f"; {plural(n_err, 'teacher/judge request')} failed" if n_err else ""
        return (f"{plural(len(self.leaves), 'leaf')}: {len(self.leaves) - failed} ok, {failed} failed; "
                f"samples by phase: {phases}{errs}")

    def cache_note(self) -> str:
        """Where the output went, how long the run took and how many leaves came from the cache."""
        cached = sum(1 for s in self.leaves if s.cached)
        return (f"wrote {self.paths['card_json'].parent} in {self.seconds:.1f} s "
                f"({plural(cached, 'leaf')} from the cache)")


def _key(leaf: Leaf, cfg: Config, tident: str, jident: str, scorer=None) -> str:
    """The leaf's shard key: its content and document commit, the full teacher and judge
    identities (:func:`lab_tools.sdg.backends.teacher_identity`: server URL + model, or resolved
    path + weights hash), the prompt version, the settings that change what is generated (the
    ``generate.filters`` thresholds included) and the reward-model scorer's name, if any."""
    g = cfg.generate
    return cache_key({"format": CACHE_FORMAT, "leaf": leaf.path, "leaf_hash": leaf.content_hash,
                      "document_commit": (leaf.document or {}).get("commit"),
                      "teacher": tident, "judge": jident, "prompts": prompt_version(),
                      "settings": {k: getattr(g, k) for k in KEY_SETTINGS},
                      # a prompt cap changes what the teacher sees (only when set: existing keys stay)
                      **({"max_prompt_tokens": g.max_prompt_tokens} if g.max_prompt_tokens else {}),
                      "filters": dataclasses.asdict(g.filters),
                      "scorer": None if scorer is None else getattr(scorer, "name", "reward")})


def _load_requested(root: Path, leaf_paths: list[str] | None) -> list[Leaf]:
    known = set(iter_leaf_paths(root))
    paths = sorted(known) if leaf_paths is None else list(dict.fromkeys(leaf_paths))
    leaves = []
    for p in paths:
        rel = Path(p).as_posix().removesuffix("/qna.yaml").strip("/")
        if rel not in known:
            raise LabError(f"no leaf at {rel!r} under {root} (expected {rel}/qna.yaml under "
                           "knowledge/, foundational_skills/ or compositional_skills/)", file=str(root))
        leaves.append(load_leaf(root, rel))
    return leaves


def _resolve_docs(leaf: Leaf, cfg: Config):
    return documents.resolve_documents(leaf, cache_dir=cfg.cache_path, settings=cfg.documents)


@holding_entries  # the SDG cache entries claimed below stay locked until this call ends
def generate_dataset(root, leaf_paths, out_dir, cfg: Config, *, teacher=None, judge=None,
                     progress: bool = True, scorer=None, engine: str = "local",
                     address: str | None = None, deadline: float | None = None) -> GenerateReport:
    """Run SDG for ``leaf_paths`` (relative leaf dirs under ``root``; None = every leaf) and write
    ``kt1.jsonl``, ``kt2.jsonl``, ``st.jsonl``, ``rejected.jsonl``, ``dataset_card.json``, ``README.md`` (the Hub dataset card) and the
    held-out files into ``out_dir``. Leaves not requested are included from the cache when present.

    ``teacher``/``judge``: Teacher objects (default: built from ``cfg.generate.teacher``/``judge``,
    only if some leaf needs generating). A leaf whose documents cannot be resolved, or whose
    stage fails unexpectedly, is recorded with ``error`` and the run goes on. ``scorer``: the
    reward-model hook ``scorer(prompts, answers) -> [float]`` that ranks kept samples when no
    model judge grades them (:func:`lab_tools.sdg.filters.select_top`; its ``name`` goes into
    the shard key). ``engine``: ``local`` (this process) or ``ray`` (one Ray task per leaf on the
    cluster at ``address``, same cache and shards: :mod:`lab_tools.sdg.ray_engine`).
    ``deadline``: a ``time.monotonic()`` time after which no further stage or call of requests
    starts (local engine; the bot's time budget per preview): the leaves it stops get
    ``budget_cut`` (the stage they stopped before), not ``error``.

    Raises:
        LabError: a requested leaf does not exist or cannot be loaded; a bad teacher spec.
    """
    t0 = time.monotonic()
    root, out_dir, g = Path(root), Path(out_dir), cfg.generate
    requested = _load_requested(root, leaf_paths)
    req_paths = {leaf.path for leaf in requested}
    others = []
    for p in iter_leaf_paths(root):
        if p not in req_paths:
            try:
                others.append(load_leaf(root, p))
            except LabError:
                continue  # an invalid leaf that nobody asked for: validation reports it
    eng = {"engine": g.engine}  # the local-model engine is part of a name and an identity
    tname = teacher.name if teacher is not None else teacher_name(g.teacher, cfg.cache_dir, **eng)
    tident = model_identity(teacher) if teacher is not None else teacher_identity(
        g.teacher, cfg.cache_dir, **eng, compute_type=g.engine_compute_type)
    jspec = g.judge or g.teacher
    if judge is not None:
        jname, jident = judge.name, model_identity(judge)
    elif g.judge is None and teacher is not None:
        jname, jident = tname, tident
    else:
        jname = teacher_name(jspec, cfg.cache_dir, **eng)
        jident = teacher_identity(jspec, cfg.cache_dir, **eng, compute_type=g.engine_compute_type)
    sdg_cache = cfg.cache_path / "sdg"

    stats: dict[str, LeafStats] = {}
    shards: dict[str, dict] = {}
    jobs: list[Job] = []
    caches = {leaf.path: LeafCache(sdg_cache, _key(leaf, cfg, tident, jident, scorer), state_shape=new_state(),
                                   shard_shape=SDG_SHARD_SHAPE) for leaf in requested}
    for path, c in sorted(caches.items(), key=lambda pc: pc[1].key):  # one order: no two runs deadlock
        c.claim(path)  # one writer per cache entry (lab_tools.locks)
    for leaf in requested:
        cache = caches[leaf.path]
        shard = cache.shard()
        if shard is not None:
            shards[leaf.path], stats[leaf.path] = shard, stats_of(leaf, shard, cached=True)
            continue
        docs = []
        if leaf.kind == "knowledge":
            try:
                docs = _resolve_docs(leaf, cfg)
            except (LabError, NotImplementedError, OSError) as exc:
                stats[leaf.path] = LeafStats(leaf.path, leaf.kind, error=f"documents: {exc}")
                continue
        ctx = LeafContext(leaf, g, count_tokens=lambda s: 0, documents=docs, scorer=scorer)
        stages = knowledge.STAGES if leaf.kind == "knowledge" else skills.STAGES
        ck = cache.checkpoint()
        state, nxt = (new_state(), 0) if ck is None else (ck[1], ck[0] + 1)
        job = Job(leaf, cache, ctx, stages, state, nxt)
        if nxt >= len(stages):  # killed after the last checkpoint, before the shard was written
            finish(job, tname, jname, stats, shards)
        else:
            jobs.append(job)

    if engine not in ("local", "ray"):
        raise LabError(f"unknown engine {engine!r} (expected local or ray)", field="engine")
    if jobs and engine == "ray":
        run_on_ray(jobs, cfg, teacher, judge, SDGProgress(progress), tname, jname, stats, shards,
                   address=address)
    elif jobs:
        opts = teacher_options(g)
        built = []  # what this call builds it also closes (one GPU owner at a time: backends.py)
        try:
            if teacher is None:
                teacher = make_teacher(g.teacher, cfg.cache_dir, **opts)
                built.append(teacher)
            if judge is None:
                judge = teacher if jspec == g.teacher else make_teacher(jspec, cfg.cache_dir, **opts)
                built.append(judge)
            for job in jobs:
                job.ctx.count_tokens = teacher.count_tokens
            run_jobs(jobs, teacher, judge, g, SDGProgress(progress), tname, jname, stats, shards,
                      deadline=deadline)
        finally:
            for model in {id(m): m for m in built}.values():
                close_teacher(model)

    for leaf in others:
        shard = LeafCache(sdg_cache, _key(leaf, cfg, tident, jident, scorer), shard_shape=SDG_SHARD_SHAPE).shard()
        if shard is not None:
            shards[leaf.path], stats[leaf.path] = shard, stats_of(leaf, shard, cached=True)
            stats[leaf.path].requested = False

    order = sorted(shards)
    paths = write_phase_datasets([shards[p] for p in order], out_dir, g.kt_split_tokens)
    paths["heldout_mc"], paths["heldout_prompts"] = write_heldout(
        sorted(requested + others, key=lambda lf: lf.path), out_dir)
    phases = {p: sum(1 for s in shards.values() for x in s["samples"] if x["metadata"]["phase"] == p)
              for p in PHASES}
    leaf_stats = [stats[leaf.path] for leaf in requested] + \
                 [stats[leaf.path] for leaf in others if leaf.path in stats]
    kinds = {leaf.path: leaf.kind for leaf in requested + others}
    card = {"teacher": tname, "judge": jname, "teacher_identity": tident, "judge_identity": jident,
            "prompt_version": prompt_version(),
            "settings": {**{k: getattr(g, k) for k in KEY_SETTINGS + ("kt_split_tokens", "max_request_error_fraction")},
                         "filters": dataclasses.asdict(g.filters)},
            "phases": phases,
            "request_errors": sum(sum(s.errors.values()) for s in leaf_stats),
            "leaves": [{"leaf": s.leaf, "kind": kinds[s.leaf], "generated": s.generated, "kept": s.kept,
                        "rejected": s.rejected, "malformed": s.malformed, "errors": s.errors,
                        "requests_by_stage": s.requests_by_stage, "lost": s.lost,
                        "unused": s.unused, "cached": s.cached, "error": s.error,
                        "truncated_prompts": s.truncated_prompts, "budget_cut": s.budget_cut,
                        "phases": {p: sum(1 for x in shards.get(s.leaf, {"samples": []})["samples"]
                                          if x["metadata"]["phase"] == p) for p in PHASES}}
                       for s in leaf_stats]}
    card.update(source_facts(root, g.teacher, g.teacher_license))  # taxonomy commit, licenses
    paths["card_json"], paths["card_md"] = write_dataset_card(card, out_dir)
    return GenerateReport(leaves=leaf_stats, paths=paths, phases=phases,
                          seconds=time.monotonic() - t0, teacher=tname, judge=jname)
