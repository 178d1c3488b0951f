"""The SDG round runner: runs leaf jobs (:class:`Job`) stage by stage against a teacher and a
judge, with checkpoints, per-leaf stats and progress; the public interface that
:func:`lab_tools.sdg.pipeline.generate_dataset` (local engine) and :mod:`lab_tools.sdg.ray_engine`
(one leaf per Ray task) both drive.

- :func:`run_jobs` advances jobs until each is finished or failed: :func:`run_rounds` (every job's
  next stage together, for in-process backends that batch) or :func:`run_leaves` (one thread per
  leaf, for ``concurrent`` servers);
- :func:`finish` writes a finished job's shard; :func:`stats_of` / :func:`failed_stats` give a
  leaf's :class:`LeafStats`; :class:`SDGProgress` is the progress view of the SDG stages.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lab_tools.errors import plural
from lab_tools.progress import Progress, token_budget
from lab_tools.sdg.cache import LeafCache
from lab_tools.sdg.stages import LeafContext
from lab_tools.sdg.templates import prompt_version
from lab_tools.sdg.truncation import was_cut
from lab_tools.taxonomy.leaf import Leaf


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
    cache); ``truncated_prompts``: requests whose prompt was cut to fit the model's context or
    ``generate.max_prompt_tokens`` (:mod:`lab_tools.sdg.truncation`); ``budget_cut``: the stage
    before which the run's time budget (``deadline``) stopped this leaf, None when it was not
    (not an error: its checkpoints stay, a rerun resumes it)."""
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
    truncated_prompts: int = 0
    budget_cut: str | None = None


@dataclass
class Job:
    """One leaf's SDG run: the leaf, its cache (checkpoints, shard), its stage context, its stages
    (:data:`lab_tools.sdg.skills.STAGES` or :data:`lab_tools.sdg.knowledge.STAGES`), the state
    they share and the index of the next stage to run (resumed from the newest checkpoint)."""
    leaf: Leaf
    cache: LeafCache
    ctx: LeafContext
    stages: list
    state: dict
    next_stage: int = 0


def model_identity(model) -> str:
    """A Teacher object's full identity (its ``name`` when it has no ``identity``)."""
    return getattr(model, "identity", None) or model.name


def samples_of(job: Job, tname: str, jname: str) -> list[dict]:
    """The samples of a finished ``job`` (the sample format of DESIGN.md; ``phase`` is set later
    by :func:`lab_tools.sdg.phases.write_phase_datasets`), teacher and judge named."""
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


def stats_of(leaf: Leaf, shard: dict, cached: bool) -> LeafStats:
    """The :class:`LeafStats` of ``leaf`` from its finished ``shard`` (``cached``: read from the
    cache in this run, so no seconds or requests count)."""
    st = shard.get("stats", {})
    return LeafStats(leaf=leaf.path, kind=leaf.kind, generated=st.get("generated", 0),
                     kept=len(shard["samples"]), rejected=dict(st.get("rejected_by_stage", {})),
                     malformed=dict(st.get("malformed", {})), errors=dict(st.get("errors", {})),
                     unused=st.get("unused", 0), seconds=0.0 if cached else st.get("seconds", 0.0),
                     requests=0 if cached else st.get("requests", 0), cached=cached,
                     lost=dict(st.get("lost", {})), requests_by_stage=dict(st.get("requests_by_stage", {})),
                     truncated_prompts=int(st.get("truncated_prompts") or 0))


class SDGProgress:
    """Progress of the SDG stages, one task per stage (:class:`lab_tools.progress.Progress`: bars
    on a terminal, plain lines at a steady interval in CI logs; a no-op when disabled)."""

    def __init__(self, enabled: bool):
        self.view = Progress(enabled, stage="generate")

    def add(self, stage: str, n: int) -> None:
        self.view.add(stage, n)

    def advance(self, stage: str, n: int) -> None:
        self.view.advance(stage, n)

    def stop(self) -> None:
        self.view.stop()


