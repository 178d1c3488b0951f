"""Preview generation in the background: one job per button press, with progress.

A job stages the leaf as the page would write it (:func:`lab_tools.ui.checks.staged_root`), runs
:func:`lab_tools.sdg.pipeline.generate_dataset` on it with a few samples (``bot.samples``) and the
configured teacher and judge (embedded by default; ``--teacher`` overrides both), and renders the result exactly
as the bot's pull-request comment shows a leaf (:func:`lab_tools.bot.render.render_leaf`),
converted to HTML by markdown-it. Jobs run one at a time on a worker thread; the teacher is built
once and reused. Knowledge leaves whose ``document.repo`` is a path inside the taxonomy's own git
repository get that path made absolute in the staged copy, so the pinned documents still resolve.
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.errors import LabError, plural
from lab_tools.ui.form import LeafForm

MAX_JOBS = 20  # finished jobs kept for polling; the oldest are forgotten


@dataclass
class Job:
    """One preview run. ``state``: ``queued`` | ``running`` | ``done`` | ``failed``; ``stage``:
    what it is doing now; ``requests``: teacher requests answered so far; ``markdown``/``html``:
    the leaf as the bot's comment shows it (when done); ``error``: why it failed."""
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

    def view(self) -> dict:
        """The job as the progress endpoint returns it."""
        secs = self.seconds if self.state in ("done", "failed") else time.monotonic() - self.started
        return {"id": self.id, "leaf": self.leaf, "state": self.state, "stage": self.stage,
                "requests": self.requests, "seconds": round(secs, 1), "markdown": self.markdown,
                "html": self.html, "error": self.error}


class _CountingTeacher:
    """Wraps a teacher to count answered requests and name the SDG stage for the job's progress."""

    def __init__(self, inner, job_ref):
        self._inner, self._job_ref = inner, job_ref

    def generate(self, requests):
        job = self._job_ref()
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
        self._lock = threading.Lock()  # one generation at a time (one teacher, small machines)
        self._teacher = self._judge = None  # built on the first preview, then reused

    @property
    def teacher(self) -> str:
        """The teacher spec previews use."""
        return self.cfg.generate.teacher

    def start(self, rel: str, leaf: LeafForm) -> Job:
        """Queue a preview of ``leaf`` at ``rel``; returns the job at once."""
        job = Job(id=uuid.uuid4().hex, leaf=rel)
        self.jobs[job.id] = job
        while len(self.jobs) > MAX_JOBS:
            self.jobs.pop(next(iter(self.jobs)))
        leaf = copy.deepcopy(leaf)
        threading.Thread(target=self._run, args=(job, rel, leaf), daemon=True,
                         name=f"lab-ui-preview-{job.id[:8]}").start()
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with ``job_id``, or None."""
        return self.jobs.get(job_id)

    def _run(self, job: Job, rel: str, leaf: LeafForm) -> None:
        with self._lock:
            job.state, job.started, job.stage = "running", time.monotonic(), "checking the leaf"
            try:
                job.markdown = self._generate(job, rel, leaf)
                job.html = markdown_to_html(job.markdown)
                job.state, job.stage = "done", "done"
            except Exception as exc:  # noqa: BLE001 -- a failed preview is shown, never crashes the server
                job.error = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
                job.state, job.stage = "failed", "failed"
                if not isinstance(exc, LabError):
                    traceback.print_exc()
            job.seconds = time.monotonic() - job.started

    def _localize_documents(self, leaf: LeafForm, cfg) -> None:
        """Make a relative ``document.repo`` absolute (it is relative to the real taxonomy root)."""
        doc = leaf.data.get("document")
        repo = doc.get("repo", "") if isinstance(doc, dict) else ""
        if not repo or "://" in repo or os.path.isabs(repo) or "@" in repo.split("/", 1)[0]:
            return
        from lab_tools.gitsafe import find_repo

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

        from lab_tools.bot import preview as bot
        from lab_tools.bot.render import FindingView, LeafView, render_leaf
        from lab_tools.sdg.backends import make_teacher
        from lab_tools.sdg.pipeline import generate_dataset
        from lab_tools.ui.checks import check_leaf, staged_root

        cfg = copy.deepcopy(self.cfg)
        view = LeafView(path=rel, kind=rel.split("/", 1)[0])
        findings = check_leaf(self.root, rel, leaf, list(cfg.licenses.allowlist))
        view.findings = [FindingView(file=f"{rel}/{f['file']}", line=f["line"], field=f["field"],
                                     message=f["message"], severity=f["severity"]) for f in findings]
        if view.errors:
            view.skipped = "fix the errors above to see generated samples"
            return render_leaf(view)
        self._localize_documents(leaf, cfg)
        cfg.generate.samples = int(cfg.bot.samples)
        g = cfg.generate
        if self._teacher is None:
            job.stage = f"loading the teacher {g.teacher}"
            self._teacher = make_teacher(g.teacher, cfg.cache_dir, workers=g.workers, batch_size=g.batch_size)
        if self._judge is None:
            self._judge = self._teacher if not g.judge or g.judge == g.teacher else make_teacher(
                g.judge, cfg.cache_dir, workers=g.workers, batch_size=g.batch_size)
        teacher = _CountingTeacher(self._teacher, weakref.ref(job))
        judge = teacher if self._judge is self._teacher else _CountingTeacher(self._judge, weakref.ref(job))
        job.stage = "generating"
        with staged_root(self.root, rel, leaf) as tmp, tempfile.TemporaryDirectory(prefix="lab-ui-out-") as out:
            report = generate_dataset(tmp, [rel], Path(out), cfg, teacher=teacher, judge=judge, progress=False)
            view.stats, view.seconds, view.error = bot._leaf_stats(report, rel)
            view.samples = bot._samples_for(bot._read_samples(Path(out)), rel)
            view.rejected = bot._read_rejected(Path(out)).get(rel, [])
        return render_leaf(view)
