"""Where a taxonomy's data came from: the git commit of its tree and the pinned document and
license of every knowledge leaf. The release (``run.json``, ``release.json``, the model card) and
the dataset card (``lab generate``) both state them, from these two functions."""

from __future__ import annotations

import os
from pathlib import Path

from lab_tools.errors import LabError
from lab_tools.gitsafe import find_repo, run_git
from lab_tools.taxonomy.leaf import iter_leaves
from lab_tools.taxonomy.licenses import parse_attribution


def taxonomy_commit(root: str | Path) -> dict:
    """``{"commit", "dirty", "branch"}`` of the git repository holding ``root`` (all None outside git).

    ``dirty`` is True when files under ``root`` differ from the commit (staged, unstaged or
    untracked), so the card can say the model was built from uncommitted leaves. Git runs through
    :mod:`lab_tools.gitsafe` (explicit git dir and work tree, never discovery inside ``root``)."""
    try:
        tree = find_repo(root)
        rel = os.path.relpath(Path(root).resolve(), tree.work_tree)
        commit = run_git(tree, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False).strip()
        status = run_git(tree, "status", "--porcelain", "--untracked-files=all", "--", rel)
        branch = run_git(tree, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
        return {"commit": commit or None, "dirty": bool(status.strip()), "branch": branch or None}
    except LabError:  # not a git repo, git missing or failing: provenance says "unknown"
        return {"commit": None, "dirty": None, "branch": None}


def document_licenses(root: str | Path) -> list[dict]:
    """The pinned document and license of every knowledge leaf:
    ``{"leaf", "repo", "commit", "patterns", "title", "link", "license", "spdx", "creators"}``
    (attribution fields None when the leaf has no ``attribution.txt``)."""
    out = []
    for leaf in iter_leaves(root):
        if leaf.kind != "knowledge":
            continue
        doc = leaf.document or {}
        row = {"leaf": leaf.path, "repo": doc.get("repo"), "commit": doc.get("commit"),
               "patterns": doc.get("patterns"), "title": None, "link": None, "license": None,
               "spdx": None, "creators": None}
        attr = Path(root) / leaf.path / "attribution.txt"
        if attr.is_file():
            a = parse_attribution(attr)
            spdx = getattr(a, "spdx", None)
            row.update(title=a.title, link=a.link, license=a.license, creators=a.creators,
                       spdx=str(spdx) if spdx is not None else None)
        out.append(row)
    return out
