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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.config import Config
from lab_tools.errors import LabError, plural
from lab_tools.sdg import knowledge, skills
from lab_tools.sdg.backends import close_teacher, make_teacher, teacher_identity, teacher_name, teacher_options
from lab_tools.sdg.cache import LeafCache, cache_key
from lab_tools.sdg.phases import PHASES, write_dataset_card, write_phase_datasets
from lab_tools.sdg.stages import LeafContext, new_state
from lab_tools.sdg.templates import prompt_version
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
class LeafStats:
    """Per-leaf outcome. ``generated``: candidates from the first stage; ``kept``: samples written;
    ``rejected``/``malformed``: quality rejections by stage; ``lost``: candidates dropped because
    their request failed, by stage; ``errors``/``requests_by_stage``: failed/sent teacher or judge
    requests by pipeline stage (so ``generated == kept + sum(rejected) + sum(lost) + unused``);
    ``unused``: good questions beyond ``samples``; ``seconds``: this leaf's teacher time in this
    run (round runner: its share of each call; leaf threads: how long its own calls took), 0 when
    cached; ``error``: why the leaf produced nothing (the run went on with the others);
    ``teacher_error``: it failed because too many requests failed (``error`` names the model);
    ``requested``: the run was asked for this leaf (False: a leaf not asked for, included from the
    cache)."""
    leaf: str
    kind: str
    generated: int = 0
    kept: int = 0
    rejected: dict = field(default_factory=dict)
    malformed: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    unused: int = 0
    seconds: float = 0.0
    requests: int = 0
    cached: bool = False
    error: str | None = None
    lost: dict = field(default_factory=dict)
    requests_by_stage: dict = field(default_factory=dict)
    teacher_error: bool = False
    requested: bool = True


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


@dataclass
class _Job:
    leaf: Leaf
    cache: LeafCache
    ctx: LeafContext
    stages: list
    state: dict
    next_stage: int = 0


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
                      "filters": dataclasses.asdict(g.filters),
                      "scorer": None if scorer is None else getattr(scorer, "name", "reward")})


def _identity(model) -> str:
    """A Teacher object's full identity (its ``name`` when it has no ``identity``)."""
    return getattr(model, "identity", None) or model.name


def _samples(job: _Job, tname: str, jname: str) -> list[dict]:
    leaf, out = job.leaf, []
    for c in job.state["candidates"]:
        user = f"{c['question']}\n\n{c['context']}" if c.get("context") else c["question"]
        md = {"leaf": leaf.path, "leaf_hash": leaf.content_hash, "kind": leaf.kind, "phase": None,
              "teacher": tname, "judge": jname, "prompt_version": prompt_version(),
              "scores": c.get("scores", {}), "id": f"{job.cache.key[:16]}-{c['id']}",
              "response_tokens": c.get("response_tokens", 0)}
        for k in ("persona", "source", "score", "scorer"):
            if c.get(k) is not None:
                md[k] = c[k]
        out.append({"messages": [{"role": "user", "content": user},
                                 {"role": "assistant", "content": c["answer"]}], "metadata": md})
    return out


def _stats_of(leaf: Leaf, shard: dict, cached: bool) -> LeafStats:
    st = shard.get("stats", {})
    return LeafStats(leaf=leaf.path, kind=leaf.kind, generated=st.get("generated", 0),
                     kept=len(shard["samples"]), rejected=dict(st.get("rejected_by_stage", {})),
                     malformed=dict(st.get("malformed", {})), errors=dict(st.get("errors", {})),
                     unused=st.get("unused", 0), seconds=0.0 if cached else st.get("seconds", 0.0),
                     requests=0 if cached else st.get("requests", 0), cached=cached,
                     lost=dict(st.get("lost", {})), requests_by_stage=dict(st.get("requests_by_stage", {})))


