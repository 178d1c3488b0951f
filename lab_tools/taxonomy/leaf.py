"""A leaf of the taxonomy: one ``qna.yaml`` with its seed examples (LAB 3.1, InstructLab format).

This is the shape every later stage reads (SDG, training data provenance, the bot, the model card).
The top folder decides the kind: ``knowledge``, ``foundational_skills`` or ``compositional_skills``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.errors import LabError
from lab_tools.taxonomy.safeyaml import load_yaml_file

KINDS = ("knowledge", "foundational_skills", "compositional_skills")
#: the files a leaf folder may hold (InstructLab taxonomy: the leaf and its attribution); documents
#: of knowledge leaves live in their own repository (``document.repo`` at ``document.commit``)
LEAF_FILES = ("qna.yaml", "attribution.txt")


@dataclass
class SeedExample:
    """One seed example, normalized across format versions.

    Skills: ``question``/``answer`` (+ ``context`` for grounded skills).
    Knowledge (v3): ``context`` (an excerpt of the document) and ``qna`` = list of (question, answer).
    """
    question: str | None = None
    answer: str | None = None
    context: str | None = None
    qna: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Leaf:
    """A taxonomy leaf.

    Attributes:
        root: the taxonomy root directory.
        path: the leaf directory relative to ``root``, POSIX style (e.g. ``compositional_skills/writing/haiku``).
        kind: one of :data:`KINDS` (from the top folder).
        version: the ``version`` field (int).
        data: the parsed ``qna.yaml`` mapping, as written.
        seed_examples: normalized seed examples.
        task_description: ``task_description`` (skills) or ``document_outline`` (knowledge), may be "".
        document: ``{"repo", "commit", "patterns"}`` for knowledge leaves, else None.
        content_hash: sha256 hex of ``qna.yaml`` bytes followed by ``attribution.txt`` bytes if present.
    """
    root: Path
    path: str
    kind: str
    version: int
    data: dict
    seed_examples: list[SeedExample]
    task_description: str = ""
    document: dict | None = None
    content_hash: str = ""

    @property
    def qna_path(self) -> Path:
        """Absolute path of this leaf's ``qna.yaml``."""
        return self.root / self.path / "qna.yaml"

    @property
    def grounded(self) -> bool:
        """A skill whose seed examples carry ``context`` (a grounded skill)."""
        return self.kind != "knowledge" and any(s.context for s in self.seed_examples)


SYMLINK_MESSAGE = "is a symlink; the taxonomy holds no symlinks (they may point outside it), commit the file itself"


def refuse_symlinks(root: str | Path, rel: str | Path) -> None:
    """Check that ``root/rel`` and every folder between ``root`` and it is not a symlink, so a leaf
    file is never read through a link that may point outside the taxonomy (DESIGN.md, Trust
    boundary). Only ``lstat`` is used: nothing is read, and the link's target is never shown.

    Raises:
        LabError: naming the first symlinked path (``root/...``).
    """
    cur = Path(root)
    for part in Path(rel).parts:
        cur = cur / part
        if cur.is_symlink():
            raise LabError(SYMLINK_MESSAGE, file=str(cur))


def leaf_hash(leaf_dir: Path) -> str:
    """sha256 hex of ``qna.yaml`` bytes + ``attribution.txt`` bytes (if present) in ``leaf_dir``.

    Raises:
        LabError: either file is a symlink (see :func:`refuse_symlinks`).
    """
    for name in LEAF_FILES:
        refuse_symlinks(leaf_dir, name)
    h = hashlib.sha256((leaf_dir / "qna.yaml").read_bytes())
    attr = leaf_dir / "attribution.txt"
    if attr.is_file():
        h.update(b"\0attribution\0" + attr.read_bytes())
    return h.hexdigest()


def _normalize(kind: str, data: dict) -> list[SeedExample]:
    out = []
    for ex in data.get("seed_examples") or []:
        if not isinstance(ex, dict):
            continue
        if kind == "knowledge":
            pairs = [(str(q.get("question", "")).strip(), str(q.get("answer", "")).strip())
                     for q in ex.get("questions_and_answers") or [] if isinstance(q, dict)]
            out.append(SeedExample(context=str(ex.get("context", "")).strip() or None, qna=pairs))
        else:
            ctx = ex.get("context")
            out.append(SeedExample(question=str(ex.get("question", "")).strip(),
                                   answer=str(ex.get("answer", "")).strip(),
                                   context=str(ctx).strip() if ctx else None))
    return out


def load_leaf(root: str | Path, path: str) -> Leaf:
    """Load the leaf at ``root/path`` (``path`` is the leaf directory or its ``qna.yaml``).

    Does not validate beyond what is needed to build the object; run
    :func:`lab_tools.taxonomy.validate.validate_tree` first for findings.

    Raises:
        LabError: naming the file when it is missing, unreadable, not a mapping, or a symlink (or
            in a symlinked folder).
    """
    root = Path(root)
    rel = Path(path)
    if rel.name == "qna.yaml":
        rel = rel.parent
    for name in LEAF_FILES:
        refuse_symlinks(root, rel / name)
    leaf_dir = root / rel
    qna = leaf_dir / "qna.yaml"
    data = load_yaml_file(qna)
    if not isinstance(data, dict):
        raise LabError("top level must be a mapping", file=str(qna), line=1)
    parts = rel.as_posix().split("/")
    kind = parts[0] if parts[0] in KINDS else str(data.get("kind") or "compositional_skills")
    version = data.get("version", 1)
    desc = data.get("document_outline") if kind == "knowledge" else data.get("task_description")
    return Leaf(root=root, path=rel.as_posix(), kind=kind,
                version=version if isinstance(version, int) else 1, data=data,
                seed_examples=_normalize(kind, data), task_description=str(desc or "").strip(),
                document=data.get("document") if isinstance(data.get("document"), dict) else None,
                content_hash=leaf_hash(leaf_dir))


def iter_leaf_paths(root: str | Path) -> list[str]:
    """Every leaf directory under ``root`` (relative POSIX paths, sorted): directories holding a
    ``qna.yaml`` under one of the three top folders. Symlinks are not followed."""
    root = Path(root)
    found = []
    for kind in KINDS:
        top = root / kind
        if top.is_dir():
            found += [p.parent.relative_to(root).as_posix() for p in top.rglob("qna.yaml")
                      if not p.is_symlink()]
    return sorted(found)


def iter_leaves(root: str | Path, paths: list[str] | None = None) -> list[Leaf]:
    """Load the given leaves (default: all under ``root``). Raises LabError on the first bad file."""
    return [load_leaf(root, p) for p in (paths if paths is not None else iter_leaf_paths(root))]
