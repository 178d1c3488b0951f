"""`lab taxonomy diff`: which leaves a branch changes, for CI and the bot (validate/generate only those).

A leaf counts as changed when any file in its directory differs from the merge base of ``HEAD``
and the base ref: committed, staged, unstaged or untracked (``git diff <merge-base>`` against the
working tree, plus untracked files). A leaf whose ``qna.yaml`` is gone is listed under ``deleted``.
With no commits yet, no base ref, or no common history, every leaf counts as changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.errors import LabError
from lab_tools.gitsafe import find_repo, run_git
from lab_tools.taxonomy.leaf import KINDS, iter_leaf_paths

DEFAULT_BASES = ("origin/main", "main")


@dataclass
class LeafChanges:
    """``changed``: leaf dirs (relative to the taxonomy root) added or modified, counting committed,
    staged, unstaged and untracked files; ``deleted``: leaf dirs whose qna.yaml is gone;
    ``base``: the ref or commit compared against (None when there was no common base)."""
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    base: str | None = None


def _commit(tree, ref: str) -> str | None:
    """The full commit id ``ref`` names in ``tree``, or None."""
    out = run_git(tree, "rev-parse", "--verify", "--quiet", "--end-of-options", ref + "^{commit}", check=False)
    return out.strip() or None


def _leaf_of(rel: str, root: Path) -> str | None:
    """The leaf directory that file ``rel`` (relative to the taxonomy root) belongs to."""
    parts = rel.split("/")
    if len(parts) < 2 or parts[0] not in KINDS:
        return None
    if parts[-1] == "qna.yaml":
        return "/".join(parts[:-1])
    # another file (attribution.txt, ...): the nearest enclosing directory holding a qna.yaml
    for i in range(len(parts) - 1, 0, -1):
        d = "/".join(parts[:i])
        if (root / d / "qna.yaml").is_file():
            return d
    return None


def changed_leaves(root: str | Path, base: str | None = None) -> LeafChanges:
    """Leaves changed under taxonomy ``root`` against ``base`` (default ``origin/main``, falling back
    to ``main``); with no common base every leaf counts as changed.

    Git runs through :mod:`lab_tools.gitsafe` (explicit git dir and work tree, located by the
    nearest ``.git`` above ``root``), so git metadata a pull request committed under ``root`` is
    never taken for the repository.

    Raises:
        LabError: ``root`` is not inside a git repository, ``base`` names no ref, or git failed.
    """
    root = Path(root)
    tree = find_repo(root)  # never discovery inside root: a PR may have planted git metadata there
    try:
        prefix = root.resolve().relative_to(tree.work_tree).as_posix()
    except ValueError:
        raise LabError("taxonomy root is outside its git work tree", file=str(root)) from None
    prefix = "" if prefix == "." else prefix + "/"
    everything = LeafChanges(changed=iter_leaf_paths(root), deleted=[], base=None)

    head = _commit(tree, "HEAD")
    if head is None:  # no commits yet
        return everything
    if base is not None:
        base_commit = _commit(tree, base)
        if base_commit is None:
            raise LabError(f"base {base!r} names no commit or ref", field="--base")
    else:
        base_commit = None
        for cand in DEFAULT_BASES:
            base_commit = _commit(tree, cand)
            if base_commit is not None:
                base = cand
                break
        if base_commit is None:
            return everything
    mb = run_git(tree, "merge-base", head, base_commit, check=False).strip()
    if not mb:
        return everything

    # name-status of merge-base vs working tree (committed + staged + unstaged); no rename pairing
    scope = prefix or "."
    out = run_git(tree, "diff", mb, "--name-status", "--no-renames", "-z", "--", scope)
    fields = [f for f in out.split("\0") if f]
    entries = list(zip(fields[0::2], fields[1::2]))
    untracked = run_git(tree, "ls-files", "--others", "--exclude-standard", "-z", "--", scope)
    entries += [("A", f) for f in untracked.split("\0") if f]

    changed: set[str] = set()
    deleted: set[str] = set()
    for status, path in entries:
        if not path.startswith(prefix):
            continue
        rel = path[len(prefix):]
        if status.startswith("D") and rel.endswith("/qna.yaml") and not (root / rel).exists():
            leaf = rel[: -len("/qna.yaml")]
            if leaf.split("/")[0] in KINDS:
                deleted.add(leaf)
            continue
        leaf = _leaf_of(rel, root)
        if leaf is not None and (root / leaf / "qna.yaml").is_file():
            changed.add(leaf)
    return LeafChanges(changed=sorted(changed), deleted=sorted(deleted - changed), base=base)
