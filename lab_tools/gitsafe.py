"""Git on trees we did not write: explicit git dir and work tree, no discovery, no PR config.

A pull request can commit plain files that look like git metadata (``taxonomy/HEAD``,
``taxonomy/objects/``, ``taxonomy/refs/``, ``taxonomy/config`` with a ``core.fsmonitor`` or
``core.worktree``). Git run *inside* such a tree (``git -C taxonomy ...``, or GitPython's
``search_parent_directories=True``) may discover it as a bare repository and read that config,
which can run commands. So every git call on a tree a pull request wrote goes through this
module (DESIGN.md, Trust boundary):

- the repository is located by walking up to a ``.git`` *entry* (a directory or a gitfile) only;
  a bare repository (HEAD/objects/refs lying in a folder) is never accepted;
- git runs with ``GIT_DIR`` and ``GIT_WORK_TREE`` set explicitly, ``GIT_CEILING_DIRECTORIES``
  fencing discovery, and command-line config that wins over any file:
  ``safe.bareRepository=explicit``, ``core.fsmonitor=false``, ``core.hooksPath=/dev/null``;
- system and global config are ignored (``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=/dev/null``),
  no terminal prompts, no optional locks.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab_tools.errors import LabError

#: Config pairs given to every git call; command-line config outranks every config file.
SAFE_CONFIG: tuple[tuple[str, str], ...] = (
    ("safe.bareRepository", "explicit"),
    ("core.fsmonitor", "false"),
    ("core.hooksPath", os.devnull),
    ("core.untrackedCache", "false"),
    ("protocol.file.allow", "user"),
)


@dataclass(frozen=True)
class GitTree:
    """A located repository: ``git_dir`` (the ``.git`` directory, resolved) and ``work_tree``
    (the folder that holds the ``.git`` entry, resolved)."""
    git_dir: Path
    work_tree: Path


def find_repo(start: str | Path) -> GitTree:
    """The repository whose work tree holds ``start``: the nearest ancestor (``start`` included)
    with a ``.git`` directory or gitfile (``gitdir: PATH``, as worktrees and submodules use).

    Folders that merely *look* like a bare repository are skipped, whatever they contain.

    Raises:
        LabError: no ancestor of ``start`` has a ``.git`` entry.
    """
    start = Path(start).resolve()
    for d in (start, *start.parents):
        dot = d / ".git"
        if dot.is_symlink():
            continue  # a symlinked .git could point anywhere: never follow it
        if dot.is_dir():
            return GitTree(dot, d)
        if dot.is_file():
            try:
                line = dot.read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                continue
            if line.startswith("gitdir:"):
                target = Path(line[len("gitdir:"):].strip())
                target = (d / target).resolve() if not target.is_absolute() else target.resolve()
                if target.is_dir():
                    return GitTree(target, d)
    raise LabError("not inside a git repository (no .git folder above it)", file=str(start))


def safe_env(tree: GitTree, base: dict | None = None, *, user_config: bool = False) -> dict:
    """Environment for a git process on ``tree``: ``base`` (default ``os.environ``) with every
    ``GIT_*`` variable removed, then the explicit git dir / work tree and :data:`SAFE_CONFIG`
    (as ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``, git >= 2.31).

    ``user_config``: also read the system and global config and keep the ``GIT_AUTHOR_*`` /
    ``GIT_COMMITTER_*`` variables (the user's identity, for a commit on the user's own
    checkout); :data:`SAFE_CONFIG` still outranks them."""
    keep = ("GIT_AUTHOR_", "GIT_COMMITTER_") if user_config else ()
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith("GIT_") or k.startswith(keep)}
    env.update({
        "GIT_DIR": str(tree.git_dir),
        "GIT_WORK_TREE": str(tree.work_tree),
        "GIT_CEILING_DIRECTORIES": str(tree.work_tree.parent),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_CONFIG_COUNT": str(len(SAFE_CONFIG)),
    })
    if not user_config:
        env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull})
    for i, (key, value) in enumerate(SAFE_CONFIG):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def run_git(tree: GitTree, *args: str, check: bool = True, timeout: float = 120) -> str:
    """Run ``git ARGS`` on ``tree`` with :func:`safe_env`, from the work tree's top level (never
    from inside a folder a pull request wrote). Returns stdout (text).

    Raises:
        LabError: git is missing, timed out, or (with ``check``) exited non-zero; the message
            carries git's first stderr line.
    """
    try:
        proc = subprocess.run(["git", *args], cwd=tree.work_tree, env=safe_env(tree),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"git {args[0] if args else ''} failed: {exc}") from None
    if check and proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["no message"])[0]
        raise LabError(f"git {args[0] if args else ''} failed: {first}")
    return proc.stdout


class GitOutgrown(LabError):
    """A git process stopped by :func:`git_process` because its ``watch`` folder grew past
    ``max_bytes`` (a download over its cap)."""


def _folder_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass  # a temporary file git renamed or removed meanwhile
    return total


def git_process(tree: GitTree, *args: str, timeout: float = 120, input: bytes | None = None,
                watch: Path | None = None, max_bytes: int | None = None) -> subprocess.CompletedProcess:
    """Run ``git ARGS`` on ``tree`` exactly as :func:`run_git` does, but return the finished
    process unchecked, with ``stdout``/``stderr`` as bytes: for binary blobs (``cat-file blob``)
    and for callers that tell git's failures apart (a fetch refused by the server, a redirect).

    ``input``: bytes for git's standard input (``cat-file --batch-check``). ``watch`` and
    ``max_bytes``: the bytes of files under ``watch`` are polled every 50 ms and git (its whole
    process group: remote helper, index-pack) is killed as soon as they exceed ``max_bytes``,
    so a download stops at its cap instead of after it (with ``fetch.unpackLimit=1`` git streams
    the pack to disk as it arrives).

    Raises:
        LabError: git is missing or ran past ``timeout`` seconds.
        GitOutgrown: ``watch`` grew past ``max_bytes`` (the process is killed first).
    """
    stdin = {} if input is not None else {"stdin": subprocess.DEVNULL}
    if watch is None or max_bytes is None:
        try:
            return subprocess.run(["git", *args], cwd=tree.work_tree, env=safe_env(tree), capture_output=True,
                                  timeout=timeout, input=input, **stdin)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LabError(f"git {args[0] if args else ''} failed: {exc}") from None
    import signal
    import threading
    import time

    try:
        proc = subprocess.Popen(["git", *args], cwd=tree.work_tree, env=safe_env(tree), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.PIPE if input is not None else
                                subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise LabError(f"git {args[0] if args else ''} failed: {exc}") from None
    outgrown, done = [], threading.Event()

    def kill() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def poll() -> None:
        while not done.wait(0.05):
            size = _folder_bytes(Path(watch))
            if size > max_bytes:
                outgrown.append(size)
                kill()
                return

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        kill()
        proc.communicate()
        raise LabError(f"git {args[0] if args else ''} failed: {exc}") from None
    finally:
        done.set()
        watcher.join()
    if outgrown:
        raise GitOutgrown(f"git {args[0] if args else ''} stopped after {time.monotonic() - started:.1f} s: "
                          f"{outgrown[0]:,} bytes received, over the cap of {max_bytes:,}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def open_repo(tree: GitTree, *, user_config: bool = False):
    """A GitPython ``Repo`` on ``tree`` with no discovery: opened at the explicit git dir, and
    every git command it runs gets :func:`safe_env` (so repository config from the work tree is
    never read). GitPython starts each git process from a copy of ``os.environ``, so a caller's
    own ``GIT_*`` variables that :func:`safe_env` does not set (``GIT_INDEX_FILE`` in a hook) still
    reach it: prefer :func:`run_git`, which removes them. ``user_config``: see :func:`safe_env`.
    Import of GitPython is lazy.

    Raises:
        LabError: the git dir cannot be opened, or GitPython would run git in another work tree.
    """
    import git

    try:
        repo = git.Repo(str(tree.git_dir), search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise LabError(f"not a git repository: {exc}", file=str(tree.git_dir)) from None
    if repo.working_tree_dir is None or Path(repo.working_tree_dir).resolve() != tree.work_tree:
        raise LabError(f"git work tree is {repo.working_tree_dir}, expected {tree.work_tree}",
                       file=str(tree.git_dir))
    env = safe_env(tree, user_config=user_config)
    repo.git.update_environment(**{k: v for k, v in env.items() if k.startswith("GIT_")})
    return repo
