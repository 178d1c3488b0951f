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
- A remote is fetched with git (``fetch --depth=1`` of exactly ``commit``) with
  ``http.followRedirects=false`` (a redirect, to any host or scheme, is an error that says so),
  only the one protocol allowed (``protocol.allow=never`` otherwise), object checks on
  (``transfer.fsckObjects``), a low-speed abort (under 1 KB/s for 30 s) and a wall-clock limit
  (``documents.fetch_timeout``). It goes into a cache keyed by the URL and the full commit id,
  ``<cache>/documents/<sha256(url NUL commit)>``, through a temporary directory renamed into
  place, so a crash leaves no half cache and a ref name can never be a cache key.
- ``patterns`` are git wildmatch patterns (gitignore syntax, matched by the ``pathspec`` library:
  ``*`` stays within a path segment, ``**`` crosses them, a pattern without ``/`` matches at any
  depth, ``[abc]`` classes) relative to the repo folder; each must select at least one regular
  file; negations (``!x``) are refused. Symlinks and submodules in the document tree are skipped.
- The files one leaf selects may total at most ``documents.max_bytes_per_leaf``; sizes come from
  the tree listing, so nothing is read before the total is known.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pathspec

from lab_tools.errors import LabError, plural
from lab_tools.gitsafe import GitTree, find_repo, git_process, run_git
from lab_tools.taxonomy.leaf import Leaf

#: a full object id: SHA-1 (40 hex digits) or SHA-256 (64), lower case as git prints them
COMMIT_RE = re.compile(r"\A(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")
#: schemes ``documents.allowed_schemes`` may list (anything else is never fetched)
SUPPORTED_SCHEMES = ("https", "http")
#: git aborts a transfer slower than LOW_SPEED_LIMIT bytes/s for LOW_SPEED_TIME seconds
LOW_SPEED_LIMIT, LOW_SPEED_TIME = 1000, 30
_TRANSPORTS = ("file", "http", "https", "ssh", "git", "ext")
_PINNED_REF = "refs/lab/pinned"


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
        from lab_tools.taxonomy.safeyaml import load_yaml_doc

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


def _specs(patterns: list, where: _Where) -> list[pathspec.GitIgnoreSpec]:
    """One wildmatch spec per pattern; refuses non-strings, empty patterns, comments, negations."""
    specs = []
    for i, pat in enumerate(patterns):
        field = f"document.patterns.{i}"
        if not isinstance(pat, str) or not pat.strip():
            raise where.error(f"each pattern must be a non-empty string, not {_shown(pat)}", field)
        spec = pathspec.GitIgnoreSpec.from_lines([pat])
        if not spec.patterns or spec.patterns[0].include is not True:
            raise where.error(f"pattern {_shown(pat)} selects nothing: negations (!) and comments (#) "
                              "are not supported; list the files to include", field)
        specs.append(spec)
    return specs


def _tree_files(tree: GitTree, commit: str, subdir: str, label: str, where: _Where) -> dict[str, tuple[str, int]]:
    """``{path relative to subdir: (blob id, size)}`` of the regular files at ``commit:subdir``."""
    proc = git_process(tree, "rev-parse", "-q", "--verify", "--end-of-options", f"{commit}^{{commit}}")
    if proc.returncode != 0 or proc.stdout.decode().strip() != commit:
        raise where.error(f"commit {commit} not found in {label}", "document.commit")
    treeish = f"{commit}:{subdir}" if subdir else f"{commit}^{{tree}}"
    kind = git_process(tree, "cat-file", "-t", "--", treeish)
    if kind.returncode != 0 or kind.stdout.strip() != b"tree":
        raise where.error(f"{subdir!r} is not a folder at commit {commit[:12]} of {label}", "document.repo")
    out = git_process(tree, "ls-tree", "-r", "-l", "-z", "--", treeish)
    if out.returncode != 0:
        raise where.error(f"cannot list {label} at commit {commit[:12]}", "document.repo")
    files = {}
    for entry in out.stdout.split(b"\0"):
        if not entry:
            continue
        meta, _, path = entry.partition(b"\t")
        mode, otype, oid, size = meta.split()
        if otype == b"blob" and mode in (b"100644", b"100755"):
            files[path.decode("utf-8", "surrogateescape")] = (oid.decode(), int(size))
    return files


