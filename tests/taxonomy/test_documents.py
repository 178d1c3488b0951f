"""Knowledge documents: pinned commit, relative paths inside the taxonomy repo, refused remotes, cache."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from lab_tools.errors import LabError
from lab_tools.taxonomy.documents import _fetch, resolve_documents
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
    both = resolve_documents(_leaf(repo, {"repo": "../documents", "commit": "HEAD", "patterns": ["**/*.md", "moon/*"]}))
    assert [d.path for d in both] == ["moon/moon.md", "moon/notes.txt"] and "v2" in both[0].text


@pytest.mark.parametrize("document,field,word", [
    ({"repo": "../documents", "commit": "f" * 40, "patterns": ["*.md"]}, "document.commit", "not found"),
    ({"repo": "../documents", "commit": "HEAD", "patterns": ["moon/*.md", "*.pdf"]}, "document.patterns.1", "matches no"),
    ({"repo": "file:///tmp/x", "commit": "HEAD", "patterns": ["*"]}, "document.repo", "file://"),
    ({"repo": "ssh://git@example.org/x.git", "commit": "HEAD", "patterns": ["*"]}, "document.repo", "https"),
    ({"repo": "git@example.org:x.git", "commit": "HEAD", "patterns": ["*"]}, "document.repo", "https"),
    ({"repo": "http://example.org/x.git", "commit": "HEAD", "patterns": ["*"]}, "document.repo", "https"),
    ({"repo": "/etc", "commit": "HEAD", "patterns": ["*"]}, "document.repo", "absolute"),
    ({"repo": "../../..", "commit": "HEAD", "patterns": ["*"]}, "document.repo", "leaves"),
])
def test_refusals_name_the_file_and_field(repo, document, field, word):
    leaf = _leaf(repo, document)
    with pytest.raises(LabError) as err:
        resolve_documents(leaf)
    assert err.value.field == field and word in err.value.message
    assert err.value.file == str(leaf.qna_path)


def test_local_mirror_allowed_by_setting(repo, tmp_path):
    other = git.Repo.init(tmp_path / "mirror", initial_branch="main")
    (tmp_path / "mirror" / "a.md").write_text("mirror\n")
    other.git.add("-A")
    other.git.config("user.email", "t@example.org")
    other.git.config("user.name", "t")
    other.git.commit("-m", "m", "--no-verify")
    leaf = _leaf(repo, {"repo": f"file://{tmp_path / 'mirror'}", "commit": other.head.commit.hexsha,
                        "patterns": ["*.md"]})
    assert [d.text for d in resolve_documents(leaf, allow_local=True)] == ["mirror\n"]


def test_remote_fetch_goes_to_a_content_addressed_cache(repo, tmp_path):
    # the https code path with a local URL (no network in tests): fetched once, reused after
    url = f"file://{repo.working_tree_dir}"
    sha = repo.head.commit.hexsha
    first = _fetch(url, sha, tmp_path / "cache", {})
    again = _fetch(url, sha, tmp_path / "cache", {})
    assert first.git_dir == again.git_dir and first.commit(sha).hexsha == sha
    assert len(list((tmp_path / "cache" / "documents").iterdir())) == 1
