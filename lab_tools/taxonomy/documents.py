"""Knowledge document resolution (OWNED BY issue 2; interface fixed, body to be written).

Convention for ``document.repo``: an ``https://`` URL of a git repository, or a path relative to
the taxonomy root that resolves to a directory inside the taxonomy's own git repository (e.g.
``../documents``); ``patterns`` are globs relative to that directory; files are read from the git
object store at ``commit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab_tools.taxonomy.leaf import Leaf


@dataclass
class Document:
    """One resolved document file: ``path`` relative to the repo directory, its ``text`` (UTF-8;
    markdown as-is; PDF converted when the pdf extra is installed), ``repo`` and ``commit`` as pinned,
    ``sha256`` of the file bytes."""
    path: str
    text: str
    repo: str
    commit: str
    sha256: str = ""


def resolve_documents(leaf: Leaf, *, cache_dir: Path | None = None, allow_local: bool = False) -> list[Document]:
    """Resolve ``leaf.document`` to its files at the pinned commit.

    Raises:
        LabError: naming the leaf's qna.yaml and the ``document.*`` field: a refused remote, a
        missing commit, a pattern matching nothing.
    """
    raise NotImplementedError("issue 2: document resolution")
