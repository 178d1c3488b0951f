"""Preview generation in the background: one job per button press, with progress.

A job stages the leaf as the page would write it (:func:`lab_tools.ui.checks.staged_root`), runs
the bot's bounded preview generation on it (:func:`lab_tools.bot.bounded.bounded_generate`:
``bot.samples`` per leaf, new rounds until they are kept, ``bot.max_attempts`` at most, nothing
started after ``bot.time_budget`` seconds from the job's start, prompts cut to
``bot.max_prompt_tokens``) with the configured teacher and judge (embedded by default;
``--teacher`` overrides both), says the count and why it is short in one line (``summary``), and
renders the result exactly as the bot's pull-request comment shows a leaf
(:func:`lab_tools.bot.render.render_leaf`),
converted to HTML by markdown-it. Jobs run one at a time on one worker thread; the teacher is
built once and reused. The queue is bounded (:data:`MAX_QUEUED` waiting jobs; one more start is
answered "busy", HTTP 429), a new preview of a leaf cancels the unfinished previews of that leaf
(a queued one never runs; a running one stops at its next teacher call), and only finished jobs
are dropped from the table, so no job runs unseen. Knowledge leaves whose ``document.repo`` is a
path inside the taxonomy's own git repository get that path made absolute in the staged copy, so
the pinned documents still resolve.
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.bot.bounded import bounded_generate, count_line, preview_bounds
from lab_tools.bot.render import FindingView, LeafView, render_leaf
from lab_tools.errors import LabError, plural
from lab_tools.gitsafe import find_repo
from lab_tools.sdg.backends import make_teacher, teacher_options
from lab_tools.ui.checks import check_leaf, staged_root
from lab_tools.ui.form import LeafForm

MAX_JOBS = 20  # finished jobs kept for polling; the oldest are forgotten
MAX_QUEUED = 4  # previews waiting behind the running one; one more is answered "busy"
_FINISHED = ("done", "failed", "cancelled")


class PreviewBusy(LabError):
    """The preview queue is full (answered with HTTP ``status`` 429)."""
    status = 429


class PreviewCancelled(Exception):
    """Raised inside a running preview (at its next teacher call) when it was replaced."""


@dataclass
class Job:
    """One preview run. ``state``: ``queued`` | ``running`` | ``done`` | ``failed`` | ``cancelled``
    (replaced by a newer preview of the same leaf); ``stage``: what it is doing now; ``requests``:
    teacher requests answered so far; ``markdown``/``html``: the leaf as the bot's comment shows
    it (when done); ``error``: why it failed or was cancelled; ``samples``: ``{"kept", "requested",
    "attempts"}`` of a generated preview (else None) and ``summary`` its one line: the count, and
    why it is short (which filter took how many, what stopped the retries), prompts cut to fit
    (:func:`lab_tools.bot.bounded.count_line`)."""
    id: str
    leaf: str
    state: str = "queued"
    stage: str = "waiting for the previous preview"
    requests: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    markdown: str = ""
    html: str = ""
    error: str = ""
    samples: dict | None = None
    summary: str = ""
    cancel: bool = False  # set by a newer preview of the same leaf; checked at each teacher call

    def view(self) -> dict:
        """The job as the progress endpoint returns it."""
        secs = self.seconds if self.state in _FINISHED else time.monotonic() - self.started
        return {"id": self.id, "leaf": self.leaf, "state": self.state, "stage": self.stage,
                "requests": self.requests, "seconds": round(secs, 1), "markdown": self.markdown,
                "html": self.html, "error": self.error, "samples": self.samples, "summary": self.summary}


class _CountingTeacher:
    """Wraps a teacher to count answered requests and name the SDG stage for the job's progress."""

    def __init__(self, inner, job_ref):
        self._inner, self._job_ref = inner, job_ref

    def generate(self, requests):
        job = self._job_ref()
        if job is not None and job.cancel:
            raise PreviewCancelled()
        if job is not None and requests:
            job.stage = f"{requests[0].tag or 'generating'}: {plural(len(requests), 'request')}"
        out = self._inner.generate(requests)
        if job is not None:
            job.requests += len(out)
        return out

    def __getattr__(self, name):
        return getattr(self._inner, name)


