"""One writer per run folder and per cache entry: file locks (the ``filelock`` library).

Two ``lab generate`` or ``lab build`` runs on the same output folder, or two runs generating the
same leaf into the same SDG cache, used to race: the last writer won, mixing files of both. Now:

- :func:`run_folder`: a run holds ``<out>/.lab-writer.lock`` for as long as it writes there. A
  second run on the same folder, or on a folder inside one that a run holds, stops at
  once with an error that says so (waiting would only repeat the same work).
- :func:`cache_entry`: a run holds the lock of each cache entry it may write (for the SDG cache,
  ``<cache>/sdg/<key[:2]>/<key>.lock``, see :mod:`lab_tools.sdg.cache`); a second run that needs
  the same entry says that it waits and waits, then finds the first run's shard.

Locks are ``flock`` locks (released by the kernel when the process ends, even on kill -9), one
instance per path in a process and reentrant there (``is_singleton``, not thread-local), so
``lab build`` holding its run folder can run stages that take the same lock again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from filelock import FileLock, Timeout

from lab_tools.errors import LabError

#: the lock file a run holds inside its output folder
LOCK_NAME = ".lab-writer.lock"


def _lock(path: Path) -> FileLock:
    # the same arguments everywhere: filelock refuses a singleton made again with others
    return FileLock(str(path), timeout=-1, is_singleton=True, thread_local=False)


def _take(lock: FileLock) -> bool:
    """Acquire ``lock`` without waiting: True when taken, False when another process holds it."""
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    return True


@contextmanager
def run_folder(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold ``folder`` (created if missing; removed again when the run wrote nothing into it) as
    this process's output folder for the block.

    Args:
        folder: the run's output folder (``--out``).
        command: what is running, for the error message (``lab generate``, ``lab build``).

    Raises:
        LabError: another process holds ``folder``, or a folder above it (naming the folder).
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = _lock(folder / LOCK_NAME)
    if not _take(lock):
        raise LabError(f"another run is writing to this folder; wait for it to finish or choose another --out "
                       f"({command} allows one writer per output folder)", file=str(folder))
    try:
        for parent in folder.resolve().parents:  # a run writing a folder that holds this one
            if (parent / LOCK_NAME).is_file():
                outer = _lock(parent / LOCK_NAME)
                if not _take(outer):
                    raise LabError(f"another run is writing to {parent}, which holds this folder; wait for it "
                                   f"to finish or choose another --out ({command})", file=str(folder))
                outer.release()
        yield folder
    finally:
        lock.release()
        if created and not lock.is_locked and [p.name for p in folder.iterdir()] == [LOCK_NAME]:
            try:  # a run that wrote nothing (it failed first) leaves no folder behind
                (folder / LOCK_NAME).unlink()
                folder.rmdir()
            except OSError:
                pass  # another run took the folder meanwhile


@contextmanager
def cache_entry(lock_path: str | Path, what: str) -> Iterator[None]:
    """Hold the cache entry whose lock file is ``lock_path`` for the block; when another process
    holds it, print ``waiting for another run writing <what>`` to stderr and wait."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock(lock_path)
    if not _take(lock):
        click.echo(f"waiting for another run writing {what} (lock {lock_path})", err=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