class _Progress:
    """Progress of the SDG stages, one task per stage (:class:`lab_tools.progress.Progress`: bars
    on a terminal, plain lines at a steady interval in CI logs; a no-op when disabled)."""

    def __init__(self, enabled: bool):
        from lab_tools.progress import Progress

        self.view = Progress(enabled, stage="generate")

    def add(self, stage: str, n: int) -> None:
        self.view.add(stage, n)

    def advance(self, stage: str, n: int) -> None:
        self.view.advance(stage, n)

    def stop(self) -> None:
        self.view.stop()


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
    from lab_tools.taxonomy import documents

    return documents.resolve_documents(leaf, cache_dir=cfg.cache_path / "documents", settings=cfg.documents)


def generate_dataset(root, leaf_paths, out_dir, cfg: Config, *, teacher=None, judge=None,
                     progress: bool = True, scorer=None, engine: str = "local",
                     address: str | None = None) -> GenerateReport:
    """Run SDG for ``leaf_paths`` (relative leaf dirs under ``root``; None = every leaf) and write
    ``kt1.jsonl``, ``kt2.jsonl``, ``st.jsonl``, ``rejected.jsonl``, ``dataset_card.{json,md}`` and the
    held-out files into ``out_dir``. Leaves not requested are included from the cache when present.

    ``teacher``/``judge``: Teacher objects (default: built from ``cfg.generate.teacher``/``judge``,
    only if some leaf needs generating). A leaf whose documents cannot be resolved, or whose
    stage fails unexpectedly, is recorded with ``error`` and the run goes on. ``scorer``: the
    reward-model hook ``scorer(prompts, answers) -> [float]`` that ranks kept samples when no
    model judge grades them (:func:`lab_tools.sdg.filters.select_top`; its ``name`` goes into
    the shard key). ``engine``: ``local`` (this process) or ``ray`` (one Ray task per leaf on the
    cluster at ``address``, same cache and shards: :mod:`lab_tools.sdg.ray_engine`).

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
    tname = teacher.name if teacher is not None else teacher_name(g.teacher, cfg.cache_dir)
    tident = _identity(teacher) if teacher is not None else teacher_identity(g.teacher, cfg.cache_dir)
    jspec = g.judge or g.teacher
    if judge is not None:
        jname, jident = judge.name, _identity(judge)
    elif g.judge is None and teacher is not None:
        jname, jident = tname, tident
    else:
        jname, jident = teacher_name(jspec, cfg.cache_dir), teacher_identity(jspec, cfg.cache_dir)
    sdg_cache = cfg.cache_path / "sdg"

    stats: dict[str, LeafStats] = {}
    shards: dict[str, dict] = {}
    jobs: list[_Job] = []
    for leaf in requested:
        cache = LeafCache(sdg_cache, _key(leaf, cfg, tident, jident, scorer))
        shard = cache.shard()
        if shard is not None:
            shards[leaf.path], stats[leaf.path] = shard, _stats_of(leaf, shard, cached=True)
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
        job = _Job(leaf, cache, ctx, stages, state, nxt)
        if nxt >= len(stages):  # killed after the last checkpoint, before the shard was written
            _finish(job, tname, jname, stats, shards)
        else:
            jobs.append(job)

    if engine not in ("local", "ray"):
        raise LabError(f"unknown engine {engine!r} (expected local or ray)", field="engine")
    if jobs and engine == "ray":
        from lab_tools.sdg.ray_engine import run_on_ray

        run_on_ray(jobs, cfg, teacher, judge, _Progress(progress), tname, jname, stats, shards,
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
            _run_jobs(jobs, teacher, judge, g, _Progress(progress), tname, jname, stats, shards)
        finally:
            for model in {id(m): m for m in built}.values():
                close_teacher(model)

    for leaf in others:
        shard = LeafCache(sdg_cache, _key(leaf, cfg, tident, jident, scorer)).shard()
        if shard is not None:
            shards[leaf.path], stats[leaf.path] = shard, _stats_of(leaf, shard, cached=True)
            stats[leaf.path].requested = False

    order = sorted(shards)
    paths = write_phase_datasets([shards[p] for p in order], out_dir, g.kt_split_tokens)
    from lab_tools.eval.heldout import write_heldout

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
                        "phases": {p: sum(1 for x in shards.get(s.leaf, {"samples": []})["samples"]
                                          if x["metadata"]["phase"] == p) for p in PHASES}}
                       for s in leaf_stats]}
    paths["card_json"], paths["card_md"] = write_dataset_card(card, out_dir)
    return GenerateReport(leaves=leaf_stats, paths=paths, phases=phases,
                          seconds=time.monotonic() - t0, teacher=tname, judge=jname)


def _run_jobs(jobs, teacher, judge, g, bar: _Progress, tname, jname, stats, shards) -> None:
    """Advance every job until it is finished (shard written) or failed. Backends that serve
    concurrent callers (``concurrent = True``: a server) run each leaf on its own as soon as its own
    requests are answered (:func:`_run_leaves`); in-process backends batch best when every leaf's
    next stage goes out together (:func:`_run_rounds`)."""
    runner = _run_leaves if getattr(teacher, "concurrent", False) and getattr(judge, "concurrent", False) \
        else _run_rounds
    try:
        runner(jobs, teacher, judge, g, bar, tname, jname, stats, shards)
    finally:
        bar.stop()


def _fail(job: _Job, stage, exc: Exception, stats) -> None:
    """Record why ``job``'s leaf produced nothing: its stage raised (a bug or an odd leaf must not
    stop the other leaves)."""
    stats[job.leaf.path] = _failed_stats(job, f"{stage.name}: {type(exc).__name__}: {exc}")


def _failed_stats(job: _Job, error: str, teacher_error: bool = False) -> LeafStats:
    """A failed leaf's stats: ``error`` plus the counters its state has so far (requests sent and
    failed per stage), so the summary shows what the teacher did before the leaf failed."""
    st = job.state
    return LeafStats(job.leaf.path, job.leaf.kind, generated=st.get("generated", 0),
                     rejected=dict(st.get("rejected_by_stage", {})), malformed=dict(st.get("malformed", {})),
                     errors=dict(st.get("errors", {})), lost=dict(st.get("lost", {})),
                     requests_by_stage=dict(st.get("requests_by_stage", {})), unused=st.get("unused", 0),
                     seconds=st.get("seconds", 0.0), requests=st.get("requests", 0), error=error,
                     teacher_error=teacher_error)


def _check_errors(job: _Job, stage, model, max_fraction: float) -> str | None:
    """The failure message when more than ``max_fraction`` of ``stage``'s requests failed in
    ``job`` (``generate.max_request_error_fraction``), else None. It names the role and full
    identity of ``model`` and the leaf's first request error."""
    st = job.state
    sent = st.get("requests_by_stage", {}).get(stage.name, 0)
    failed = st.get("errors", {}).get(stage.name, 0)
    if not sent or failed <= max_fraction * sent:
        return None
    return (f"{stage.model} {_identity(model)} failed {failed} of {plural(sent, 'request')} in stage "
            f"{stage.name} (generate.max_request_error_fraction is {max_fraction:g}); "
            f"first error: {st.get('first_error')}")


