"""Saving a leaf: the two files written atomically inside the taxonomy, then optionally a branch
and a commit with GitPython, and the commands to run next (``git push``, ``gh pr create``).

This runs on the contributor's own clone (trusted); it never pushes.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from lab_tools import gitsafe
from lab_tools.atomic import atomic_open
from lab_tools.errors import LabError


def write_atomic(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically (:func:`lab_tools.atomic.atomic_open`: never a half file;
    a symlink at ``path`` is replaced, not followed). Returns False, writing nothing, when the file
    already holds exactly ``text``."""
    if path.is_file() and not path.is_symlink() and path.read_text(encoding="utf-8") == text:
        return False
    with atomic_open(path, newline="\n") as fh:
        fh.write(text)
    return True


def open_repo(root: Path, branch: str):
    """The git repository holding taxonomy ``root``, after checking that ``branch`` is a valid
    branch name (``git check-ref-format --branch``), so a bad name is refused before any write.

    Raises:
        LabError: ``root`` is not in a git work tree, or a bad branch name.
    """
    import git

    try:  # no discovery inside the taxonomy (a checked-out PR may hold planted git metadata)
        repo = gitsafe.open_repo(gitsafe.find_repo(root), user_config=True)
    except LabError:
        raise LabError("the taxonomy is not inside a git repository; save without committing",
                       field="branch") from None
    if repo.bare or repo.working_tree_dir is None:
        raise LabError("the repository has no work tree", field="branch")
    try:
        if not branch or branch.startswith("-"):
            raise git.GitCommandError("check-ref-format", 1)
        repo.git.check_ref_format("--branch", branch)
    except git.GitCommandError:
        raise LabError(f"{branch!r} is not a valid branch name", field="branch") from None
    return repo


def commit_files(repo, files: list[Path], branch: str, message: str) -> dict:
    """In ``repo`` (from :func:`open_repo`), switch to ``branch`` (created from the current HEAD
    when missing; uncommitted changes are carried along, as ``git checkout`` does), then commit
    only ``files``.

    Returns:
        ``{"branch", "commit", "push", "pr"}``: the branch, the new commit id, and the two
        commands to run next.

    Raises:
        LabError: nothing to commit, or git refused (its message).
    """
    import git

    message = " ".join((message or "").split()) or "Add a taxonomy leaf"
    top = Path(repo.working_tree_dir).resolve()
    rels = [Path(f).resolve().relative_to(top).as_posix() for f in files]
    try:
        current = None if repo.head.is_detached else repo.active_branch.name
        if branch != current:
            if branch in [h.name for h in repo.heads]:
                repo.git.checkout(branch)
            else:
                repo.git.checkout("-b", branch)
        repo.git.add("--", *rels)
        if not repo.git.diff("--cached", "--name-only", "--", *rels).strip():
            raise LabError("nothing to commit: the saved files are unchanged", field="branch")
        repo.git.commit("-m", message, "--", *rels)
    except git.GitCommandError as exc:
        detail = (exc.stderr or str(exc)).strip().replace("stderr: ", "")
        raise LabError(f"git: {detail[-500:]}", field="branch") from None
    remote = repo.remotes[0].name if repo.remotes else "origin"
    return {"branch": branch, "commit": repo.head.commit.hexsha,
            "push": f"git push -u {shlex.quote(remote)} {shlex.quote(branch)}",
            "pr": f"gh pr create --head {shlex.quote(branch)} --title {shlex.quote(message)} --fill"}
