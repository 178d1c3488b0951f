"""Changed leaves against a base ref (OWNED BY issue 2; interface fixed, body to be written)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LeafChanges:
    """``changed``: leaf dirs (relative to the taxonomy root) added or modified, counting committed,
    staged, unstaged and untracked files; ``deleted``: leaf dirs whose qna.yaml is gone;
    ``base``: the ref or commit compared against (None when there was no common base)."""
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    base: str | None = None


def changed_leaves(root: str | Path, base: str | None = None) -> LeafChanges:
    """Leaves changed under taxonomy ``root`` against ``base`` (default ``origin/main``, falling back
    to ``main``); with no common base every leaf counts as changed.

    Raises:
        LabError: ``root`` is not inside a git repository, or ``base`` names no ref.
    """
    raise NotImplementedError("issue 2: taxonomy diff")
