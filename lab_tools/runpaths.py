"""Paths a run records, relative to the folder that records them, so a run folder can move.

Issue 27: a training manifest that records ``runs/main/train/pref/checkpoint-2`` (relative to the
folder the build ran in) or an absolute path cannot be released from a copy, a moved run or a
downloaded artifact. Every path a run folder's record names inside that folder is therefore
stored relative to the folder holding the record (the training manifest's folder: ``st/epoch-1``,
``pref/checkpoint-2``; a path beside it, in the same run folder, as ``../data``), with ``/``
separators; what lies outside (the student base model, the taxonomy root) keeps its absolute
path. Readers resolve a recorded path with :func:`resolve` against the folder of the record.
"""

from __future__ import annotations

import os
from pathlib import Path


def _spellings(base: Path) -> list[str]:
    """The absolute spellings of ``base``: normalized as given, and with symbolic links resolved."""
    out = [os.path.abspath(base)]
    real = os.path.realpath(base)
    if real not in out:
        out.append(real)
    return out


def _under(text: str, base: Path) -> str | None:
    """``text`` relative to ``base`` (posix) when it is an absolute path at or under it, else None."""
    if not os.path.isabs(text):
        return None
    for prefix in _spellings(base):
        if text == prefix:
            return "."
        if text.startswith(prefix.rstrip(os.sep) + os.sep):
            return Path(os.path.relpath(os.path.normpath(text), prefix)).as_posix()
    return None


def record(path: str | Path, base: str | Path) -> str:
    """How a record in folder ``base`` names ``path``: relative to ``base`` when ``path`` lies in
    ``base`` or beside it (in ``base``'s parent, e.g. ``../data``), else its absolute path."""
    absolute = os.path.abspath(path)
    base = Path(base)
    rel = _under(absolute, base)
    if rel is not None:
        return rel
    rel = _under(absolute, Path(os.path.abspath(base)).parent)
    if rel is None:
        return absolute
    return ".." if rel == "." else "../" + rel


def portable(data, base: str | Path):
    """A copy of JSON-like ``data`` in which every string (value or key) that is an absolute path
    in ``base`` is made relative to ``base`` (:func:`record`); other strings are left alone.
    Paths must be absolute to be recognized: callers build them from an absolute ``base``."""
    base = Path(base)
    if isinstance(data, dict):
        return {portable(k, base): portable(v, base) for k, v in data.items()}
    if isinstance(data, list):
        return [portable(v, base) for v in data]
    if isinstance(data, str):
        rel = _under(data, base)
        return data if rel is None else rel
    return data


def resolve(value: str | Path, base: str | Path) -> Path:
    """The path a record in folder ``base`` means by ``value``: an absolute ``value`` as it is; a
    relative one against ``base``, or, for a record written before paths were relative to their
    record (relative to the folder the command ran in), against the current folder when only
    that exists."""
    p = Path(value)
    if p.is_absolute():
        return p
    inside = Path(os.path.abspath(Path(base) / p))
    if not inside.exists() and p.exists():
        return Path(os.path.abspath(p))
    return inside