def markdown_to_html(md: str) -> str:
    """CommonMark -> HTML with markdown-it (raw HTML kept: the bot's ``<details>``; every piece of
    leaf or teacher text inside was escaped by :mod:`lab_tools.bot.render`)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).render(md)


class PreviewJobs:
    """The preview jobs of one ``lab ui`` server.

    Args:
        root: the taxonomy root; cfg: the :class:`lab_tools.config.Config` (teacher, samples);
        teacher_spec: overrides ``cfg.generate.teacher`` (and the judge) when given.
    """

    def __init__(self, root: Path, cfg, teacher_spec: str | None = None):
        self.root, self.cfg = Path(root), copy.deepcopy(cfg)
        if teacher_spec:
            self.cfg.generate.teacher = teacher_spec
            self.cfg.generate.judge = None
        self.jobs: dict[str, Job] = {}
        self._cond = threading.Condition()  # guards jobs, the queue and the worker
        self._queue: deque[tuple[Job, str, LeafForm]] = deque()
        self._worker: threading.Thread | None = None
        self._teacher = self._judge = None  # built on the first preview, then reused

    @property
    def teacher(self) -> str:
        """The teacher spec previews use."""
        return self.cfg.generate.teacher

    def start(self, rel: str, leaf: LeafForm) -> Job:
        """Queue a preview of ``leaf`` at ``rel``; returns the job at once. Unfinished previews of
        the same ``rel`` are cancelled (replaced).

        Raises:
            PreviewBusy: :data:`MAX_QUEUED` previews of other leaves are already waiting.
        """
        leaf = copy.deepcopy(leaf)
        with self._cond:
            for queued, qrel, _ in self._queue:
                if qrel == rel:
                    self._finish_cancelled(queued)
            self._queue = deque(item for item in self._queue if item[1] != rel)
            for job in self.jobs.values():
                if job.leaf == rel and job.state == "running":
                    job.cancel = True
            if len(self._queue) >= MAX_QUEUED:
                raise PreviewBusy(f"busy: {plural(len(self._queue), 'preview')} already waiting behind the running "
                                  "one; try again when one finishes")
            job = Job(id=uuid.uuid4().hex, leaf=rel)
            self.jobs[job.id] = job
            self._queue.append((job, rel, leaf))
            finished = [k for k, j in self.jobs.items() if j.state in _FINISHED]
            for k in finished[:max(0, len(self.jobs) - MAX_JOBS)]:
                del self.jobs[k]  # the oldest finished ones; unfinished jobs are never dropped
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, daemon=True, name="lab-ui-preview")
                self._worker.start()
            self._cond.notify()
        return job

    @staticmethod
    def _finish_cancelled(job: Job) -> None:
        job.state, job.stage = "cancelled", "cancelled"
        job.error = "replaced by a newer preview of this leaf"
        job.seconds = time.monotonic() - job.started

    def get(self, job_id: str) -> Job | None:
        """The job with ``job_id``, or None."""
        return self.jobs.get(job_id)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if not self._cond.wait(timeout=60):
                        if not self._queue:  # idle: end the thread (start() makes a new one)
                            self._worker = None
                            return
                job, rel, leaf = self._queue.popleft()
                job.state, job.started, job.stage = "running", time.monotonic(), "checking the leaf"
            self._run(job, rel, leaf)

    def _run(self, job: Job, rel: str, leaf: LeafForm) -> None:
        try:
            job.markdown = self._generate(job, rel, leaf)
            job.html = markdown_to_html(job.markdown)
            job.state, job.stage = "done", "done"
        except PreviewCancelled:
            self._finish_cancelled(job)
        except Exception as exc:  # noqa: BLE001 -- a failed preview is shown, never crashes the server
            job.error = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
            job.state, job.stage = "failed", "failed"
            if not isinstance(exc, LabError):
                traceback.print_exc()
        if job.cancel and job.state != "cancelled":
            self._finish_cancelled(job)
        job.seconds = time.monotonic() - job.started

    def _localize_documents(self, leaf: LeafForm, cfg) -> None:
        """Make a relative ``document.repo`` absolute (it is relative to the real taxonomy root)."""
        doc = leaf.data.get("document")
        repo = doc.get("repo", "") if isinstance(doc, dict) else ""
        if not repo or "://" in repo or os.path.isabs(repo) or "@" in repo.split("/", 1)[0]:
            return
        target = (self.root / repo).resolve()
        try:
            top = find_repo(self.root).work_tree  # never discovery inside the taxonomy
        except LabError:
            return
        if target.is_relative_to(top):  # the rule documents.py applies to relative paths
            doc["repo"] = str(target)
            cfg.documents.allow_local = True

    def _generate(self, job: Job, rel: str, leaf: LeafForm) -> str:
        import weakref

        cfg = copy.deepcopy(self.cfg)
        view = LeafView(path=rel, kind=rel.split("/", 1)[0])
        findings = check_leaf(self.root, rel, leaf, list(cfg.licenses.allowlist))
        view.findings = [FindingView(file=f"{rel}/{f['file']}", line=f["line"], field=f["field"],
                                     message=f["message"], severity=f["severity"]) for f in findings]
        if view.errors:
            view.skipped = "fix the errors above to see generated samples"
            return render_leaf(view)
        self._localize_documents(leaf, cfg)
        k = int(cfg.bot.samples)
        preview_bounds(cfg, k)  # before the teacher is built: its prompt cap is bot.max_prompt_tokens
        g = cfg.generate
        if self._teacher is None:  # as the pipeline builds it for the bot (engine, cap, timeouts)
            job.stage = f"loading the teacher {g.teacher}"
            self._teacher = make_teacher(g.teacher, cfg.cache_dir, **teacher_options(g))
        if self._judge is None:
            self._judge = self._teacher if not g.judge or g.judge == g.teacher else make_teacher(
                g.judge, cfg.cache_dir, **teacher_options(g))
        teacher = _CountingTeacher(self._teacher, weakref.ref(job))
        judge = teacher if self._judge is self._teacher else _CountingTeacher(self._judge, weakref.ref(job))
        job.stage = "generating"
        deadline = job.started + cfg.bot.time_budget  # the bot's budget, from the job's start
        with staged_root(self.root, rel, leaf) as tmp, tempfile.TemporaryDirectory(prefix="lab-ui-out-") as out:
            run = bounded_generate(tmp, [rel], cfg, k, Path(out) / "out", deadline, scratch=Path(out),
                                   teacher=teacher, judge=judge)
        o = run.outcomes[rel]
        view.samples, view.rejected, view.stats = o.samples, o.rejected, o.stats
        view.seconds, view.error, view.attempts = o.seconds, o.error, o.attempts
        view.shortfall = run.shortfalls[rel]
        job.samples = {"kept": len(o.samples), "requested": k, "attempts": o.attempts}
        cut = (f"; {plural(run.truncated_prompts, 'teacher prompt')} cut to fit (bot.max_prompt_tokens)"
               if run.truncated_prompts else "")
        job.summary = count_line(o, k, view.shortfall) + cut
        return render_leaf(view)
