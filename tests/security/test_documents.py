"""A pull request's ``document:`` block is hostile input: commit ids, URLs, patterns, sizes.

Every attack runs in the preview workflow's own layout (``.github/workflows/preview.yml``): the
current directory holds the PR checkout ``pr/`` (``pr/documents`` and ``pr/taxonomy``) and the
trusted settings ``trusted.yaml``; ``lab generate pr/taxonomy --config trusted.yaml`` must fail
with an error naming ``pr/taxonomy/.../qna.yaml``, the line and the ``document.*`` field, and
``lab taxonomy validate`` must flag the same field where the schema can tell. No network: remote
rules are checked against local HTTP servers (pytest-httpserver) and ``file://`` mirrors.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from pytest_httpserver import HTTPServer
from tests.bot.conftest import ATTRIBUTION
from tests.taxonomy.helpers import knowledge, write_leaf
from werkzeug import Response

from lab_tools.config_sections import DocumentsConfig
from lab_tools.errors import LabError
from lab_tools.taxonomy import documents, remote
from lab_tools.taxonomy.leaf import load_leaf

LEAF = "knowledge/space/moon"
QNA = f"pr/taxonomy/{LEAF}/qna.yaml"
MOON = "# The Moon\n\n" + " ".join(f"The moon fact number {i}." for i in range(5)) + "\n"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), "-c", "user.email=t@example.org", "-c", "user.name=T",
                           "-c", "commit.gpgsign=false", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


class Workspace:
    """``path``: the job's working directory with ``pr/`` (a git repository whose ``main`` holds
    ``documents/moon/``) and ``trusted.yaml``; ``docs_commit``: the full id of that commit."""

    def __init__(self, path: Path):
        self.path, self.pr = path, path / "pr"
        self.pr.mkdir(parents=True)
        _git(self.pr, "init", "-q", "-b", "main")
        self.add_files({"documents/moon/moon.md": MOON, "documents/moon/deep/notes.md": "Deeper notes.\n",
                        "documents/moon/[draft].md": "A draft.\n", "documents/big/big.md": "x" * 5000 + "\n"})
        self.docs_commit = _git(self.pr, "rev-parse", "HEAD")
        self.trust()

    def add_files(self, files: dict[str, str]) -> None:
        for rel, text in files.items():
            (self.pr / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.pr / rel).write_text(text, encoding="utf-8")
        _git(self.pr, "add", "-A")
        _git(self.pr, "commit", "-q", "-m", "files")

    def trust(self, **documents_settings) -> None:
        """Write the trusted settings (the base branch's lab.yaml in the workflow)."""
        cfg = {"generate": {"teacher": "scripted:", "samples": 2}, "documents": documents_settings}
        (self.path / "trusted.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")

    def leaf(self, **document):
        """Commit a knowledge leaf whose ``document`` is ``{repo: ../documents, commit: docs_commit,
        patterns: [moon/*.md]}`` updated with ``document``; returns the loaded leaf."""
        data = knowledge()
        data["document"] = {"repo": "../documents", "commit": self.docs_commit, "patterns": ["moon/*.md"],
                            **document}
        write_leaf(self.pr / "taxonomy", LEAF, data, ATTRIBUTION)
        self.add_files({})
        return load_leaf(self.pr / "taxonomy", LEAF)

    def line_of(self, field: str) -> int:
        """1-based line of ``document.<key>`` (or of item ``document.patterns.<i>``) in the qna.yaml."""
        lines = (self.path / QNA).read_text(encoding="utf-8").splitlines()
        parts = field.split(".")
        start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{parts[1]}:"))
        return start + 1 + (int(parts[2]) + 1 if len(parts) == 3 else 0)


@pytest.fixture()
def ws(tmp_path, monkeypatch, cache_dir) -> Workspace:
    w = Workspace(tmp_path / "ws")
    monkeypatch.chdir(w.path)
    return w


def generate_fails(ws: Workspace, run_lab, field: str, words: str) -> str:
    """``lab generate`` on the PR's taxonomy exits 1 with ``qna.yaml:LINE: FIELD: ...words...``."""
    code, cap = run_lab(["generate", "pr/taxonomy", "--out", "out", "--config", "trusted.yaml", "--quiet"])
    assert code == 1, cap.out + cap.err
    assert "Traceback" not in cap.err
    where = f"{QNA}:{ws.line_of(field)}: {field}: "
    assert where in cap.err and words in cap.err.split(where, 1)[1], cap.err
    return cap.err


def validate_flags(ws: Workspace, run_lab, field: str) -> None:
    code, cap = run_lab(["taxonomy", "validate", "pr/taxonomy"])
    assert code == 1 and f"{QNA}:{ws.line_of(field)}:" in cap.out and f" {field}: " in cap.out, cap.out


# --- commit ids -------------------------------------------------------------------------------

@pytest.mark.parametrize("commit", ["SHORT", "main", "HEAD", "v1.0", "UPPER", "-" + "a" * 39])
def test_a_commit_that_is_not_a_full_id_is_refused(ws, run_lab, commit):
    commit = {"SHORT": ws.docs_commit[:12], "UPPER": ws.docs_commit.upper()}.get(commit, commit)
    _git(ws.pr, "tag", "v1.0", ws.docs_commit)  # the ref names all resolve in git: only the rule refuses
    ws.leaf(commit=commit)
    generate_fails(ws, run_lab, "document.commit", "must be a full commit id")
    validate_flags(ws, run_lab, "document.commit")


@pytest.fixture()
def mirror(tmp_path) -> Path:
    """A separate repository with one markdown file (a local mirror for ``file://``)."""
    m = tmp_path / "mirror"
    m.mkdir()
    _git(m, "init", "-q", "-b", "main")
    (m / "a.md").write_text("mirror\n")
    _git(m, "add", "-A")
    _git(m, "commit", "-q", "-m", "m")
    return m


def test_upload_pack_injection_canary(mirror, tmp_path):
    """The attack is live: git run with the value as an option runs the command (marker appears)."""
    marker = tmp_path / "MARKER"
    subprocess.run(["git", "fetch", f"--upload-pack=touch {marker}; git-upload-pack", f"file://{mirror}"],
                   cwd=mirror, capture_output=True)
    assert marker.exists()


def test_an_injected_commit_option_runs_nothing(ws, run_lab, mirror, tmp_path):
    marker = tmp_path / "MARKER"
    ws.trust(allow_local=True)  # a fetch would happen for a valid id: only the rule stands in between
    ws.leaf(repo=f"file://{mirror}", commit=f"--upload-pack=touch {marker}", patterns=["*.md"])
    generate_fails(ws, run_lab, "document.commit", "must be a full commit id")
    validate_flags(ws, run_lab, "document.commit")
    assert not marker.exists()


def test_git_gets_every_positional_argument_after_double_dash(ws, mirror, cache_dir, monkeypatch):
    """Belt and braces below the commit rule: in every git call the resolver makes, each value
    that came from the qna.yaml (URL, commit, tree path) or from git's own listing comes after
    ``--`` (``--end-of-options`` for rev-parse), so none can ever be read as an option."""
    calls = []
    real = documents.git_process
    for module in (documents, remote):  # the resolver and its fetcher (lab_tools.taxonomy.remote)
        monkeypatch.setattr(module, "git_process", lambda tree, *a, **k: calls.append(a) or real(tree, *a, **k))
    sha = _git(mirror, "rev-parse", "HEAD")
    documents.resolve_documents(ws.leaf(repo=f"file://{mirror}", commit=sha, patterns=["*.md"]),
                                cache_dir=cache_dir, settings=DocumentsConfig(allow_local=True))
    documents.resolve_documents(ws.leaf())
    assert any("fetch" in a for a in calls) and any(a[:2] == ("cat-file", "blob") for a in calls)
    for args in calls:
        sub = next(i for i, a in enumerate(args) if not a.startswith("-") and "=" not in a)  # the subcommand
        rest = args[sub + 1:]
        fence = next((i for i, a in enumerate(rest) if a in ("--", "--end-of-options")), None)
        assert fence is not None, args
        assert all(a.startswith("-") or a == "blob" for a in rest[:fence]), args  # only our constants


def test_a_sha256_repository_takes_a_64_digit_id(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "--object-format=sha256", "-b", "main")
    (repo / "documents").mkdir()
    (repo / "documents" / "a.md").write_text("sha256 document\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "d")
    sha = _git(repo, "rev-parse", "HEAD")
    data = knowledge()
    data["document"] = {"repo": "../documents", "commit": sha, "patterns": ["*.md"]}
    write_leaf(repo / "taxonomy", LEAF, data)
    (doc,) = documents.resolve_documents(load_leaf(repo / "taxonomy", LEAF))
    assert len(sha) == 64 and doc.commit == sha and doc.text == "sha256 document\n"


# --- remotes: schemes, hosts, redirects ----------------------------------------------------------

@pytest.mark.parametrize("repo,words", [
    ("https://evil.example/docs.git", "'evil.example' is not in documents.allowed_hosts"),
    ("https://github.com.evil.example/docs.git", "is not in documents.allowed_hosts"),
    ("https://github.com:2222/docs.git", "'github.com:2222' is not in documents.allowed_hosts"),
    ("https://token@github.com/o/docs.git", "credentials"),
    ("http://github.com/o/docs.git", "scheme http:// is not allowed"),
    ("ssh://git@github.com/o/docs.git", "scheme ssh:// is not allowed"),
    ("git://github.com/o/docs.git", "scheme git:// is not allowed"),
    ("file:///etc", "file:// repositories are refused"),
])
def test_a_remote_outside_the_allowlists_is_refused_before_any_fetch(ws, run_lab, repo, words, cache_dir):
    ws.leaf(repo=repo)
    generate_fails(ws, run_lab, "document.repo", words)
    assert not (cache_dir / "documents").exists() or not any((cache_dir / "documents").rglob("HEAD"))


@pytest.fixture()
def servers():
    """Two local HTTP servers: ``origin`` on 127.0.0.1 and ``other`` on localhost (another host)."""
    origin, other = HTTPServer(host="127.0.0.1"), HTTPServer(host="localhost")
    origin.start()
    other.start()
    yield origin, other
    origin.stop()
    other.stop()


@pytest.mark.parametrize("target", ["other-host", "other-scheme", "same-host"])
def test_a_redirect_is_not_followed(ws, run_lab, servers, target):
    origin, other = servers
    location = {"other-host": other.url_for("/docs.git/info/refs"),
                "other-scheme": f"https://127.0.0.1:{origin.port}/docs.git/info/refs",
                "same-host": origin.url_for("/moved.git/info/refs")}[target]
    origin.expect_request("/docs.git/info/refs").respond_with_response(
        Response(status=301, headers={"Location": location + "?service=git-upload-pack"}))
    other.expect_request("/docs.git/info/refs").respond_with_data("not git", status=200)
    ws.trust(allowed_schemes=["http"], allowed_hosts=[f"127.0.0.1:{origin.port}", f"localhost:{other.port}"])
    ws.leaf(repo=origin.url_for("/docs.git"))
    generate_fails(ws, run_lab, "document.repo", "answered with a redirect (HTTP 301); redirects are not followed")
    assert [r.path for r, _ in origin.log] == ["/docs.git/info/refs"]
    assert other.log == [] and not any(r.path.startswith("/moved") for r, _ in origin.log)


def test_a_stalled_server_times_out(ws, servers):
    import time

    origin, _ = servers
    origin.expect_request("/docs.git/info/refs").respond_with_handler(lambda r: time.sleep(4) or Response("x"))
    leaf = ws.leaf(repo=origin.url_for("/docs.git"))
    settings = DocumentsConfig(allowed_schemes=["http"], allowed_hosts=[f"127.0.0.1:{origin.port}"],
                               fetch_timeout=1)
    started = time.monotonic()
    with pytest.raises(LabError) as err:
        documents.resolve_documents(leaf, cache_dir=ws.path / "cache", settings=settings)
    assert time.monotonic() - started < 3.5
    assert err.value.field == "document.repo" and "no answer within 1 s" in err.value.message


def test_a_local_mirror_is_fetched_by_id_when_allowed(ws, mirror, cache_dir):
    sha = _git(mirror, "rev-parse", "HEAD")
    leaf = ws.leaf(repo=f"file://{mirror}", commit=sha, patterns=["*.md"])
    with pytest.raises(LabError, match="file:// repositories are refused"):
        documents.resolve_documents(leaf, cache_dir=cache_dir)
    (doc,) = documents.resolve_documents(leaf, cache_dir=cache_dir, settings=DocumentsConfig(allow_local=True))
    assert doc.text == "mirror\n" and doc.commit == sha
    (entry,) = (cache_dir / "documents").iterdir()  # keyed by URL + full commit id, never a ref name
    assert subprocess.run(["git", "--git-dir", str(entry / ".git"), "rev-parse", "refs/lab/pinned"],
                          capture_output=True, text=True).stdout.strip() == sha


# --- size cap ---------------------------------------------------------------------------------

def test_an_oversize_document_set_is_refused_before_it_is_read(ws, run_lab, monkeypatch):
    ws.trust(max_bytes_per_leaf=4096)
    leaf = ws.leaf(patterns=["moon/*.md", "big/*.md"])
    generate_fails(ws, run_lab, "document.patterns", "over the limit of 4,096 bytes per leaf")
    calls = []
    real = documents.git_process
    monkeypatch.setattr(documents, "git_process", lambda tree, *a, **k: calls.append(a) or real(tree, *a, **k))
    with pytest.raises(LabError, match="5,"):
        documents.resolve_documents(leaf, settings=DocumentsConfig(max_bytes_per_leaf=4096))
    assert calls and not any(a[:2] == ("cat-file", "blob") for a in calls)  # nothing read whole
    assert len(documents.resolve_documents(leaf, settings=DocumentsConfig(max_bytes_per_leaf=10_000))) == 3


# --- patterns are git wildmatch ----------------------------------------------------------------

@pytest.mark.parametrize("pattern,files", [
    ("moon/*.md", ["moon/[draft].md", "moon/moon.md"]),        # `*` stays in one segment
    ("moon/**/*.md", ["moon/[draft].md", "moon/deep/notes.md", "moon/moon.md"]),
    ("notes.md", ["moon/deep/notes.md"]),                       # no slash: any depth
    ("moon/[mn]*.md", ["moon/moon.md"]),                        # a class, not literal brackets
    ("moon/\\[draft].md", ["moon/[draft].md"]),                 # an escaped bracket is literal
    ("/big/", ["big/big.md"]),                                  # a folder selects its files
])
def test_patterns_are_git_wildmatch(ws, pattern, files):
    assert not hasattr(documents, "_glob_regex") and not hasattr(documents, "_glob_to_regex")
    leaf = ws.leaf(patterns=[pattern])
    assert [d.path for d in documents.resolve_documents(leaf)] == files


@pytest.mark.parametrize("pattern,words", [
    ("moon/.*", "matches no file"),  # a regex would take every file; wildmatch: dot files only
    ("moon/*.md$", "matches no file"),
    ("!moon/moon.md", "negations (!)"),
])
def test_a_pattern_wildmatch_reads_differently_from_a_regex_is_refused(ws, run_lab, pattern, words):
    ws.leaf(patterns=["moon/moon.md", pattern])
    generate_fails(ws, run_lab, "document.patterns.1", words)
