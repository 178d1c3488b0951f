"""A pull request's symlinks are refused and never read through (DESIGN.md, Trust boundary).

The attack: the PR commits a symlink (git stores it; the checkout makes it a real link) in a leaf
folder -- ``attribution.txt`` pointing at a file outside the checkout, e.g. a runner's credentials.
If any check read it, the file's text could end up in a finding, the job log or the PR comment
(``attribution.txt`` values are quoted in license findings). Every symlink in a leaf folder, of any
name, file or folder, with an absolute or a relative target, must be an error, and the outside
file's text must appear nowhere.

Runs in the preview workflow's layout (``pr/`` checkout, ``lab ... pr/taxonomy``), through the CLI.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.bot.conftest import ATTRIBUTION, HAIKU, OWNER_REPO, skill_leaf
from tests.bot.conftest import fake_github  # noqa: F401 -- the fake GitHub REST API fixture

from lab_tools.errors import LabError
from lab_tools.taxonomy.leaf import load_leaf

SECRET = "s3cr3t-7f1c9e"  # appears only in the file outside the checkout
LEAF = "compositional_skills/writing/poetry/limerick"
LIMERICK = [(f"Write a limerick about {t}.", f"There once was a {t} so grand,\nwho wandered all over the "
             "land,\nit sang with a cheer,\nfor all who came near,\nand ended up leading the band.")
            for t in ("cat", "goat", "kettle", "river", "clock")]

# id -> (path of the link inside the leaf, what it points at: "file" | "folder", absolute target?)
LINKS = {
    "attribution-abs": ("attribution.txt", "file", True),
    "attribution-rel": ("attribution.txt", "file", False),
    "qna-abs": ("qna.yaml", "file", True),
    "other-file-rel": ("notes.md", "file", False),
    "folder-in-leaf-abs": ("extra", "folder", True),
    "leaf-folder-itself-rel": ("", "folder", False),
}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), "-c", "user.email=t@e", "-c", "user.name=T", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(params=sorted(LINKS))
def linked(request, tmp_path, monkeypatch):
    """``(workspace, link path relative to pr/taxonomy)``: the PR adds a leaf with a symlink."""
    name, kind, absolute = LINKS[request.param]
    outside = tmp_path / "runner-home"  # outside the workspace, as the runner's own files are
    (outside / "folder").mkdir(parents=True)
    secret_text = (f"Title of work: {SECRET}\nLink to work: https://{SECRET}.example\n"
                   f"License of the work: {SECRET}\nCreator names: {SECRET}\n")
    (outside / "secret.txt").write_text(secret_text)
    (outside / "folder" / "qna.yaml").write_text(skill_leaf(SECRET, [(f"{SECRET} {q}", a) for q, a in LIMERICK]))
    (outside / "folder" / "attribution.txt").write_text(secret_text)

    ws = tmp_path / "ws"
    pr = ws / "pr"
    pr.mkdir(parents=True)
    _git(pr, "init", "-q", "-b", "main")
    tax = pr / "taxonomy"
    base_leaf = tax / "compositional_skills/writing/poetry/haiku"
    base_leaf.mkdir(parents=True)
    (base_leaf / "qna.yaml").write_text(skill_leaf("Write haiku.", HAIKU))
    (base_leaf / "attribution.txt").write_text(ATTRIBUTION)
    _git(pr, "add", "-A")
    _git(pr, "commit", "-q", "-m", "base")
    _git(pr, "update-ref", "refs/remotes/origin/main", "main")
    _git(pr, "checkout", "-q", "-b", "pr")

    leaf = tax / LEAF
    target = outside / ("secret.txt" if kind == "file" else "folder")
    link = leaf / name if name else leaf
    link.parent.mkdir(parents=True, exist_ok=True)
    if name != "qna.yaml" and name:
        (leaf / "qna.yaml").write_text(skill_leaf("Write limericks.", LIMERICK))
    if name not in ("attribution.txt", "qna.yaml", ""):
        (leaf / "attribution.txt").write_text(ATTRIBUTION)
    if name == "qna.yaml":
        (leaf / "attribution.txt").write_text(ATTRIBUTION)
        target = outside / "folder" / "qna.yaml"
    os.symlink(target if absolute else os.path.relpath(target, link.parent), link)
    _git(pr, "add", "-A")
    _git(pr, "commit", "-q", "-m", "add a limerick")
    assert _git(pr, "ls-files", "-s", "--", str(link.relative_to(pr))).startswith("120000")  # a symlink blob
    (ws / "trusted.yaml").write_text("generate:\n  teacher: 'scripted:'\n  samples: 2\nbot:\n  samples: 2\n")
    monkeypatch.chdir(ws)
    return ws, link.relative_to(tax).as_posix()


def test_validate_refuses_the_symlink_and_shows_nothing_of_its_target(linked, run_lab):
    _, link = linked
    code, cap = run_lab(["taxonomy", "validate", "pr/taxonomy"])
    assert code == 1
    assert any(line.startswith(f"pr/taxonomy/{link}") and "symlink" in line for line in cap.out.splitlines()), cap.out
    assert SECRET not in cap.out + cap.err


def test_licenses_refuses_the_symlink_and_shows_nothing_of_its_target(linked, run_lab):
    _, link = linked
    for args in (["pr/taxonomy"], ["pr/taxonomy", "--changed-only", "--base", "main"]):
        code, cap = run_lab(["taxonomy", "licenses", *args])
        assert SECRET not in cap.out + cap.err
        if link.endswith("attribution.txt"):  # the license check's own file
            assert code == 1 and "attribution.txt:1:1: is a symlink" in cap.out, cap.out + cap.err


def test_bot_preview_fails_and_posts_nothing_of_the_target(linked, run_lab, fake_github, cache_dir):
    ws, link = linked
    head = _git(ws / "pr", "rev-parse", "HEAD")
    code, cap = run_lab(["bot", "preview", "--repo", OWNER_REPO, "--pr", "7", "--taxonomy", "pr/taxonomy",
                         "--base", "origin/main", "--config", "trusted.yaml"])
    assert code == 1, cap.out + cap.err
    (comment,) = fake_github.comments.values()
    assert "symlink" in comment["body"]
    assert SECRET not in comment["body"] + cap.out + cap.err
    assert [p["state"] for s, p in fake_github.statuses if s == head] == ["pending", "failure"]
    assert not any(SECRET in p.get("description", "") for _, p in fake_github.statuses)


def test_loading_a_leaf_never_reads_through_a_symlink(linked):
    """What SDG and the release read (qna.yaml, attribution.txt, the leaf folder) is never a link."""
    ws, link = linked
    if link.split("/")[-1] in ("notes.md", "extra"):  # not a leaf file: loading reads only the real ones
        assert SECRET not in repr(load_leaf(ws / "pr" / "taxonomy", LEAF).data)
        return
    with pytest.raises(LabError, match="symlink") as err:
        load_leaf(ws / "pr" / "taxonomy", LEAF)
    assert SECRET not in str(err.value)


def test_a_symlink_inside_the_tree_is_refused_too(tmp_path, run_lab):
    leaf = tmp_path / LEAF
    leaf.mkdir(parents=True)
    (leaf / "qna.yaml").write_text(skill_leaf("Write limericks.", LIMERICK))
    (tmp_path / "compositional_skills" / "shared.txt").write_text(ATTRIBUTION)
    os.symlink("../shared.txt", leaf / "attribution.txt")
    code, cap = run_lab(["taxonomy", "validate", str(tmp_path)])
    assert code == 1 and f"{LEAF}/attribution.txt:1:1: is a symlink" in cap.out, cap.out
