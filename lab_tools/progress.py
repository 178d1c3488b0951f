"""Progress of long stages (generate, train, evaluate) that both a terminal and a CI log show.

On a terminal (stderr is a TTY) :class:`Progress` draws rich progress bars. Anywhere else (GitHub
Actions, ``make build | tee build.log``) bars would print nothing useful, so it prints one plain
line per unfinished task at a steady interval, plus one when a task completes::

    progress: generate skill_question 12/40 (30%) 2.1/s ETA 0:00:13
    progress: train kt1 40/40 (100%) 0.8/s done in 0:00:50 loss 1.234

The interval is ``$LAB_PROGRESS_INTERVAL`` seconds (default 15; 0 prints on every advance).

Progress that moves inside a batch: items (requests, prompts, pairs) only finish when a batched
call returns, which on a CPU can take minutes. A stage that sends a batch opens a token budget
for it (:func:`token_budget`: the batch's ``max_tokens`` summed), and every backend reports the
tokens it decodes or scores as it goes (:func:`report_tokens`; a no-op when no budget is open),
so a second task ``<task> tokens`` moves with a rate and an ETA during the batch::

    progress: generate skill_question 0/26 (0%) 0.00/s ETA unknown
    progress: generate skill_question tokens 2976/6656 (45%) 38.20/s ETA 0:01:36

Backends: the transformers teacher counts decode steps x batch (:class:`TokenStreamer`),
OpenAI-compatible servers and vLLM report each completion's tokens, the scripted teacher each
reply's; a scoring loop reports the tokens of each forward pass. Worker threads that a backend
starts see the caller's budget when their function is wrapped by :func:`bind_budget`.

The libraries' own tqdm bars (transformers "Loading weights" / "Writing model shards", datasets'
``map``, huggingface_hub, the GGUF conversion of the embedded model) are turned off by
:func:`silence_library_bars` under ``--quiet`` and whenever stderr is not a terminal: in a CI log
they are only noise next to the lines above, which stay.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

DEFAULT_INTERVAL = 15.0


def progress_interval(environ=None) -> float:
    """Seconds between plain progress lines: ``$LAB_PROGRESS_INTERVAL`` (a number >= 0), else
    :data:`DEFAULT_INTERVAL` (also when the variable is not a number)."""
    raw = (os.environ if environ is None else environ).get("LAB_PROGRESS_INTERVAL", "")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return DEFAULT_INTERVAL


# Read by the libraries when they are imported (and inherited by child processes: accelerate
# workers, Ray tasks, a served teacher); the libraries already imported are told directly.
LIBRARY_BARS_ENV = ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")


def library_bars_off(quiet: bool = False, stream=None) -> bool:
    """Whether third-party progress bars should be off: under ``quiet``, or when ``stream``
    (default ``sys.stderr``) is not a terminal (a CI log, ``| tee build.log``)."""
    stream = sys.stderr if stream is None else stream
    return quiet or not getattr(stream, "isatty", lambda: False)()


def silence_library_bars(quiet: bool = False, stream=None, environ=None) -> bool:
    """Turn off the tqdm bars of transformers, datasets and huggingface_hub (and, through
    ``TQDM_DISABLE``, every tqdm bar when tqdm is imported afterwards) when
    :func:`library_bars_off` says so; returns whether it did.

    Sets :data:`LIBRARY_BARS_ENV` to ``1`` in ``environ`` (default ``os.environ``), which the
    libraries read when they are imported, so it imports none of them (``lab --help`` stays
    light); those already imported get their ``disable_progress_bar(s)()`` called. Our own
    :class:`Progress` output is not affected. Call it before a command loads a model.
    """
    if not library_bars_off(quiet, stream):
        return False
    env = os.environ if environ is None else environ
    for name in LIBRARY_BARS_ENV:
        env[name] = "1"
    if environ is None:
        _disable_loaded_library_bars()
    return True


def _disable_loaded_library_bars() -> None:
    """``disable_progress_bar(s)()`` of the libraries this process has already imported."""
    for module, func in (("transformers.utils.logging", "disable_progress_bar"),
                         ("datasets.utils.tqdm", "disable_progress_bars"),
                         ("huggingface_hub.utils", "disable_progress_bars")):
        mod = sys.modules.get(module)
        if mod is not None and callable(getattr(mod, func, None)):
            getattr(mod, func)()


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass
class _Task:
    total: int
    done: int = 0
    start_done: int = 0
    started: float = field(default_factory=time.monotonic)
    note: str = ""
    reported_done: bool = False


class Progress:
    """Progress of named tasks of one stage; a no-op when ``enabled`` is false.

    Args:
        stage: prefix of every plain line (``generate``, ``train``, ``evaluate``).
        stream: where to write (default ``sys.stderr``); a TTY gets rich bars, anything else lines.
        interval: seconds between plain lines (default :func:`progress_interval`).
        transient: rich bars vanish when stopped (plain lines are never taken back).

    Rates count only the work done since the task was added (a resumed task's earlier steps are
    not in its rate). Use as a context manager or call :meth:`stop`.
    """

    def __init__(self, enabled: bool = True, *, stage: str = "", stream=None,
                 interval: float | None = None, transient: bool = False):
        self.enabled, self.stage = enabled, stage
        self.stream = stream if stream is not None else sys.stderr
        self.interval = progress_interval() if interval is None else max(0.0, interval)
        self.tasks: dict[str, _Task] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._bar, self._ids, self._beat = None, {}, None
        if not enabled:
            return
        if getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn(),
                                     console=Console(file=self.stream), transient=transient)
            self._bar.start()
        elif self.interval > 0:
            self._beat = threading.Thread(target=self._heartbeat, name="lab-progress", daemon=True)
            self._beat.start()

    # --- the API

    def add(self, task: str, total: int, done: int = 0) -> None:
        """Add ``total`` units of work to ``task`` (created on first use, ``done`` already done)."""
        if not self.enabled:
            return
        with self._lock:
            t = self.tasks.get(task)
            if t is None:
                t = self.tasks[task] = _Task(total=total, done=done, start_done=done)
            else:
                t.total += total
                t.reported_done = False
            if self._bar is not None:
                if task not in self._ids:
                    self._ids[task] = self._bar.add_task(self._label(task), total=t.total, completed=t.done)
                else:
                    self._bar.update(self._ids[task], total=t.total)

    def advance(self, task: str, n: int = 1, note: str | None = None) -> None:
        """Mark ``n`` more units of ``task`` done; ``note`` (e.g. ``loss 1.23``) is shown with it."""
        if not self.enabled:
            return
        with self._lock:
            t = self.tasks[task]
            t.done += n
            if note is not None:
                t.note = note
            if self._bar is not None:
                label = self._label(task) + (f" {t.note}" if t.note else "")
                self._bar.update(self._ids[task], advance=n, description=label)
                return
            if self.interval == 0 or (t.done >= t.total and not t.reported_done):
                self._line(task, t)

    def stop(self) -> None:
        """Stop the bars / the line printer (idempotent); unfinished tasks get a last line."""
        if not self.enabled or self._stopped.is_set():
            return
        self._stopped.set()
        if self._bar is not None:
            self._bar.stop()
            return
        with self._lock:
            for name, t in self.tasks.items():
                if not t.reported_done and self.interval > 0:
                    self._line(name, t)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- plain lines

    def _label(self, task: str) -> str:
        return f"{self.stage} {task}".strip()

    def _line(self, task: str, t: _Task) -> None:
        elapsed = max(time.monotonic() - t.started, 1e-9)
        rate = (t.done - t.start_done) / elapsed
        pct = f" ({100 * t.done / t.total:.0f}%)" if t.total else ""
        if t.total and t.done >= t.total:
            when = f"done in {_clock(elapsed)}"
            t.reported_done = True
        elif rate > 0 and t.total:
            when = f"ETA {_clock((t.total - t.done) / rate)}"
        else:
            when = "ETA unknown"
        note = f" {t.note}" if t.note else ""
        print(f"progress: {self._label(task)} {t.done}/{t.total}{pct} {rate:.2f}/s {when}{note}",
              file=self.stream, flush=True)

    def _heartbeat(self) -> None:
        while not self._stopped.wait(self.interval):
            with self._lock:
                for name, t in self.tasks.items():
                    if not t.reported_done:
                        self._line(name, t)


# --- token budgets: progress inside a batch

class _Budget:
    """One open token budget: ``total`` tokens of ``task`` of ``progress``; ``done`` so far."""

    def __init__(self, progress: Progress, task: str, total: int):
        self.progress, self.task, self.total, self.done = progress, task, total, 0
        self._lock = threading.Lock()

    def report(self, n: int) -> None:
        with self._lock:  # never past the budget: a backend may decode pads after an end token
            n = max(0, min(int(n), self.total - self.done))
            self.done += n
        if n:
            self.progress.advance(self.task, n)


_current: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("lab_token_budget", default=None)
_open: list[_Budget] = []
_open_lock = threading.Lock()


def token_task(task: str) -> str:
    """The name of the token task that goes with item task ``task`` (``<task> tokens``)."""
    return f"{task} tokens"


@contextmanager
def token_budget(progress: Progress | None, task: str, total: int) -> Iterator[_Budget | None]:
    """Open a budget of ``total`` tokens (a batch's ``max_tokens`` summed, or the tokens a scoring
    batch will run through) for the current batch: :func:`report_tokens` then advances the task
    ``<task> tokens`` of ``progress`` (:func:`token_task`), which prints with a rate and an ETA like
    any task. On exit the budget's unused part (sequences that ended early) leaves the task's
    total, so a finished batch shows 100%.

    A no-op (yields None) when ``progress`` is None or disabled, or ``total`` <= 0. Budgets are
    per context (thread): several threads may each hold their own; a thread started without the
    caller's context (a pool worker) reports into the only open budget, or into none when several
    are open (wrap its function with :func:`bind_budget` to say which).
    """
    if progress is None or not progress.enabled or total <= 0:
        yield None
        return
    name = token_task(task)
    progress.add(name, int(total))
    budget = _Budget(progress, name, int(total))
    token = _current.set(budget)
    with _open_lock:
        _open.append(budget)
    try:
        yield budget
    finally:
        _current.reset(token)
        with _open_lock:
            _open.remove(budget)
        unused = budget.total - budget.done
        if unused > 0:
            progress.add(name, -unused)


def report_tokens(n: int) -> None:
    """Count ``n`` tokens decoded (or scored) in the current batch; thread-safe, and a no-op when
    no budget is open (:func:`token_budget`). Backends call it per decode step, per completion
    or per forward pass; reports beyond the budget are dropped."""
    budget = _current.get()
    if budget is None:
        with _open_lock:
            budget = _open[0] if len(_open) == 1 else None
    if budget is not None and n > 0:
        budget.report(n)


def bind_budget(fn: Callable) -> Callable:
    """``fn`` wrapped to run inside the caller's current token budget (for worker threads, e.g.
    a thread pool that sends requests): capture now, report there."""
    budget = _current.get()
    if budget is None:
        return fn

    def bound(*args, **kwargs):
        token = _current.set(budget)
        try:
            return fn(*args, **kwargs)
        finally:
            _current.reset(token)
    return bound


class TokenStreamer:
    """A ``transformers`` streamer (``generate(..., streamer=TokenStreamer())``) that reports each
    decode step's tokens (batch size x 1) to :func:`report_tokens`; the first ``put`` (the
    prompt) is not counted. Duck-typed to ``transformers.generation.streamers.BaseStreamer``
    (``put``/``end``), so this module imports no model library."""

    def __init__(self):
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        report_tokens(int(value.numel()) if hasattr(value, "numel") else len(value))

    def end(self) -> None:
        pass


def quiet_libraries() -> None:
    """One progress view: silence transformers' own bars and warnings (weights loading, shard
    writing) that would interleave with ours. Called only before a stage that loads models, and by
    `lab evaluate` and `lab chat` (imports transformers: never on a light command)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
