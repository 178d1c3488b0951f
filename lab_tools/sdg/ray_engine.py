"""The Ray SDG engine (``lab generate --engine ray [--address ADDR]``): one Ray task per leaf.

Each task runs its leaf's stages from the leaf's newest checkpoint in the content-addressed cache
(:mod:`lab_tools.sdg.cache`) to the finished shard, with the same stage code as the local engine
(:func:`lab_tools.sdg.rounds.run_rounds` on that one leaf), and writes the same checkpoints and
shard files. So the cache must be on storage every node sees (``cache_dir`` in ``lab.yaml``), and:

- a killed driver resumes like the local engine: finished shards are reused, started leaves go on
  from their last checkpoint;
- a worker killed mid-leaf is retried by Ray (``max_retries``, system failures only) and the retry
  resumes from that leaf's last checkpoint: no sample is lost or written twice (a retry that finds
  the shard already written returns it as is).

Teachers: each worker process builds its own teacher and judge from their specs once and keeps
them for later leaves (``transformers:`` in-process, ``vllm:`` in-process on a GPU worker: such
tasks ask Ray for one GPU each; ``openai:`` endpoints). A pool of OpenAI-compatible endpoints
serving the same model is written ``openai:URL1,URL2,...#MODEL``: leaf ``i`` talks to endpoint
``i mod n`` (the pool string is the teacher identity in the shard key, so every endpoint must
serve the same weights). Ray itself is imported only here, when the engine runs (``pip install
'lab-tools[ray]'``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab_tools.errors import LabError
from lab_tools.sdg.backends import make_teacher, teacher_options
from lab_tools.sdg.rounds import SDGProgress, failed_stats, finish, run_rounds, stats_of

_WORKER_MODELS: dict = {}  # in each worker process: (spec, cache_dir) -> Teacher


def pool_specs(spec: str) -> list[str]:
    """The endpoint specs of a teacher spec: ``openai:U1,U2#M`` -> ``[openai:U1#M, openai:U2#M]``;
    any other spec -> ``[spec]``."""
    scheme, _, rest = str(spec).partition(":")
    url, sep, model = rest.partition("#")
    if scheme != "openai" or "," not in url:
        return [spec]
    return [f"openai:{u.strip()}{sep}{model}" for u in url.split(",") if u.strip()]


@dataclass
class Models:
    """How a worker gets its teacher and judge: from specs (built once per worker process,
    ``opts`` as for :func:`lab_tools.sdg.backends.make_teacher`), or as picklable objects."""
    teacher_spec: str = ""
    judge_spec: str = ""
    cache_dir: str | None = None
    opts: dict | None = None
    teacher: object = None
    judge: object = None

    def build(self, index: int):
        """``(teacher, judge)`` in this worker for leaf number ``index`` (endpoint share)."""
        if self.teacher is not None:
            return self.teacher, self.judge if self.judge is not None else self.teacher
        t = _worker_model(self.teacher_spec, index, self.cache_dir, self.opts or {})
        j = t if self.judge_spec == self.teacher_spec else \
            _worker_model(self.judge_spec, index, self.cache_dir, self.opts or {})
        return t, j


def _worker_model(spec: str, index: int, cache_dir, opts: dict):
    specs = pool_specs(spec)
    one = specs[index % len(specs)]
    key = (one, str(cache_dir))
    if key not in _WORKER_MODELS:
        _WORKER_MODELS[key] = make_teacher(one, cache_dir, **opts)
    return _WORKER_MODELS[key]


def run_leaf(job, models: Models, g, tname: str, jname: str, index: int):
    """Run one leaf (a :class:`lab_tools.sdg.rounds.Job`) to its shard in this process; returns
    ``(LeafStats, shard or None)``. Resumes from the cache, not from the state ``job`` was sent
    with, so a retried task continues where the killed one checkpointed."""
    shard = job.cache.shard()
    if shard is not None:  # the killed attempt had finished the leaf
        return stats_of(job.leaf, shard, cached=False), shard
    ck = job.cache.checkpoint()
    if ck is not None:
        job.state, job.next_stage = ck[1], ck[0] + 1
    teacher, judge = models.build(index)
    job.ctx.count_tokens = teacher.count_tokens
    stats, shards = {}, {}
    if job.next_stage >= len(job.stages):
        finish(job, tname, jname, stats, shards)
    else:
        run_rounds([job], teacher, judge, g, SDGProgress(False), tname, jname,
                             stats, shards)
    return stats[job.leaf.path], shards.get(job.leaf.path)


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise LabError("--engine ray needs Ray: pip install 'lab-tools[ray]'", field="engine") from exc
    return ray


def run_on_ray(jobs, cfg, teacher, judge, bar, tname: str, jname: str, stats: dict, shards: dict,
               *, address: str | None = None, max_retries: int = 3) -> None:
    """Run ``jobs`` (:class:`lab_tools.sdg.rounds.Job`) as Ray tasks and fill ``stats``/``shards`` by leaf path.

    ``address``: an existing cluster (``ray://HOST:10001`` or ``HOST:6379``; ``auto`` = the one
    this machine belongs to); None = the cluster this process is already connected to, else a
    local one. ``teacher``/``judge``: Teacher objects to ship to the workers (must pickle), or
    None to build them in each worker from ``cfg.generate.teacher``/``judge``. A leaf whose task
    fails for good (its retries spent) is recorded as failed; the others go on.

    Raises:
        LabError: Ray not installed, or a Teacher object that cannot be sent to the workers.
    """
    ray = _import_ray()
    g = cfg.generate
    if teacher is not None:
        models = Models(teacher=teacher, judge=judge)
    else:
        models = Models(teacher_spec=g.teacher, judge_spec=g.judge or g.teacher,
                        cache_dir=None if cfg.cache_dir is None else str(cfg.cache_dir),
                        opts=teacher_options(g))
    started = not ray.is_initialized()
    if started:
        extra = {} if address else {"include_dashboard": False}  # a new local cluster only
        ray.init(address=address, log_to_driver=False, **extra)
    try:
        try:
            models_ref = ray.put(models)
        except Exception as exc:
            raise LabError(f"the Ray engine cannot send the teacher to its workers ({exc}); give "
                           "a teacher spec instead", field="generate.teacher") from None
        gpu = any(str(s).startswith("vllm:") for s in (models.teacher_spec, models.judge_spec))
        task = ray.remote(run_leaf).options(max_retries=max_retries, num_gpus=1 if gpu else 0,
                                            name="lab_sdg_leaf")
        refs = {task.remote(job, models_ref, g, tname, jname, i): job for i, job in enumerate(jobs)}
        bar.add("leaves (ray)", len(refs))
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            job = refs[done[0]]
            try:
                st, shard = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                st, shard = failed_stats(job, f"ray task: {exc}"), None
            stats[job.leaf.path] = st
            if shard is not None:
                shards[job.leaf.path] = shard
            bar.advance("leaves (ray)", 1)
    finally:
        bar.stop()
        if started:
            ray.shutdown()