def _build(job: _Job, stats, bar: _Progress):
    """The requests of ``job``'s next stage as ``(stage, requests)``, or None when building failed
    (recorded as the leaf's error, see :func:`_fail`)."""
    stage = job.stages[job.next_stage]
    try:
        reqs = stage.build(job.ctx, job.state)
    except Exception as exc:
        _fail(job, stage, exc, stats)
        return None
    bar.add(stage.name, len(reqs))
    return stage, reqs


def _ask(model, part: list, bar: _Progress) -> list:
    """Send ``part`` (``[(job, stage, request)]``) to ``model``; account each completion to its
    job (an equal share of the call's seconds, one request, its tokens). Returns the completions."""
    t = time.monotonic()
    comps = model.generate([r for _, _, r in part])
    share = (time.monotonic() - t) / max(1, len(part))
    for (j, s, _), c in zip(part, comps):
        st = j.state
        st["seconds"] += share
        st["requests"] += 1
        st["completion_tokens"] += c.completion_tokens
        sent = st.setdefault("requests_by_stage", {})
        sent[s.name] = sent.get(s.name, 0) + 1
        if c.error:  # counted apart from quality rejections, per stage
            errors = st.setdefault("errors", {})
            errors[s.name] = errors.get(s.name, 0) + 1
            st["first_error"] = st.get("first_error") or f"{s.name}: {c.error}"
        bar.advance(s.name, 1)
    return comps


