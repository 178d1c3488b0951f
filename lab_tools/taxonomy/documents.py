"""Knowledge document resolution: ``document: {repo, commit, patterns}`` -> files at the pinned commit.

Convention for ``document.repo``: an ``https://`` URL of a git repository, or a path relative to
the taxonomy root that resolves to a directory inside the taxonomy's own git repository (e.g.
``../documents``); ``patterns`` are globs relative to that directory; files are read from the git
object store at ``commit``.

Refused unless ``allow_local`` (lab.yaml ``documents.allow_local``, for a local mirror):
``file://`` URLs, absolute paths, and relative paths escaping the taxonomy's repository.
Always refused: any other scheme (``ssh://``, ``git@host:``, ``http://``): they need credentials
or are not authenticated. Remote repositories are fetched with GitPython into a content-addressed
cache, ``<cache>/documents/<sha256(repo URL + commit)>``, so a pinned commit is fetched once; the
fetch goes to a temporary directory first and is renamed into place (a crash leaves no half cache).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lab_tools.errors import LabError
from lab_tools.taxonomy.leaf import Leaf

MAX_DOC_BYTES = 64 * 1024 * 1024


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


def _glob_regex(pattern: str) -> re.Pattern:
    """Translate a git-style glob (``*`` within a path segment, ``**/`` any depth, ``?``) to a regex."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _to_text(path: str, data: bytes, where: dict) -> str:
    if path.lower().endswith(".pdf"):
        try:
            import io

            from pypdf import PdfReader
        except ImportError:
            raise LabError(f"{path} is a PDF; install the pdf extra (pip install lab-tools[pdf])", **where) from None
        return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise LabError(f"{path} is not UTF-8 text (markdown or plain text expected)", **where) from None


def _read_tree(repo, commit: str, subdir: str, patterns: list, repo_label: str, where: dict) -> list[Document]:
    import git

    try:
        c = repo.commit(commit)
    except (git.BadName, ValueError, git.GitCommandError):
        raise LabError(f"commit {commit!r} not found in {repo_label}", **{**where, "field": "document.commit"}) from None
    tree = c.tree
    if subdir:
        try:
            tree = tree / subdir
        except KeyError:
            raise LabError(f"{subdir!r} does not exist at commit {commit[:12]} of {repo_label}",
                           **{**where, "field": "document.repo"}) from None
    blobs = {PurePosixPath(b.path).relative_to(subdir).as_posix() if subdir else b.path: b
             for b in tree.traverse() if b.type == "blob"}
    docs: dict[str, Document] = {}
    for i, pat in enumerate(patterns):
        rx = _glob_regex(str(pat).lstrip("/"))
        hits = sorted(p for p in blobs if rx.match(p))
        if not hits:
            raise LabError(f"pattern {pat!r} matches no file at commit {commit[:12]} of {repo_label}",
                           **{**where, "field": f"document.patterns.{i}"})
        for p in hits:
            if p in docs:
                continue
            blob = blobs[p]
            if blob.size > MAX_DOC_BYTES:
                raise LabError(f"{p} is over {MAX_DOC_BYTES // 2**20} MiB", **{**where, "field": f"document.patterns.{i}"})
            data = blob.data_stream.read()
            docs[p] = Document(path=p, text=_to_text(p, data, where), repo=repo_label, commit=c.hexsha,
                               sha256=hashlib.sha256(data).hexdigest())
    return list(docs.values())


