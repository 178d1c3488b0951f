"""Knowledge document resolution: ``document: {repo, commit, patterns}`` -> files at the pinned commit.

A ``document`` block comes from a pull request, so every part of it is hostile input (DESIGN.md,
Trust boundary). The rules, each refused with a :class:`LabError` naming the leaf's ``qna.yaml``,
the line and the ``document.*`` field:

- ``commit`` is a full lower-case hex object id: 40 digits, or 64 for a SHA-256 repository (what
  ``git log -1 --format=%H`` prints). Ref names (``main``, ``HEAD``, tags) and abbreviated ids are
  refused: they move or become ambiguous, and a value starting with ``-`` could pass as an option.
  The schema (``schemas/v3/knowledge.json``) says the same. Every git call also puts ``--``
  before its positional arguments.
- ``repo`` is either a path relative to the taxonomy root inside the taxonomy's own git repository
  (``../documents``: read from the object store of that repository at ``commit``), or a URL whose
  scheme is in ``documents.allowed_schemes`` (a subset of ``https``/``http``, default ``https``)
  and whose host is in ``documents.allowed_hosts`` (exact names; public forges by default), with
  no credentials in it. ``ssh://``, ``git://``, ``git@host:`` and every other transport are refused.
  ``file://`` URLs, absolute paths and relative paths leaving the repository need
  ``documents.allow_local`` (a local mirror).
- A remote is fetched by :mod:`lab_tools.taxonomy.remote`: a partial fetch of exactly ``commit``
  (trees first, then only the blobs the patterns select), each download stopped at the leaf's
  byte cap and deleted when refused, with ``http.followRedirects=false`` (a redirect, to any host
  or scheme, is an error that says so), only the one protocol allowed, object checks on, a
  low-speed abort and a wall-clock limit (``documents.fetch_timeout``). The cache,
  ``<cache>/documents/<sha256(url NUL commit)>/``, is locked per entry and bounded in size
  (``documents.cache_max_bytes``); a ref name can never be a cache key.
- ``patterns`` are git wildmatch patterns (gitignore syntax, matched by the ``pathspec`` library's
  translation: ``*`` stays within a path segment, ``**`` crosses them, a pattern without ``/``
  matches at any depth, ``[abc]`` classes) relative to the repo folder; each must select at least
  one regular file; negations (``!x``) are refused. Count, length, wildcards and matching time are
  bounded (:mod:`lab_tools.taxonomy.patterns`), and every pattern is checked before any git call.
  Symlinks and submodules in the document tree are skipped.
- The files one leaf selects may total at most ``documents.max_bytes_per_leaf``; sizes come from
  the object store (``cat-file --batch-check``), so nothing is read before the total is known.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lab_tools.config import default_cache_dir
from lab_tools.config_sections import DocumentsConfig
from lab_tools.errors import LabError, plural
from lab_tools.gitsafe import GitTree, find_repo, git_process
from lab_tools.taxonomy.leaf import Leaf
from lab_tools.taxonomy.patterns import MAX_PATTERNS, Matcher, MatchTimeout, PatternError, compile_pattern
from lab_tools.taxonomy.remote import RemoteEntry, has_commit
from lab_tools.taxonomy.safeyaml import load_yaml_doc

#: a full object id: SHA-1 (40 hex digits) or SHA-256 (64), lower case as git prints them
COMMIT_RE = re.compile(r"\A(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")
#: schemes ``documents.allowed_schemes`` may list (anything else is never fetched)
SUPPORTED_SCHEMES = ("https", "http")


@dataclass
class Document:
    """One resolved document file: ``path`` relative to the repo directory, its ``text`` (UTF-8;
    markdown as-is; PDF converted when the pdf extra is installed), ``repo`` as written and the
    full ``commit`` id it was read at, ``sha256`` of the file bytes."""
    path: str
    text: str
    repo: str
    commit: str
    sha256: str = ""


class _Where:
    """Builds errors that name the leaf's qna.yaml, the line of a ``document.*`` field and the field
    (the file is parsed again only when an error is raised)."""

    def __init__(self, leaf: Leaf):
        self.file = str(leaf.qna_path)

    def error(self, message: str, field: str) -> LabError:
        path = tuple(int(p) if p.isdigit() else p for p in field.split("."))
        try:
            doc = load_yaml_doc(self.file)
            line = (doc.key_positions.get(path) or doc.position(path))[0]  # a key's line, else the item's
        except LabError:
            line = None
        return LabError(message, file=self.file, line=line, field=field)


def _shown(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _to_text(path: str, data: bytes, where: _Where, field: str) -> str:
    if path.lower().endswith(".pdf"):
        try:
            import io

            from pypdf import PdfReader
        except ImportError:
            raise where.error(f"{path} is a PDF; install the pdf extra (pip install lab-tools[pdf])", field) from None
        return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise where.error(f"{path} is not UTF-8 text (markdown or plain text expected)", field) from None


def _matcher(patterns: list, where: _Where, seconds: float) -> Matcher:
    """The leaf's patterns compiled under :mod:`lab_tools.taxonomy.patterns`' bounds (count,
    length, wildcards, pathspec compile check, probe), matched within ``seconds`` in all."""
    if len(patterns) > MAX_PATTERNS:
        raise where.error(f"{len(patterns)} patterns, over the limit of {MAX_PATTERNS} per leaf; "
                          "use folder patterns (chapters/**/*.md)", "document.patterns")
    expressions = []
    for i, pat in enumerate(patterns):
        try:
            expressions.append(compile_pattern(pat))
        except PatternError as exc:
            raise where.error(str(exc), f"document.patterns.{i}") from None
    return Matcher(expressions, seconds)


def _tree_files(tree: GitTree, commit: str, subdir: str, label: str, where: _Where) -> dict[str, str]:
    """``{path relative to subdir: blob id}`` of the regular files at ``commit:subdir`` (trees
    only: a remote entry may not hold the blobs yet)."""
    if not has_commit(tree, commit):
        raise where.error(f"commit {commit} not found in {label}", "document.commit")
    treeish = f"{commit}:{subdir}" if subdir else f"{commit}^{{tree}}"
    kind = git_process(tree, "cat-file", "-t", "--", treeish)
    if kind.returncode != 0 or kind.stdout.strip() != b"tree":
        raise where.error(f"{subdir!r} is not a folder at commit {commit[:12]} of {label}", "document.repo")
    out = git_process(tree, "ls-tree", "-r", "-z", "--", treeish)
    if out.returncode != 0:
        raise where.error(f"cannot list {label} at commit {commit[:12]}", "document.repo")
    files = {}
    for entry in out.stdout.split(b"\0"):
        if not entry:
            continue
        meta, _, path = entry.partition(b"\t")
        mode, otype, oid = meta.split()
        if otype == b"blob" and mode in (b"100644", b"100755"):
            files[path.decode("utf-8", "surrogateescape")] = oid.decode()
    return files


def _sizes(tree: GitTree, oids: list[str]) -> dict[str, int | None]:
    """``{blob id: size in bytes, or None when the repository lacks it}`` (``cat-file
    --batch-check``: reads no content and, with no promisor remote configured, fetches nothing)."""
    if not oids:
        return {}
    proc = git_process(tree, "cat-file", "--batch-check", "--", input="".join(f"{o}\n" for o in oids).encode())
    sizes: dict[str, int | None] = {o: None for o in oids}
    for line in proc.stdout.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "blob" and parts[0] in sizes:
            sizes[parts[0]] = int(parts[2])
    return sizes


def _read_tree(tree: GitTree, commit: str, subdir: str, patterns: list, matcher: Matcher, label: str,
               where: _Where, settings, entry: RemoteEntry | None = None) -> list[Document]:
    files = _tree_files(tree, commit, subdir, label, where)
    chosen: dict[str, int] = {}  # path -> index of the first pattern selecting it
    for i in range(len(patterns)):
        try:
            hits = matcher.select(i, files)
        except MatchTimeout:
            raise where.error(f"matching the patterns took over {matcher.seconds:g} s (lab.yaml "
                              f"documents.match_timeout); pattern {_shown(patterns[i])} is too slow: "
                              "use fewer wildcards", f"document.patterns.{i}") from None
        if not hits:
            raise where.error(f"pattern {_shown(patterns[i])} matches no file at commit {commit[:12]} of {label}",
                              f"document.patterns.{i}")
        for p in hits:
            chosen.setdefault(p, i)
    max_bytes = settings.max_bytes_per_leaf
    oids = sorted({files[p] for p in chosen})
    sizes = _sizes(tree, oids)
    missing = [o for o, n in sizes.items() if n is None]
    present = sum(n for n in sizes.values() if n is not None)
    source = tree
    if missing and entry is not None and present <= max_bytes:  # remote: fetch what the patterns chose
        source = entry.fetch_blobs(missing, max_bytes - present)
        sizes = _sizes(source, oids)
    total = sum(n or 0 for n in sizes.values())
    if total > max_bytes:
        raise where.error(f"the patterns select {plural(len(chosen), 'file')} of {total:,} bytes in all, over the "
                          f"limit of {max_bytes:,} bytes per leaf (lab.yaml documents.max_bytes_per_leaf)",
                          "document.patterns")
    docs = []
    for p, i in chosen.items():
        oid, size = files[p], sizes[files[p]]
        blob = git_process(source, "cat-file", "blob", "--", oid)
        if size is None or blob.returncode != 0 or len(blob.stdout) != size:
            raise where.error(f"cannot read {p} at commit {commit[:12]} of {label}", f"document.patterns.{i}")
        docs.append(Document(path=p, text=_to_text(p, blob.stdout, where, f"document.patterns.{i}"),
                             repo=label, commit=commit, sha256=hashlib.sha256(blob.stdout).hexdigest()))
    if source is not tree:
        entry.adopt(source)  # within the cap and readable: keep the blobs in the cache
    return docs


def _check_remote(url: str, settings, where: _Where) -> str:
    """The scheme of an allowed remote ``url`` (``https``, ``http`` or ``file``), else an error."""
    bad = [s for s in settings.allowed_schemes if s not in SUPPORTED_SCHEMES]
    if bad:
        raise LabError(f"documents.allowed_schemes: {', '.join(map(_shown, bad))} cannot be allowed "
                       f"(supported: {', '.join(SUPPORTED_SCHEMES)}; file:// is documents.allow_local)",
                       field="documents.allowed_schemes")  # a setting of the trusted config
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise where.error(f"{_shown(url)} is not a valid URL", "document.repo") from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        if not settings.allow_local:
            raise where.error("file:// repositories are refused (set documents.allow_local in lab.yaml "
                              "for a local mirror)", "document.repo")
        if parts.netloc:
            raise where.error("a file:// URL names no host (file:///absolute/path)", "document.repo")
        return scheme
    allowed = ", ".join(settings.allowed_schemes) or "none"
    if scheme not in settings.allowed_schemes:
        raise where.error(f"scheme {scheme}:// is not allowed (documents.allowed_schemes: {allowed}); "
                          "use an https:// URL of a public forge", "document.repo")
    if parts.username is not None or parts.password is not None:
        raise where.error("credentials in a repository URL are refused", "document.repo")
    host = (parts.hostname or "").lower()
    hosts = {h.lower() for h in settings.allowed_hosts}
    named = host if port in (None, 443 if scheme == "https" else 80) else f"{host}:{port}"
    if not host or named not in hosts:
        raise where.error(f"host {named or '(none)'!r} is not in documents.allowed_hosts "
                          f"({', '.join(sorted(hosts)) or 'empty'})", "document.repo")
    return scheme


def _sub(target: Path, tree: GitTree) -> str:
    sub = target.relative_to(tree.work_tree).as_posix()
    return "" if sub == "." else sub


def _local(leaf: Leaf, repo_ref: str, allow_local: bool, where: _Where) -> tuple[GitTree, str]:
    """The repository and sub-folder a path ``repo`` names (read in place, never fetched).

    The path is resolved lexically against the taxonomy root (files are read from git objects,
    so a symlink on disk never redirects it)."""
    if os.path.isabs(repo_ref) and not allow_local:
        raise where.error("absolute paths are refused; use a path relative to the taxonomy root "
                          "inside this repository", "document.repo")
    root = Path(leaf.root).resolve()
    target = Path(os.path.normpath(root / repo_ref))
    try:
        own = find_repo(root)
    except LabError:
        own = None
    if own is not None and target.is_relative_to(own.work_tree):
        return own, _sub(target, own)
    if not allow_local:
        raise where.error("document path leaves the taxonomy's git repository", "document.repo")
    try:
        other = find_repo(target)
    except LabError:
        raise where.error(f"{repo_ref} is not inside a git repository", "document.repo") from None
    return other, _sub(target, other)


def resolve_documents(leaf: Leaf, *, cache_dir: Path | None = None, settings=None,
                      allow_local: bool | None = None) -> list[Document]:
    """Resolve ``leaf.document`` to its files at the pinned commit, under the rules of this module.

    Args:
        leaf: a knowledge leaf.
        cache_dir: the cache root; fetched remotes are kept in its ``documents/`` folder
            (default: the user cache, :func:`lab_tools.config.default_cache_dir`).
        settings: :class:`lab_tools.config_sections.DocumentsConfig` (default: its defaults); the caller
            passes the trusted configuration, never one read from a pull request.
        allow_local: overrides ``settings.allow_local`` when given.

    Returns:
        one :class:`Document` per selected file (patterns in order, each file once).

    Raises:
        LabError: naming the leaf's qna.yaml, the line and the ``document.*`` field: a commit that
        is not a full id, a refused or unreachable remote, a redirect, a missing commit or folder,
        a pattern matching nothing, files over the size limit, a document that is not text.
    """
    from dataclasses import replace

    settings = settings if settings is not None else DocumentsConfig()
    if allow_local is not None:
        settings = replace(settings, allow_local=allow_local)
    where = _Where(leaf)
    doc = leaf.document
    if not isinstance(doc, dict):
        raise where.error("knowledge leaf has no document: {repo, commit, patterns}", "document")
    repo_ref, commit, patterns = doc.get("repo"), doc.get("commit"), doc.get("patterns")
    if not isinstance(repo_ref, str) or not repo_ref.strip():
        raise where.error("missing repository", "document.repo")
    if not isinstance(commit, str) or not COMMIT_RE.match(commit):
        raise where.error(f"must be a full commit id, 40 lower-case hex digits (64 in a SHA-256 repository) "
                          f"as `git log -1 --format=%H` prints it, not {_shown(commit)}: a ref name or "
                          "short id can move; quote the id if YAML reads it as a number", "document.commit")
    if not isinstance(patterns, list) or not patterns:
        raise where.error("missing patterns", "document.patterns")
    repo_ref = repo_ref.strip()
    matcher = _matcher(patterns, where, settings.match_timeout)  # every pattern checked before any git call
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", repo_ref):
        scheme = _check_remote(repo_ref, settings, where)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        with RemoteEntry(repo_ref, scheme, commit, cache, settings, where) as entry:
            return _read_tree(entry.tree, commit, "", patterns, matcher, repo_ref, where, settings, entry)
    if re.match(r"^[\w.-]+@[\w.-]+:", repo_ref) or "::" in repo_ref:
        raise where.error("only https:// remotes (or a path inside this repository) are allowed",
                          "document.repo")
    tree, subdir = _local(leaf, repo_ref, settings.allow_local, where)
    return _read_tree(tree, commit, subdir, patterns, matcher, repo_ref, where, settings)
