"""Remote knowledge documents: fetch only what the patterns select, stop at the cap, bound the cache.

Called by :mod:`lab_tools.taxonomy.documents` after the URL passed its allowlists (scheme, host,
no credentials) and the commit is a full id. Every fetch is a git partial fetch (DESIGN.md, Trust
boundary: documents come with size caps), under the git settings of :data:`fetch_config`
(no redirects, only the one protocol, object checks, a low-speed abort):

1. **Trees.** ``fetch --depth=1 --filter=blob:none`` of exactly ``commit``: the commit and its
   trees, no file contents, into a temporary folder renamed into place. A server that ignores the
   filter and sends blobs anyway is stopped once the download passes
   ``documents.max_bytes_per_leaf`` (:func:`lab_tools.gitsafe.git_process` polls the folder every
   50 ms and kills git, so it may hold a little more by then), and the temporary folder is deleted.
2. **Blobs.** Once the patterns chose their files, the blobs the entry lacks are fetched by id into
   a temporary repository that borrows the entry's objects (``objects/info/alternates``), stopped
   at the bytes the leaf has left under its cap. Their sizes are checked there; only when the leaf
   is within ``documents.max_bytes_per_leaf`` are the new packs moved into the entry. A refused
   fetch is deleted whole: nothing over the cap stays on disk.
3. **Cache.** ``<cache>/documents/<sha256(url NUL commit)>/`` is one git repository per (URL, full
   commit id) holding the commit, its trees and the blobs leaves selected so far; a ref name can
   never be a key. ``<cache>/locks/documents/<key>.lock`` (``filelock``) makes one process at a
   time fetch into or read an entry; ``.fetch-*`` folders are temporaries (left only by a killed
   process, removed on the next prune). After each use the least recently used entries are
   removed until the folder holds at most ``documents.cache_max_bytes`` (entries locked by
   another process are skipped).

The entry's git config never names the remote as a promisor, so reading a missing blob is an
error, never a lazy fetch outside these caps.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from filelock import FileLock, Timeout

from lab_tools.errors import LabError
from lab_tools.gitsafe import GitOutgrown, GitTree, git_process, run_git

#: git aborts a transfer slower than LOW_SPEED_LIMIT bytes/s for LOW_SPEED_TIME seconds
LOW_SPEED_LIMIT, LOW_SPEED_TIME = 1000, 30
PINNED_REF = "refs/lab/pinned"
_TRANSPORTS = ("file", "http", "https", "ssh", "git", "ext")
#: an entry's own git config: no remote, no promisor (a missing blob is an error, not a fetch)
_ENTRY_CONFIG = "[core]\n\trepositoryformatversion = 1\n\tfilemode = true\n\tbare = false\n"
_STAMP = "lab-used"  # touched in the entry's .git on every use: the LRU order of the prune


def fetch_config(scheme: str) -> list[str]:
    """``-c`` arguments for a fetch over ``scheme``: that protocol only, no redirects, no
    credentials helper, object checks, a low-speed abort, every pack kept as a pack (so the
    download streams to disk and :func:`lab_tools.gitsafe.git_process` can stop it at its cap)."""
    config = [f"protocol.{t}.allow={'always' if t == scheme else 'never'}" for t in _TRANSPORTS]
    config += ["protocol.allow=never", "http.followRedirects=false", f"http.lowSpeedLimit={LOW_SPEED_LIMIT}",
               f"http.lowSpeedTime={LOW_SPEED_TIME}", "transfer.fsckObjects=true", "gc.auto=0",
               "fetch.recurseSubmodules=false", "credential.helper=", "fetch.unpackLimit=1",
               "transfer.unpackLimit=1", "fetch.writeCommitGraph=false"]
    return [a for c in config for a in ("-c", c)]


def entry_key(url: str, commit: str) -> str:
    """The cache key of (``url``, ``commit``): ``sha256(url NUL commit)`` in hex."""
    return hashlib.sha256(f"{url}\0{commit}".encode()).hexdigest()


def lock_path(root: Path, key: str) -> Path:
    """The lock file of entry ``key`` of the documents cache ``root`` (``<cache>/documents``):
    ``<cache>/locks/documents/<key>.lock``, outside the entries so that removing one never
    removes a lock another process waits on."""
    return root.parent / "locks" / "documents" / f"{key}.lock"


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


class RemoteEntry:
    """One cache entry, locked while in use (``with RemoteEntry(...) as entry:``).

    Args:
        url, scheme: the checked remote URL and its scheme.
        commit: the full commit id.
        cache_dir: the cache root; entries live in ``cache_dir / "documents"``.
        settings: :class:`lab_tools.config_sections.DocumentsConfig` (``fetch_timeout``,
            ``max_bytes_per_leaf``, ``cache_max_bytes``).
        where: builds the leaf's errors (``where.error(message, field) -> LabError``).

    On enter, the entry holds ``commit`` and its trees (fetched on first use); ``tree`` is its
    :class:`~lab_tools.gitsafe.GitTree`.

    Raises:
        LabError: naming ``document.repo`` / ``document.commit`` / ``document.patterns``: the
            fetch failed, timed out, was redirected, passed its cap, or lacks the commit; or the
            entry stayed locked by another process for ``fetch_timeout`` seconds.
    """

    def __init__(self, url: str, scheme: str, commit: str, cache_dir: Path, settings, where):
        self.url, self.scheme, self.commit = url, scheme, commit
        self.settings, self.where = settings, where
        self.root = Path(cache_dir) / "documents"
        self.key = entry_key(url, commit)
        self.dest = self.root / self.key
        self.tree = GitTree(self.dest / ".git", self.dest)
        self._lock = FileLock(str(lock_path(self.root, self.key)), timeout=settings.fetch_timeout)
        self._staged: list[Path] = []

    def __enter__(self) -> RemoteEntry:
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path(self.root, self.key).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise self.where.error(f"the documents cache entry of {self.url} stayed locked by another run for "
                                   f"{self.settings.fetch_timeout:g} s (lab.yaml documents.fetch_timeout)",
                                   "document.repo") from None
        try:
            if not ((self.dest / ".git" / "HEAD").is_file() and has_commit(self.tree, self.commit)):
                self._fetch_trees()
            (self.dest / ".git" / _STAMP).touch()
        except BaseException:
            self._clean()
            self._lock.release()
            raise
        return self

    def _clean(self) -> None:
        for tmp in self._staged:
            shutil.rmtree(tmp, ignore_errors=True)
        self._staged.clear()

    def __exit__(self, *exc) -> None:
        self._clean()
        self._lock.release()
        prune(self.root, self.settings.cache_max_bytes, keep=self.key,
              stale_after=self.settings.fetch_timeout + 60)

    def _temp_repo(self) -> GitTree:
        tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=self.root))
        self._staged.append(tmp)
        tree = GitTree(tmp / ".git", tmp)
        run_git(tree, "init", "--quiet")
        return tree

    def _run_fetch(self, tree: GitTree, args: list[str], cap: int, what: str) -> None:
        timeout = self.settings.fetch_timeout
        try:
            proc = git_process(tree, *fetch_config(self.scheme), "fetch", "--quiet", "--no-tags",
                               "--no-write-fetch-head", *args, timeout=timeout, watch=tree.git_dir / "objects",
                               max_bytes=cap)
        except GitOutgrown:
            raise self.where.error(f"fetching {what} from {self.url} passed {cap:,} bytes, the limit of "
                                   f"{self.settings.max_bytes_per_leaf:,} bytes per leaf (lab.yaml "
                                   "documents.max_bytes_per_leaf); the download was stopped and deleted",
                                   "document.patterns") from None
        except LabError:
            raise self.where.error(f"cannot fetch {self.url}: no answer within {timeout:g} s "
                                   "(lab.yaml documents.fetch_timeout)", "document.repo") from None
        if proc.returncode == 0:
            return
        err = proc.stderr.decode("utf-8", "replace")
        redirect = re.search(r"returned error: (30\d)", err)
        if redirect:
            raise self.where.error(f"{self.url} answered with a redirect (HTTP {redirect.group(1)}); redirects "
                                   "are not followed: pin the repository's final URL", "document.repo")
        last = (err.strip().splitlines() or ["no message"])[-1][:300]
        raise self.where.error(f"cannot fetch {what} from {self.url}: {last}", "document.repo")

    def _fetch_trees(self) -> None:
        tree = self._temp_repo()
        self._run_fetch(tree, ["--depth=1", "--filter=blob:none", "--", self.url, f"+{self.commit}:{PINNED_REF}"],
                        self.settings.max_bytes_per_leaf, f"commit {self.commit[:12]}")
        (tree.git_dir / "config").write_text(_ENTRY_CONFIG, encoding="utf-8")  # drop the promisor remote
        if not has_commit(tree, self.commit):
            raise self.where.error(f"{self.url} did not send commit {self.commit[:12]}", "document.commit")
        shutil.rmtree(self.dest, ignore_errors=True)  # a stale entry without the commit
        os.replace(tree.work_tree, self.dest)
        self._staged.remove(tree.work_tree)

    def fetch_blobs(self, oids: list[str], budget: int) -> GitTree:
        """Fetch ``oids`` into a staging repository that also sees the entry's objects; the
        download stops past ``budget`` bytes. Returns the staging repository: read sizes and
        contents there, then :meth:`adopt` it (or leave it: it is deleted on exit)."""
        staged = self._temp_repo()
        (staged.git_dir / "objects" / "info" / "alternates").write_text(
            str(self.tree.git_dir / "objects") + "\n", encoding="utf-8")
        self._run_fetch(staged, ["--", self.url, *oids], max(budget, 0) + 1,
                        f"{len(oids)} document file{'s' if len(oids) != 1 else ''}")
        return staged

    def adopt(self, staged: GitTree) -> None:
        """Move the packs of ``staged`` into the entry (pack before index, so a reader never sees
        an index without its pack)."""
        src, dst = staged.git_dir / "objects" / "pack", self.tree.git_dir / "objects" / "pack"
        dst.mkdir(parents=True, exist_ok=True)
        for suffix in (".pack", ".rev", ".idx"):
            for f in sorted(src.glob(f"pack-*{suffix}")):
                os.replace(f, dst / f.name)


def has_commit(tree: GitTree, commit: str) -> bool:
    """True when ``tree`` holds ``commit`` as a commit object."""
    proc = git_process(tree, "rev-parse", "-q", "--verify", "--end-of-options", f"{commit}^{{commit}}")
    return proc.returncode == 0 and proc.stdout.decode().strip() == commit


def prune(root: Path, max_bytes: int, *, keep: str = "", stale_after: float = 3600) -> list[str]:
    """Bound the documents cache ``root`` to ``max_bytes``: remove ``.fetch-*`` temporaries older
    than ``stale_after`` seconds, then whole entries, least recently used first (never ``keep``,
    never one whose lock another process holds), until the entries total at most ``max_bytes``.
    Returns the keys removed."""
    now = time.time()
    for tmp in root.glob(".fetch-*"):
        try:
            if now - tmp.stat().st_mtime > stale_after:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass
    entries = []
    for d in root.iterdir() if root.is_dir() else ():
        if d.is_dir() and not d.name.startswith(".") and not d.is_symlink():
            stamp = d / ".git" / _STAMP
            used = stamp.stat().st_mtime if stamp.exists() else d.stat().st_mtime
            entries.append((used, d, _folder_bytes(d)))
    total = sum(size for _, _, size in entries)
    removed = []
    for _, d, size in sorted(entries, key=lambda e: e[0]):
        if total <= max_bytes:
            break
        if d.name == keep:
            continue
        lock = FileLock(str(lock_path(root, d.name)), timeout=0)
        try:
            with lock:
                shutil.rmtree(d, ignore_errors=True)
        except Timeout:
            continue
        total -= size
        removed.append(d.name)
    return removed