def _consume(job: _Job, stage, comps: list, model, g, tname, jname, stats, shards) -> bool:
    """Feed ``comps`` (answers of ``model``) to ``stage``, checkpoint, and finish the leaf after its
    last stage. A stage with too many failed requests (:func:`_check_errors`) fails the leaf
    before it is consumed: no checkpoint of it and no shard, so a rerun redoes it. Returns False
    when the leaf is done (finished or failed), True when it has more stages."""
    problem = _check_errors(job, stage, model, g.max_request_error_fraction)
    if problem:
        stats[job.leaf.path] = _failed_stats(job, problem, teacher_error=True)
        return False
    try:
        stage.consume(job.ctx, job.state, comps)
    except Exception as exc:
        _fail(job, stage, exc, stats)
        return False
    job.cache.write_checkpoint(job.next_stage, job.state)
    job.next_stage += 1
    if job.next_stage >= len(job.stages):
        _finish(job, tname, jname, stats, shards)
        return False
    return True


def _run_rounds(jobs, teacher, judge, g, bar, tname, jname, stats, shards) -> None:
    """Round by round: every active job's next stage is built, all requests go to the model
    together (in calls of ``piece`` requests, for progress), then each job consumes its own."""
    piece = max(g.batch_size, g.workers) * 4
    active = list(jobs)
    while active:
        built = []
        for job in list(active):
            b = _build(job, stats, bar)
            if b is None:
                active.remove(job)
            else:
                built.append((job, *b))
        results: dict[int, list] = {id(j): [] for j, _, _ in built}
        for model in ([teacher] if judge is teacher else [teacher, judge]):
            flat = [(j, s, r) for j, s, reqs in built
                    if (judge if s.model == "judge" else teacher) is model for r in reqs]
            for start in range(0, len(flat), piece):
                part = flat[start:start + piece]
                for (j, _, _), c in zip(part, _ask(model, part, bar)):
                    results[id(j)].append(c)
        for job, stage, _ in built:
            model = judge if stage.model == "judge" else teacher
            if not _consume(job, stage, results[id(job)], model, g, tname, jname, stats, shards):
                active.remove(job)


def _run_leaves(jobs, teacher, judge, g, bar, tname, jname, stats, shards) -> None:
    """Each leaf on its own thread, stage after stage, with no barrier between leaves: a leaf's
    responses go out as soon as its own instructions are in, while other leaves still wait on
    theirs. At most ``workers`` leaves run at once (each has one or more requests to send, so
    that fills the backend's ``workers`` slots without a thread per leaf of a large taxonomy);
    the backend bounds the requests in flight across all threads. On an interrupt (Ctrl-C) no
    leaf starts another stage; what was checkpointed resumes next time."""
    piece = max(1, g.workers) * 4
    stop = threading.Event()

    def run(job: _Job) -> None:
        while not stop.is_set():
            b = _build(job, stats, bar)
            if b is None:
                return
            stage, reqs = b
            model = judge if stage.model == "judge" else teacher
            comps = []
            for start in range(0, len(reqs), piece):
                comps += _ask(model, [(job, stage, r) for r in reqs[start:start + piece]], bar)
            if not _consume(job, stage, comps, model, g, tname, jname, stats, shards):
                return

    pool = ThreadPoolExecutor(max_workers=max(1, min(len(jobs), g.workers)))
    try:
        for f in [pool.submit(run, job) for job in jobs]:
            f.result()
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _finish(job: _Job, tname: str, jname: str, stats, shards) -> None:
    st = job.state
    shard = {"key": job.cache.key, "leaf": job.leaf.path, "samples": _samples(job, tname, jname),
             "rejected": st["rejected"],
             "stats": {k: st.get(k, {}) for k in ("generated", "unused", "rejected_by_stage", "malformed",
                                                  "lost", "errors", "requests_by_stage", "seconds",
                                                  "requests", "completion_tokens")}}
    job.cache.write_shard(shard)
    shards[job.leaf.path] = shard
    stats[job.leaf.path] = _stats_of(job.leaf, shard, cached=False)
