"""Leaf paths from the page, normalized and kept inside the taxonomy root.

A leaf path is the leaf *directory* relative to the taxonomy root, POSIX style
(``compositional_skills/writing/poetry/haiku``; a trailing ``/qna.yaml`` is accepted and dropped,
once: a folder named ``qna.yaml`` or ``attribution.txt`` is refused, so normalizing a normalized
path never changes it and a check and the write that follows it name the same folder).
Refused: absolute paths, ``..``, empty or hidden parts (``.git``), backslashes, control characters,
folders the validator never walks into (``venv``, ``node_modules``, ...), a top folder other than
the three kinds (LAB 3.1: the top folder decides the kind), a leaf directly in the kind folder
(the validator wants ``kind/<folder>/qna.yaml``), and any existing symlink on the way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lab_tools.errors import LabError
from lab_tools.taxonomy.leaf import KINDS, LEAF_FILES

MAX_PATH_CHARS = 300
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# the folders lab_tools.taxonomy.validate.collect_files skips: a leaf there would never be checked
_SKIPPED = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache"}


class PathError(LabError):
    """A leaf path the page may not use; ``field`` is ``path``."""

    def __init__(self, message: str):
        super().__init__(message, field="path")


def normalize(rel) -> str:
    """``rel`` as a clean leaf path (see the module docstring for what is refused); idempotent:
    ``normalize(normalize(x)) == normalize(x)``.

    Raises:
        PathError: naming the first rule the path breaks.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise PathError("give the leaf's folder, e.g. compositional_skills/writing/poetry/haiku")
    rel = rel.strip()
    if len(rel) > MAX_PATH_CHARS:
        raise PathError(f"path is longer than {MAX_PATH_CHARS} characters")
    if "\\" in rel or any(ord(c) < 32 or ord(c) == 127 for c in rel):
        raise PathError("path may not contain backslashes or control characters")
    if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel):
        raise PathError("path must be relative to the taxonomy root, not absolute")
    rel = rel.removesuffix("/qna.yaml").removesuffix("/attribution.txt").rstrip("/")
    parts = rel.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise PathError("path may not contain empty parts, '.' or '..'")
        if part in _SKIPPED or part.startswith("."):
            raise PathError(f"folder {part!r} is skipped by the validator; choose another name")
        if part in LEAF_FILES:  # else a second normalize would strip it again: normalized once, used once
            raise PathError(f"folder {part!r} is named like a leaf file; give the leaf's folder")
        if not _PART.match(part):
            raise PathError(f"folder {part!r}: use letters, digits, '_', '-' or '.', starting with a "
                            "letter or digit (at most 100 characters)")
    if parts[0] not in KINDS:
        raise PathError(f"a leaf must sit under one of {', '.join(k + '/' for k in KINDS)} "
                        "(the top folder decides the kind)")
    if len(parts) < 2:
        raise PathError(f"a leaf needs its own folder under {parts[0]}/, e.g. {parts[0]}/my_topic")
    return "/".join(parts)


def leaf_dir(root: str | Path, rel) -> tuple[str, Path]:
    """``(clean_rel, absolute leaf directory)`` for ``rel`` under taxonomy ``root``; the directory
    need not exist yet, but no existing part of it (nor ``qna.yaml``/``attribution.txt`` in it) may
    be a symlink, and it must resolve inside ``root``.

    Raises:
        PathError: a refused path (see :func:`normalize`) or a symlink on the way.
    """
    clean = normalize(rel)
    base = Path(os.path.realpath(root))
    cur = base
    for part in clean.split("/"):
        cur = cur / part
        if os.path.islink(cur):
            raise PathError(f"{part!r} is a symlink; the page only writes real folders inside the taxonomy")
    for name in ("qna.yaml", "attribution.txt"):
        if os.path.islink(cur / name):
            raise PathError(f"{clean}/{name} is a symlink; the page only writes real files")
    real = Path(os.path.realpath(cur))
    if os.path.commonpath([real, base]) != str(base):
        raise PathError("path leaves the taxonomy root")
    return clean, cur


def kind_of(clean_rel: str) -> str:
    """The leaf's kind: its top folder (one of :data:`lab_tools.taxonomy.leaf.KINDS`)."""
    return clean_rel.split("/", 1)[0]
