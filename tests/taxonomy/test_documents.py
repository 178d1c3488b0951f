"""Knowledge documents: pinned commit, relative paths inside the taxonomy repo, refused remotes, cache."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from lab_tools.config_sections import DocumentsConfig
from lab_tools.errors import LabError
from lab_tools.gitsafe import run_git
from lab_tools.taxonomy.documents import _Where, resolve_documents
from lab_tools.taxonomy.remote import RemoteEntry


def _fetch(url, scheme, commit, cache, settings, where):
    """The cache entry's repository holding ``commit`` (fetched on first use)."""
    with RemoteEntry(url, scheme, commit, cache, settings, where) as entry:
        return entry.tree
from lab_tools.taxonomy.leaf import load_leaf

from .helpers import knowledge, write_leaf


@pytest.fixture()
def repo(tmp_path):
    r = git.Repo.init(tmp_path / "repo", initial_branch="main")
    r.git.config("user.email", "t@example.org")
    r.git.config("user.name", "t")
    docs = tmp_path / "repo" / "documents" / "moon"
    docs.mkdir(parents=True)
    (docs / "moon.md").write_text("# The Moon\nv1\n")
    (docs / "notes.txt").write_text("not markdown\n")
    r.git.add("-A")
    r.git.commit("-m", "docs", "--no-verify")
    return r


def _leaf(repo, document):
    root = repo.working_tree_dir + "/taxonomy"
    data = knowledge()
    data["document"] = document
    write_leaf(Path(root), "knowledge/space/moon", data)
    return load_leaf(root, "knowledge/space/moon")


def test_relative_repo_reads_the_pinned_commit(repo):
    pinned = repo.head.commit.hexsha
    (Path(repo.working_tree_dir) / "documents/moon/moon.md").write_text("# The Moon\nv2\n")
    repo.git.commit("-am", "v2", "--no-verify")
    docs = resolve_documents(_leaf(repo, {"repo": "../documents", "commit": pinned, "patterns": ["moon/*.md"]}))
    assert [(d.path, d.text, d.commit) for d in docs] == [("moon/moon.md", "# The Moon\nv1\n", pinned)]
    assert len(docs[0].sha256) == 64
    head = repo.head.commit.hexsha
    both = resolve_documents(_leaf(repo, {"repo": "../documents", "commit": head, "patterns": ["**/*.md", "moon/*"]}))
    assert [d.path for d in both] == ["moon/moon.md", "moon/notes.txt"] and "v2" in both[0].text


@pytest.mark.parametrize("document,field,word", [
    ({"repo": "../documents", "commit": "f" * 40, "patterns": ["*.md"]}, "document.commit", "not found"),
    ({"repo": "../documents", "commit": "HEAD", "patterns": ["*.md"]}, "document.commit", "full commit id"),
    ({"repo": "../documents", "commit": "PINNED", "patterns": ["moon/*.md", "*.pdf"]}, "document.patterns.1",
     "matches no"),
    ({"repo": "../documents", "commit": "PINNED", "patterns": ["!moon/notes.txt"]}, "document.patterns.0",
     "negations"),
    ({"repo": "../nowhere", "commit": "PINNED", "patterns": ["*"]}, "document.repo", "not a folder"),
    ({"repo": "file:///tmp/x", "commit": "PINNED", "patterns": ["*"]}, "document.repo", "file://"),
    ({"repo": "ssh://git@example.org/x.git", "commit": "PINNED", "patterns": ["*"]}, "document.repo", "https"),
    ({"repo": "git@example.org:x.git", "commit": "PINNED", "patterns": ["*"]}, "document.repo", "https"),
    ({"repo": "ext::sh -c touch% /tmp/x", "commit": "PINNED", "patterns": ["*"]}, "document.repo", "https"),
    ({"repo": "http://github.com/x.git", "commit": "PINNED", "patterns": ["*"]}, "document.repo", "https"),
    ({"repo": "https://u:p@github.com/x.git", "commit": "PINNED", "patterns": ["*"]}, "document.repo", "credentials"),
    ({"repo": "https://example.org/x.git", "commit": "PINNED", "patterns": ["*"]}, "document.repo", "allowed_hosts"),
    ({"repo": "https://github.com:8443/x.git", "commit": "PINNED", "patterns": ["*"]}, "document.repo",
     "'github.com:8443'"),
    ({"repo": "/etc", "commit": "PINNED", "patterns": ["*"]}, "document.repo", "absolute"),
    ({"repo": "../../..", "commit": "PINNED", "patterns": ["*"]}, "document.repo", "leaves"),
])
def test_refusals_name_the_file_line_and_field(repo, document, field, word):
    document = {**document, "commit": document["commit"].replace("PINNED", repo.head.commit.hexsha)}
    leaf = _leaf(repo, document)
    with pytest.raises(LabError) as err:
        resolve_documents(leaf)
    assert err.value.field == field and word in err.value.message
    assert err.value.file == str(leaf.qna_path)
    line = leaf.qna_path.read_text().splitlines()[err.value.line - 1]
    parts = field.split(".")
    expected = str(document["patterns"][int(parts[2])]) if len(parts) == 3 else f"{parts[1]}:"
    assert expected in line, (err.value.line, line)


