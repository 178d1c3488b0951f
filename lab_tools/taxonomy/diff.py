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


def _repo(root: Path):
    import git

    try:
        return git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise LabError("not inside a git repository (lab taxonomy diff needs git)", file=str(root)) from None


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

    Raises:
        LabError: ``root`` is not inside a git repository, or ``base`` names no ref.
    """
    import git

    root = Path(root)
    repo = _repo(root)
    top = Path(repo.working_tree_dir).resolve()
    try:
        prefix = root.resolve().relative_to(top).as_posix()
    except ValueError:
        raise LabError("taxonomy root is outside its git work tree", file=str(root)) from None
    prefix = "" if prefix == "." else prefix + "/"
    everything = LeafChanges(changed=iter_leaf_paths(root), deleted=[], base=None)

    try:
        head = repo.head.commit
    except ValueError:  # no commits yet
        return everything
    base_commit = None
    if base is not None:
        try:
            base_commit = repo.commit(base)
        except (git.BadName, ValueError, git.GitCommandError):
            raise LabError(f"base {base!r} names no commit or ref", field="--base") from None
    else:
        for cand in DEFAULT_BASES:
            try:
                base_commit, base = repo.commit(cand), cand
                break
            except (git.BadName, ValueError, git.GitCommandError):
                continue
        if base_commit is None:
            return everything
    merge_bases = repo.merge_base(head, base_commit)
    if not merge_bases:
        return everything
    mb = merge_bases[0]

    # name-status of merge-base vs working tree (committed + staged + unstaged); no rename pairing
    out = repo.git.diff(mb.hexsha, "--name-status", "--no-renames", "-z", "--", prefix or ".")
    fields = [f for f in out.split("\0") if f]
    entries = list(zip(fields[0::2], fields[1::2]))
    entries += [("A", f) for f in repo.untracked_files if f.startswith(prefix)]

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
