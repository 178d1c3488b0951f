"""`lab taxonomy diff`: committed, staged, unstaged, untracked and deleted leaves against a base."""

from __future__ import annotations

import json
import subprocess
import sys

import git
import pytest

from lab_tools.errors import LabError
from lab_tools.taxonomy.diff import changed_leaves

from .helpers import skill, write_leaf


def _commit(repo, msg):
    repo.git.add("-A")
    repo.git.commit("-m", msg, "--no-verify")


@pytest.fixture()
def repo(tmp_path):
    r = git.Repo.init(tmp_path, initial_branch="main")
    r.git.config("user.email", "t@example.org")
    r.git.config("user.name", "t")
    return r


def test_no_commits_means_every_leaf(tmp_path, repo):
    write_leaf(tmp_path / "taxonomy", "compositional_skills/a/one", skill())
    ch = changed_leaves(tmp_path / "taxonomy")
    assert ch.changed == ["compositional_skills/a/one"] and ch.base is None


def test_all_kinds_of_change(tmp_path, repo):
    tax = tmp_path / "taxonomy"
    for name in ("committed", "staged", "unstaged", "untouched", "deleted", "attr"):
        write_leaf(tax, f"compositional_skills/x/{name}", skill())
    (tmp_path / "README.md").write_text("hi\n")
    _commit(repo, "base")
    repo.git.checkout("-b", "feature")
    (tax / "compositional_skills/x/committed/qna.yaml").write_text("version: 3\n")
    write_leaf(tax, "compositional_skills/x/new_committed", skill())
    (tax / "compositional_skills/x/deleted/qna.yaml").unlink()
    _commit(repo, "feature work")
    (tax / "compositional_skills/x/staged/qna.yaml").write_text("version: 2\n")
    repo.git.add(str(tax / "compositional_skills/x/staged/qna.yaml"))
    (tax / "compositional_skills/x/unstaged/qna.yaml").write_text("version: 1\n")
    (tax / "compositional_skills/x/attr/attribution.txt").write_text("License of the work: MIT\n")
    write_leaf(tax, "compositional_skills/x/untracked", skill())
    (tmp_path / "README.md").write_text("changed outside the taxonomy\n")

    ch = changed_leaves(tax)  # default base: origin/main is absent, falls back to main
    assert ch.base == "main"
    assert ch.changed == [f"compositional_skills/x/{n}" for n in
                          ("attr", "committed", "new_committed", "staged", "unstaged", "untracked")]
    assert ch.deleted == ["compositional_skills/x/deleted"]
    assert changed_leaves(tax, base="feature").changed == [
        f"compositional_skills/x/{n}" for n in ("attr", "staged", "unstaged", "untracked")]

    out = subprocess.run([sys.executable, "-m", "lab_tools", "taxonomy", "diff", str(tax), "--format", "json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["deleted"] == ["compositional_skills/x/deleted"]
    # --changed-only validates only the changed leaves: the broken ones are reported, untouched is not
    out = subprocess.run([sys.executable, "-m", "lab_tools", "taxonomy", "validate", str(tax), "--changed-only",
                          "--base", "main", "--format", "json"], capture_output=True, text=True)
    assert out.returncode == 1
    files = {json.loads(line)["file"].split("/")[-2] for line in out.stdout.splitlines()}
    assert files == {"committed", "staged", "unstaged"}


def test_no_common_base_means_every_leaf(tmp_path, repo):
    tax = tmp_path / "taxonomy"
    write_leaf(tax, "compositional_skills/a/one", skill())
    _commit(repo, "one")
    repo.git.checkout("--orphan", "other")
    repo.git.rm("-rf", "--cached", ".")
    write_leaf(tax, "compositional_skills/a/two", skill())
    _commit(repo, "unrelated")
    ch = changed_leaves(tax, base="main")
    assert ch.base is None and ch.changed == ["compositional_skills/a/one", "compositional_skills/a/two"]


def test_errors(tmp_path, repo):
    write_leaf(tmp_path, "compositional_skills/a/one", skill())
    _commit(repo, "one")
    with pytest.raises(LabError, match="names no commit"):
        changed_leaves(tmp_path, base="no-such-ref")
    plain = tmp_path.parent / (tmp_path.name + "-plain")
    plain.mkdir()
    with pytest.raises(LabError, match="not inside a git repository"):
        changed_leaves(plain)


def test_no_changed_leaf_is_fine_but_no_leaf_at_all_is_not(tmp_path, repo):
    """`--changed-only` with nothing changed checks 0 leaves and passes; `diff` lists nothing."""
    tax = tmp_path / "taxonomy"
    write_leaf(tax, "compositional_skills/a/one", skill())
    _commit(repo, "one")
    lab = [sys.executable, "-m", "lab_tools", "taxonomy"]
    out = subprocess.run([*lab, "validate", str(tax), "--changed-only", "--base", "main"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "0 leaves checked" in out.stderr
    out = subprocess.run([*lab, "diff", str(tax), "--base", "main"], capture_output=True, text=True)
    assert out.returncode == 0 and "0 changed, 0 deleted" in out.stderr, out.stderr
    # a folder of the same repository that holds no leaf: an error, changed or not
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("hello\n")
    out = subprocess.run([*lab, "validate", str(tmp_path / "docs"), "--changed-only", "--base", "main"],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "no leaves" in out.stderr and "Traceback" not in out.stderr, out.stderr