def test_unsupported_scheme_in_settings_is_a_config_error(repo):
    leaf = _leaf(repo, {"repo": "ssh://github.com/x.git", "commit": repo.head.commit.hexsha, "patterns": ["*"]})
    with pytest.raises(LabError) as err:
        resolve_documents(leaf, settings=DocumentsConfig(allowed_schemes=["https", "ssh"]))
    assert err.value.field == "documents.allowed_schemes" and "'ssh'" in err.value.message


def test_local_mirror_allowed_by_setting(repo, tmp_path):
    other = git.Repo.init(tmp_path / "mirror", initial_branch="main")
    (tmp_path / "mirror" / "a.md").write_text("mirror\n")
    other.git.add("-A")
    other.git.config("user.email", "t@example.org")
    other.git.config("user.name", "t")
    other.git.commit("-m", "m", "--no-verify")
    for ref in (f"file://{tmp_path / 'mirror'}", str(tmp_path / "mirror")):
        leaf = _leaf(repo, {"repo": ref, "commit": other.head.commit.hexsha, "patterns": ["*.md"]})
        with pytest.raises(LabError):
            resolve_documents(leaf, cache_dir=tmp_path / "cache")
        docs = resolve_documents(leaf, cache_dir=tmp_path / "cache", allow_local=True)
        assert [d.text for d in docs] == ["mirror\n"]


def test_remote_fetch_goes_to_a_cache_keyed_by_the_commit(repo, tmp_path):
    # the remote code path with a local URL (no network in tests): fetched once, reused after
    url = f"file://{repo.working_tree_dir}"
    sha = repo.head.commit.hexsha
    settings = DocumentsConfig(allow_local=True)
    where = _Where(_leaf(repo, {"repo": url, "commit": sha, "patterns": ["*"]}))
    first = _fetch(url, "file", sha, tmp_path / "cache", settings, where)
    again = _fetch(url, "file", sha, tmp_path / "cache", settings, where)
    assert first == again and run_git(first, "rev-parse", "refs/lab/pinned").strip() == sha
    assert len(list((tmp_path / "cache" / "documents").iterdir())) == 1
    # a depth-1 fetch of exactly the pinned commit: its parent is not there
    (Path(repo.working_tree_dir) / "documents/moon/moon.md").write_text("v2\n")
    repo.git.commit("-am", "v2", "--no-verify")
    newer = _fetch(url, "file", repo.head.commit.hexsha, tmp_path / "cache", settings, where)
    assert newer != first and len(list((tmp_path / "cache" / "documents").iterdir())) == 2
    assert run_git(newer, "rev-list", "--count", "refs/lab/pinned").strip() == "1"