def _fetch(url: str, commit: str, cache_dir: Path, where: dict):
    """A bare repository in the content-addressed cache holding ``commit`` of ``url``."""
    import git

    key = hashlib.sha256(f"{url}\0{commit}".encode()).hexdigest()
    dest = cache_dir / "documents" / key
    if (dest / "HEAD").is_file():
        return git.Repo(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=dest.parent))
    try:
        repo = git.Repo.init(tmp, bare=True)
        try:
            repo.git.fetch("--depth", "1", url, commit)
        except git.GitCommandError:
            try:  # servers that refuse fetching by sha: fetch everything, then look the commit up
                repo.git.fetch(url, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
            except git.GitCommandError as exc:
                raise LabError(f"cannot fetch {url}: {exc.stderr.strip()[-300:]}",
                               **{**where, "field": "document.repo"}) from None
        try:
            os.replace(tmp, dest)
        except OSError:  # another process filled the cache first
            shutil.rmtree(tmp, ignore_errors=True)
        return git.Repo(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_documents(leaf: Leaf, *, cache_dir: Path | None = None, allow_local: bool = False) -> list[Document]:
    """Resolve ``leaf.document`` to its files at the pinned commit.

    Returns:
        one :class:`Document` per matched file (patterns in order, each file once).

    Raises:
        LabError: naming the leaf's qna.yaml and the ``document.*`` field: a refused remote, a
        missing commit, a pattern matching nothing.
    """
    import git

    where = {"file": str(leaf.qna_path)}
    doc = leaf.document
    if not isinstance(doc, dict):
        raise LabError("knowledge leaf has no document: {repo, commit, patterns}", **{**where, "field": "document"})
    repo_ref, commit, patterns = doc.get("repo"), doc.get("commit"), doc.get("patterns")
    if not isinstance(repo_ref, str) or not repo_ref.strip():
        raise LabError("missing repository", **{**where, "field": "document.repo"})
    if not isinstance(commit, str) or not commit.strip():
        raise LabError("missing commit", **{**where, "field": "document.commit"})
    if not isinstance(patterns, list) or not patterns:
        raise LabError("missing patterns", **{**where, "field": "document.patterns"})
    repo_ref = repo_ref.strip()
    lowered = repo_ref.lower()
    if lowered.startswith("https://"):
        if cache_dir is None:
            from lab_tools.config import default_cache_dir

            cache_dir = default_cache_dir()
        repo = _fetch(repo_ref, commit, Path(cache_dir), where)
        return _read_tree(repo, commit, "", patterns, repo_ref, where)
    if lowered.startswith("file://"):
        if not allow_local:
            raise LabError("file:// repositories are refused (set documents.allow_local in lab.yaml "
                           "for a local mirror)", **{**where, "field": "document.repo"})
        target = Path(repo_ref[len("file://"):])
    elif re.match(r"^[a-z][a-z0-9+.-]*://", lowered) or re.match(r"^[\w.-]+@[\w.-]+:", repo_ref):
        raise LabError("only https:// remotes (or a path inside this repository) are allowed",
                       **{**where, "field": "document.repo"})
    elif os.path.isabs(repo_ref):
        if not allow_local:
            raise LabError("absolute paths are refused; use a path relative to the taxonomy root "
                           "inside this repository", **{**where, "field": "document.repo"})
        target = Path(repo_ref)
    else:
        target = Path(leaf.root) / repo_ref
    target = target.resolve()
    try:
        own = git.Repo(Path(leaf.root).resolve(), search_parent_directories=True)
        own_top = Path(own.working_tree_dir).resolve()
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        own, own_top = None, None
    if own_top is not None and target.is_relative_to(own_top):
        sub = target.relative_to(own_top).as_posix()
        return _read_tree(own, commit, "" if sub == "." else sub, patterns, repo_ref, where)
    if not allow_local:
        raise LabError("document path leaves the taxonomy's git repository", **{**where, "field": "document.repo"})
    try:  # an allowed local mirror: any git repository on disk
        other = git.Repo(target, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise LabError(f"{repo_ref} is not a git repository", **{**where, "field": "document.repo"}) from None
    top = Path(other.working_tree_dir or other.git_dir).resolve()
    sub = target.relative_to(top).as_posix() if target.is_relative_to(top) else ""
    return _read_tree(other, commit, "" if sub == "." else sub, patterns, repo_ref, where)