def run_jobs(jobs, teacher, judge, g, bar: SDGProgress, tname, jname, stats, shards, *,
              deadline: float | None = None) -> None:
    """Advance every job until it is finished (shard written) or failed. Backends that serve
    concurrent callers (``concurrent = True``: a server) run each leaf on its own as soon as its own
    requests are answered (:func:`run_leaves`); in-process backends batch best when every leaf's
    next stage goes out together (:func:`run_rounds`)."""
    runner = run_leaves if getattr(teacher, "concurrent", False) and getattr(judge, "concurrent", False) \
        else run_rounds
    try:
        runner(jobs, teacher, judge, g, bar, tname, jname, stats, shards, deadline=deadline)
    finally:
        bar.stop()


def _out_of_time(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _cut(job: Job, stats) -> None:
    """Record that the time budget stopped ``job`` before its next stage (counters so far kept)."""
    st = failed_stats(job, None)
    st.budget_cut = job.stages[min(job.next_stage, len(job.stages) - 1)].name
    stats[job.leaf.path] = st


def _fail(job: Job, stage, exc: Exception, stats) -> None:
    """Record why ``job``'s leaf produced nothing: its stage raised (a bug or an odd leaf must not
    stop the other leaves)."""
    stats[job.leaf.path] = failed_stats(job, f"{stage.name}: {type(exc).__name__}: {exc}")


def failed_stats(job: Job, error: str | None, teacher_error: bool = False) -> LeafStats:
    """A failed leaf's stats: ``error`` plus the counters its state has so far (requests sent and
    failed per stage), so the summary shows what the teacher did before the leaf failed."""
    st = job.state
    return LeafStats(job.leaf.path, job.leaf.kind, generated=st.get("generated", 0),
                     rejected=dict(st.get("rejected_by_stage", {})), malformed=dict(st.get("malformed", {})),
                     errors=dict(st.get("errors", {})), lost=dict(st.get("lost", {})),
                     requests_by_stage=dict(st.get("requests_by_stage", {})), unused=st.get("unused", 0),
                     seconds=st.get("seconds", 0.0), requests=st.get("requests", 0), error=error,
                     teacher_error=teacher_error, truncated_prompts=st.get("truncated_prompts", 0))


def _check_errors(job: Job, stage, model, max_fraction: float) -> str | None:
    """The failure message when more than ``max_fraction`` of ``stage``'s requests failed in
    ``job`` (``generate.max_request_error_fraction``), else None. It names the role and full
    identity of ``model`` and the leaf's first request error."""
    st = job.state
    sent = st.get("requests_by_stage", {}).get(stage.name, 0)
    failed = st.get("errors", {}).get(stage.name, 0)
    if not sent or failed <= max_fraction * sent:
        return None
    return (f"{stage.model} {model_identity(model)} failed {failed} of {plural(sent, 'request')} in stage "
            f"{stage.name} (generate.max_request_error_fraction is {max_fraction:g}); "
            f"first error: {st.get('first_error')}")


def _build(job: Job, stats, bar: SDGProgress):
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


def _ask(model, part: list, bar: SDGProgress) -> list:
    """Send ``part`` (``[(job, stage, request)]``) to ``model``; account each completion to its
    job (an equal share of the call's seconds, one request, its tokens). Returns the completions."""
    t = time.monotonic()
    names = list(dict.fromkeys(s.name for _, s, _ in part))
    with token_budget(bar.view, "+".join(names), sum(r.max_tokens for _, _, r in part)):
        comps = model.generate([r for _, _, r in part])  # tokens move the progress mid-call
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
        if was_cut(c):  # its prompt was cut to fit the context (lab_tools.sdg.truncation)
            st["truncated_prompts"] = st.get("truncated_prompts", 0) + 1
        bar.advance(s.name, 1)
    return comps


def _consume(job: Job, stage, comps: list, model, g, tname, jname, stats, shards) -> bool:
    """Feed ``comps`` (answers of ``model``) to ``stage``, checkpoint, and finish the leaf after its
    last stage. A stage with too many failed requests (:func:`_check_errors`) fails the leaf
    before it is consumed: no checkpoint of it and no shard, so a rerun redoes it. Returns False
    when the leaf is done (finished or failed), True when it has more stages."""
    problem = _check_errors(job, stage, model, g.max_request_error_fraction)
    if problem:
        stats[job.leaf.path] = failed_stats(job, problem, teacher_error=True)
        return False
    try:
        stage.consume(job.ctx, job.state, comps)
    except Exception as exc:
        _fail(job, stage, exc, stats)
        return False
    job.cache.write_checkpoint(job.next_stage, job.state)
    job.next_stage += 1
    if job.next_stage >= len(job.stages):
        finish(job, tname, jname, stats, shards)
        return False
    return True


def run_rounds(jobs, teacher, judge, g, bar, tname, jname, stats, shards, *, deadline=None) -> None:
    """Round by round: every active job's next stage is built, all requests go to the model
    together (in calls of ``piece`` requests, for progress), then each job consumes its own.
    Past ``deadline`` no round or call starts; the round under way is dropped (:func:`_cut`)."""
    piece = max(g.batch_size, g.workers) * 4
    active = list(jobs)
    while active:
        if _out_of_time(deadline):
            for job in active:
                _cut(job, stats)
            return
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
                if _out_of_time(deadline):
                    for job, _, _ in built:
                        _cut(job, stats)
                    return
                part = flat[start:start + piece]
                for (j, _, _), c in zip(part, _ask(model, part, bar)):
                    results[id(j)].append(c)
        for job, stage, _ in built:
            model = judge if stage.model == "judge" else teacher
            if not _consume(job, stage, results[id(job)], model, g, tname, jname, stats, shards):
                active.remove(job)


def run_leaves(jobs, teacher, judge, g, bar, tname, jname, stats, shards, *, deadline=None) -> None:
    """Each leaf on its own thread, stage after stage, with no barrier between leaves: a leaf's
    responses go out as soon as its own instructions are in, while other leaves still wait on
    theirs. At most ``workers`` leaves run at once (each has one or more requests to send, so
    that fills the backend's ``workers`` slots without a thread per leaf of a large taxonomy);
    the backend bounds the requests in flight across all threads. On an interrupt (Ctrl-C) no
    leaf starts another stage; what was checkpointed resumes next time. Past ``deadline`` a leaf
    starts no stage or call (:func:`_cut`)."""
    piece = max(1, g.workers) * 4
    stop = threading.Event()

    def run(job: Job) -> None:
        while not stop.is_set():
            if _out_of_time(deadline):
                return _cut(job, stats)
            b = _build(job, stats, bar)
            if b is None:
                return
            stage, reqs = b
            model = judge if stage.model == "judge" else teacher
            comps = []
            for start in range(0, len(reqs), piece):
                if _out_of_time(deadline):
                    return _cut(job, stats)
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


def finish(job: Job, tname: str, jname: str, stats, shards) -> None:
    """Write ``job``'s shard (samples, rejected candidates, counters) to its cache and record it in
    ``shards`` and its :class:`LeafStats` in ``stats`` (both by leaf path)."""
    st = job.state
    shard = {"key": job.cache.key, "leaf": job.leaf.path, "samples": samples_of(job, tname, jname),
             "rejected": st["rejected"],
             "stats": {k: st.get(k, {}) for k in ("generated", "unused", "rejected_by_stage", "malformed",
                                                  "lost", "errors", "requests_by_stage", "seconds",
                                                  "requests", "completion_tokens", "truncated_prompts")}}
    job.cache.write_shard(shard)
    shards[job.leaf.path] = shard
    stats[job.leaf.path] = stats_of(job.leaf, shard, cached=False)