def _read_tree(tree: GitTree, commit: str, subdir: str, patterns: list, label: str, where: _Where,
               max_bytes: int) -> list[Document]:
    files = _tree_files(tree, commit, subdir, label, where)
    chosen: dict[str, int] = {}  # path -> index of the first pattern selecting it
    for i, spec in enumerate(_specs(patterns, where)):
        hits = sorted(p for p in files if spec.match_file(p))
        if not hits:
            raise where.error(f"pattern {_shown(patterns[i])} matches no file at commit {commit[:12]} of {label}",
                              f"document.patterns.{i}")
        for p in hits:
            chosen.setdefault(p, i)
    total = sum(files[p][1] for p in chosen)
    if total > max_bytes:
        raise where.error(f"the patterns select {plural(len(chosen), 'file')} of {total:,} bytes in all, over the "
                          f"limit of {max_bytes:,} bytes per leaf (lab.yaml documents.max_bytes_per_leaf)",
                          "document.patterns")
    docs = []
    for p, i in chosen.items():
        oid, size = files[p]
        blob = git_process(tree, "cat-file", "blob", "--", oid)
        if blob.returncode != 0 or len(blob.stdout) != size:
            raise where.error(f"cannot read {p} at commit {commit[:12]} of {label}", f"document.patterns.{i}")
        docs.append(Document(path=p, text=_to_text(p, blob.stdout, where, f"document.patterns.{i}"),
                             repo=label, commit=commit, sha256=hashlib.sha256(blob.stdout).hexdigest()))
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


def _git_fetch(tree: GitTree, url: str, scheme: str, commit: str, timeout: float, where: _Where) -> None:
    config = [f"protocol.{t}.allow={'always' if t == scheme else 'never'}" for t in _TRANSPORTS]
    config += ["protocol.allow=never", "http.followRedirects=false", f"http.lowSpeedLimit={LOW_SPEED_LIMIT}",
               f"http.lowSpeedTime={LOW_SPEED_TIME}", "transfer.fsckObjects=true", "gc.auto=0",
               "fetch.recurseSubmodules=false", "credential.helper="]
    args = [a for c in config for a in ("-c", c)]
    try:
        proc = git_process(tree, *args, "fetch", "--quiet", "--no-tags", "--depth=1", "--",
                           url, f"+{commit}:{_PINNED_REF}", timeout=timeout)
    except LabError:
        raise where.error(f"cannot fetch {url}: no answer within {timeout:g} s "
                          "(lab.yaml documents.fetch_timeout)", "document.repo") from None
    if proc.returncode == 0:
        return
    err = proc.stderr.decode("utf-8", "replace")
    redirect = re.search(r"returned error: (30\d)", err)
    if redirect:
        raise where.error(f"{url} answered with a redirect (HTTP {redirect.group(1)}); redirects are not "
                          "followed: pin the repository's final URL", "document.repo")
    last = (err.strip().splitlines() or ["no message"])[-1][:300]
    raise where.error(f"cannot fetch commit {commit[:12]} from {url}: {last}", "document.repo")


def _has_commit(tree: GitTree, commit: str) -> bool:
    proc = git_process(tree, "rev-parse", "-q", "--verify", "--end-of-options", f"{commit}^{{commit}}")
    return proc.returncode == 0 and proc.stdout.decode().strip() == commit


def _fetch(url: str, scheme: str, commit: str, cache_dir: Path, settings, where: _Where) -> GitTree:
    """A repository in the cache holding ``commit`` of ``url`` (fetched on first use)."""
    key = hashlib.sha256(f"{url}\0{commit}".encode()).hexdigest()
    dest = cache_dir / "documents" / key
    cached = GitTree(dest / ".git", dest)
    if (dest / ".git" / "HEAD").is_file() and _has_commit(cached, commit):
        return cached
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=dest.parent))
    try:
        tree = GitTree(tmp / ".git", tmp)
        run_git(tree, "init", "--quiet")
        _git_fetch(tree, url, scheme, commit, settings.fetch_timeout, where)
        if not _has_commit(tree, commit):
            raise where.error(f"{url} did not send commit {commit[:12]}", "document.commit")
        shutil.rmtree(dest, ignore_errors=True)  # a stale entry without the commit
        try:
            os.replace(tmp, dest)
        except OSError:  # another process filled the cache first
            shutil.rmtree(tmp, ignore_errors=True)
        return cached
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
        cache_dir: where fetched remotes are kept (default: the user cache).
        settings: :class:`lab_tools.config.DocumentsConfig` (default: its defaults); the caller
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

    from lab_tools.config import DocumentsConfig, default_cache_dir

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
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", repo_ref):
        scheme = _check_remote(repo_ref, settings, where)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        tree = _fetch(repo_ref, scheme, commit, cache, settings, where)
        return _read_tree(tree, commit, "", patterns, repo_ref, where, settings.max_bytes_per_leaf)
    if re.match(r"^[\w.-]+@[\w.-]+:", repo_ref) or "::" in repo_ref:
        raise where.error("only https:// remotes (or a path inside this repository) are allowed",
                          "document.repo")
    tree, subdir = _local(leaf, repo_ref, settings.allow_local, where)
    return _read_tree(tree, commit, subdir, patterns, repo_ref, where, settings.max_bytes_per_leaf)
