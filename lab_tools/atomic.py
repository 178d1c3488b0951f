"""Atomic writes for every file a crash must not leave half-written (shards, manifests, build
state, phase datasets, release files, caches).

Method: write a temporary file in the destination's own folder (same file system, so the rename
is atomic: POSIX ``rename(2)``), flush and ``fsync`` it, ``os.replace`` it over the destination,
then ``fsync`` the folder so the new name survives a power cut. A crash at any moment (kill -9)
leaves either the old file or the new one, never a torn one; on any exception the temporary is
removed. Temporary names are ``.<name>.<random>.tmp`` (files) and ``<name>.tmp<random>``
(folders); files get the usual ``0666 & ~umask`` permissions.

Folders (a release, a converted model) are built in a temporary sibling by :func:`atomic_dir`
and swapped in at the end; the swap of an existing folder is two renames, so a crash between them
leaves the old folder under ``<name>.old<random>`` and no half-written one under ``<name>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not supported everywhere (Windows, some FUSE)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", *, encoding: str = "utf-8",
                newline: str | None = None) -> Iterator:
    """Open a temporary file next to ``path`` for writing (``mode`` ``"w"`` or ``"wb"``); when the
    ``with`` block ends normally it is fsynced and renamed onto ``path`` (parents created).

    Raises:
        OSError: the folder is not writable; any exception of the block (the temporary file is
        removed and ``path`` keeps its old content).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only ('w' or 'wb'), got {mode!r}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(p.parent)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path`` as a Path."""
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a Path."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_json_atomic(path: str | Path, data, indent: int | None = None, *,
                      default=None, newline: bool = False) -> Path:
    """Write ``data`` as JSON (UTF-8, non-ASCII kept) to ``path`` atomically.

    ``indent``: as :func:`json.dumps` (None: one line); ``default``: as :func:`json.dumps` (e.g.
    ``str`` for paths); ``newline``: end the file with a newline. Returns ``path`` as a Path.

    Raises:
        TypeError: ``data`` is not JSON-serializable (nothing is written).
    """
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=default)
    return write_text_atomic(path, text + "\n" if newline else text)


def write_jsonl_atomic(path: str | Path, rows: Iterable) -> Path:
    """Write one JSON value per line (JSON Lines) to ``path`` atomically; returns ``path``."""
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a new empty folder next to ``path`` to fill; when the ``with`` block ends normally
    it replaces ``path`` (an existing folder there is removed after the swap). On any exception
    the temporary folder is removed and ``path`` is left as it was.

    Raises:
        OSError: the parent folder is not writable; any exception of the block.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f"{p.name}.tmp{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if p.exists():
            old = p.with_name(f"{p.name}.old{secrets.token_hex(4)}")
            p.rename(old)
        try:
            tmp.rename(p)
        except BaseException:
            if old is not None:
                old.rename(p)
            raise
        _fsync_dir(p.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
