"""A pull request that commits git metadata into its taxonomy never gets that metadata read.

The attack (DESIGN.md, Trust boundary): the PR commits plain files ``taxonomy/HEAD``,
``taxonomy/objects/**``, ``taxonomy/refs/**``, ``taxonomy/config`` (and an ``index``) so that git
run inside ``taxonomy/`` discovers that folder as a repository before ``pr/.git`` and reads its
``config``, whose ``core.fsmonitor`` is a shell command. Here the command appends to a marker file.

Every test runs in the preview workflow's own layout (``.github/workflows/preview.yml``): the
current directory holds the PR checkout ``pr/`` and the trusted settings; the commands get
``pr/taxonomy`` as the taxonomy root, through the ``lab`` CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.bot.conftest import ATTRIBUTION, HAIKU, OWNER_REPO, skill_leaf
from tests.bot.conftest import fake_github  # noqa: F401 -- the fake GitHub REST API fixture

from lab_tools.errors import LabError
from lab_tools.gitsafe import find_repo, open_repo, run_git, safe_env

LIMERICK = [(f"Write a limerick about {t}.", f"There once was a {t} so grand,\nwho wandered all over the "
             "land,\nit sang with a cheer,\nfor all who came near,\nand ended up leading the band.")
            for t in ("cat", "goat", "kettle", "river", "clock")]
NEW_LEAF = "compositional_skills/writing/poetry/limerick"

# id -> (core.worktree: "abs-self" | "abs-top" | a literal relative value | None, index?, core.bare)
LAYOUTS = {
    "abs-self": ("abs-self", False, "false"),
    "abs-self-index": ("abs-self", True, "false"),
    "abs-top": ("abs-top", False, "false"),
    "rel-top-index": ("..", True, "false"),
    "rel-self": (".", False, "false"),
    "no-worktree-index": (None, True, "false"),
    "bare-abs-self": ("abs-self", False, "true"),
    "bare-rel-top-index": ("..", True, "true"),
}
PLANTED = ("HEAD", "config", "objects", "refs")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


class Workspace:
    """``path`` (the job's working directory) holding ``pr/`` (the PR checkout), ``trusted.yaml``;
    ``marker`` (outside the workspace) is where the planted fsmonitor command writes."""

    def __init__(self, path: Path, marker: Path):
        self.path, self.marker = path, marker
        self.pr = path / "pr"
        self.taxonomy = self.pr / "taxonomy"

    def fired(self) -> int:
        """How many times the planted command ran so far."""
        return len(self.marker.read_text().splitlines()) if self.marker.exists() else 0


def _write_leaf(taxonomy: Path, rel: str, text: str) -> None:
    d = taxonomy / rel
    d.mkdir(parents=True, exist_ok=True)
    (d / "qna.yaml").write_text(text, encoding="utf-8")
    (d / "attribution.txt").write_text(ATTRIBUTION, encoding="utf-8")


def plant(ws: Workspace, worktree: str | None, index: bool, bare: str) -> None:
    """Commit, on the PR branch, a copy of git metadata under ``pr/taxonomy`` with a hostile config."""
    t = ws.taxonomy
    (t / "HEAD").write_text("ref: refs/heads/main\n")
    for ref in ("heads/main", "remotes/origin/main"):  # the refs the bot diffs against
        (t / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (t / "refs" / ref).write_text(_git(ws.pr, "rev-parse", "main") + "\n")
    for obj in (ws.pr / ".git" / "objects").glob("??"):  # the loose objects of the base commit
        shutil.copytree(obj, t / "objects" / obj.name)
    if index:
        shutil.copy(ws.pr / ".git" / "index", t / "index")
    value = {"abs-self": str(t), "abs-top": str(ws.pr)}.get(worktree or "", worktree)
    lines = ["[core]", "\trepositoryformatversion = 0", f"\tbare = {bare}",
             f'\tfsmonitor = "echo fired >> {ws.marker}; false"']
    if value is not None:
        lines.append(f"\tworktree = {value}")
    (t / "config").write_text("\n".join(lines) + "\n")


@pytest.fixture(params=sorted(LAYOUTS))
def attacked(request, tmp_path, monkeypatch) -> Workspace:
    """The workflow's layout after checking out a PR that adds one valid leaf and planted metadata;
    the current directory is the workspace."""
    ws = Workspace(tmp_path / "ws", tmp_path / "MARKER")
    ws.pr.mkdir(parents=True)
    _git(ws.pr, "init", "-q", "-b", "main")
    for key, value in (("user.email", "t@example.org"), ("user.name", "Tester"), ("commit.gpgsign", "false")):
        _git(ws.pr, "config", key, value)
    _write_leaf(ws.taxonomy, "compositional_skills/writing/poetry/haiku", skill_leaf("Write haiku.", HAIKU))
    _git(ws.pr, "add", "-A")
    _git(ws.pr, "commit", "-q", "-m", "base")
    _git(ws.pr, "update-ref", "refs/remotes/origin/main", "main")  # as actions/checkout fetches it
    _git(ws.pr, "checkout", "-q", "-b", "pr")
    _write_leaf(ws.taxonomy, NEW_LEAF, skill_leaf("Write limericks.", LIMERICK))
    plant(ws, *LAYOUTS[request.param])
    _git(ws.pr, "add", "-A")
    _git(ws.pr, "commit", "-q", "-m", "add a limerick (and some files)")
    (ws.path / "trusted.yaml").write_text("generate:\n  teacher: 'scripted:'\n  samples: 2\nbot:\n  samples: 2\n")
    monkeypatch.chdir(ws.path)
    ws.layout = request.param
    assert ws.fired() == 0
    return ws


# --- the attack is live on this machine's git: the old code paths run the planted command ----------

def _planted_workspace(tmp_path: Path, layout: str) -> Workspace:
    """A one-commit ``pr/`` repository with the metadata of ``layout`` planted (uncommitted)."""
    ws = Workspace(tmp_path / "ws", tmp_path / "MARKER")
    ws.pr.mkdir(parents=True)
    _git(ws.pr, "init", "-q", "-b", "main")
    _write_leaf(ws.taxonomy, "compositional_skills/a/b", skill_leaf("t", HAIKU))
    _git(ws.pr, "add", "-A")
    _git(ws.pr, "-c", "user.email=t@e", "-c", "user.name=T", "commit", "-q", "-m", "base")
    plant(ws, *LAYOUTS[layout])
    return ws


@pytest.mark.parametrize("layout", ["abs-self", "abs-self-index", "rel-top-index", "rel-self"])
def test_git_run_inside_the_taxonomy_runs_the_planted_command(layout, tmp_path):
    """The canary: if this stops failing-open on some git, the tests below lose their teeth."""
    ws = _planted_workspace(tmp_path, layout)
    subprocess.run(["git", "-C", "pr/taxonomy", "status"], cwd=ws.path, capture_output=True)  # old bot
    assert ws.fired() >= 1


def test_gitpython_discovery_runs_the_planted_command(tmp_path, monkeypatch):
    """The old ``lab taxonomy diff`` (``git.Repo(root, search_parent_directories=True)``)."""
    import git

    ws = _planted_workspace(tmp_path, "abs-self")
    monkeypatch.chdir(ws.path)
    repo = git.Repo("pr/taxonomy", search_parent_directories=True)
    assert Path(repo.git_dir) == ws.taxonomy  # the PR's folder was taken for the repository
    repo.untracked_files  # noqa: B018 -- `git status`, as the old diff ran it
    assert ws.fired() >= 1


# --- the fixed paths, end to end through the CLI --------------------------------------------------

def test_diff_reads_the_real_repository_and_runs_nothing(attacked, run_lab):
    code, cap = run_lab(["taxonomy", "diff", "pr/taxonomy", "--base", "main", "--format", "json"])
    assert attacked.fired() == 0, attacked.layout
    assert code == 0, cap.err
    out = json.loads(cap.out)
    assert out["changed"] == [NEW_LEAF] and out["base"] == "main"  # diffed against pr/.git's main


def test_validate_names_the_stray_git_files_and_fails(attacked, run_lab):
    for args in (["pr/taxonomy"], ["pr/taxonomy", "--changed-only", "--base", "main"]):
        code, cap = run_lab(["taxonomy", "validate", *args])
        assert attacked.fired() == 0, (attacked.layout, args)
        assert code == 1, cap.out + cap.err
        lines = cap.out.splitlines()
        for name in PLANTED + (("index",) if (attacked.taxonomy / "index").exists() else ()):
            assert any(line.startswith(f"pr/taxonomy/{name}:") and "not part of a leaf" in line
                       for line in lines), (name, cap.out)
        assert "Traceback" not in cap.err


def test_bot_preview_runs_nothing_and_fails_on_the_stray_files(attacked, run_lab, fake_github, cache_dir):
    head = _git(attacked.pr, "rev-parse", "HEAD")
    code, cap = run_lab(["bot", "preview", "--repo", OWNER_REPO, "--pr", "7", "--taxonomy", "pr/taxonomy",
                         "--base", "origin/main", "--config", "trusted.yaml"])
    assert attacked.fired() == 0, attacked.layout
    assert code == 1, cap.out + cap.err
    (comment,) = fake_github.comments.values()
    body = comment["body"]
    assert "not part of a leaf" in body and "taxonomy/config" in body and "taxonomy/objects" in body
    assert "limerick" in body  # the real diff was read: the new leaf is there
    assert [p["state"] for s, p in fake_github.statuses if s == head] == ["pending", "failure"]


def test_release_provenance_reads_the_real_repository(attacked):
    from lab_tools.release.release import taxonomy_commit

    info = taxonomy_commit("pr/taxonomy")
    assert attacked.fired() == 0, attacked.layout
    assert info == {"commit": _git(attacked.pr, "rev-parse", "HEAD"), "dirty": False, "branch": "pr"}


def test_ui_commit_goes_to_the_real_repository(attacked):
    from lab_tools.ui.gitops import commit_files, open_repo as ui_repo

    leaf = attacked.taxonomy / NEW_LEAF / "qna.yaml"
    leaf.write_text(skill_leaf("Write funny limericks.", LIMERICK))
    out = commit_files(ui_repo(Path("pr/taxonomy"), "leaf/limericks"), [leaf], "leaf/limericks", "Tweak")
    assert attacked.fired() == 0, attacked.layout
    assert out["commit"] == _git(attacked.pr, "rev-parse", "leaf/limericks")


# --- gitsafe itself ------------------------------------------------------------------------------

def test_find_repo_skips_a_folder_that_looks_like_a_repository(attacked):
    tree = find_repo("pr/taxonomy")
    assert tree.work_tree == attacked.pr.resolve() and tree.git_dir == (attacked.pr / ".git").resolve()


def test_find_repo_does_not_follow_a_symlinked_dot_git(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    _git(real, "init", "-q")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / ".git").symlink_to(real / ".git")
    with pytest.raises(LabError, match="not inside a git repository"):
        find_repo(tmp_path / "tree")


def test_run_git_and_open_repo_use_the_real_repository(attacked, monkeypatch):
    head = _git(attacked.pr, "rev-parse", "HEAD")
    monkeypatch.setenv("GIT_DIR", str(attacked.taxonomy))  # a caller's stray variables do not leak in
    monkeypatch.setenv("GIT_INDEX_FILE", str(attacked.taxonomy / "index"))
    tree = find_repo(attacked.taxonomy)
    env = safe_env(tree)
    assert env["GIT_DIR"] == str(tree.git_dir) and "GIT_INDEX_FILE" not in env
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"
    keys = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}
    assert keys["safe.bareRepository"] == "explicit" and keys["core.fsmonitor"] == "false"
    assert run_git(tree, "rev-parse", "--show-toplevel").strip() == str(attacked.pr.resolve())
    assert run_git(tree, "status", "--porcelain") == ""
    monkeypatch.delenv("GIT_INDEX_FILE")  # GitPython copies os.environ: open_repo overrides GIT_DIR only
    repo = open_repo(tree)
    assert Path(repo.working_tree_dir).resolve() == attacked.pr.resolve()
    assert repo.untracked_files == [] and not repo.is_dirty()
    assert repo.head.commit.hexsha == head
    assert attacked.fired() == 0


def test_run_git_failure_is_a_clean_error(attacked):
    with pytest.raises(LabError, match="git rev-parse failed"):
        run_git(find_repo(attacked.taxonomy), "rev-parse", "--verify", "no-such-ref^{commit}")


# --- validate: nothing that is no part of a leaf passes ---------------------------------------------

def _tree_with_leaf(root: Path) -> Path:
    leaf = root / "compositional_skills" / "writing" / "limerick"
    leaf.mkdir(parents=True)
    (leaf / "qna.yaml").write_text(skill_leaf("Write limericks.", LIMERICK))
    (leaf / "attribution.txt").write_text(ATTRIBUTION)
    return leaf


def _stray(root: Path) -> dict[str, str]:
    from lab_tools.taxonomy.validate import validate_tree

    return {f.file[len(str(root)) + 1:]: f.message for f in validate_tree(root) if f.is_error}


def test_stray_files_folders_and_nested_repositories_are_errors(tmp_path):
    leaf = _tree_with_leaf(tmp_path)
    assert _stray(tmp_path) == {}
    (leaf / "model.bin").write_bytes(b"\0\1\2")  # a binary in a leaf folder
    (leaf / "nested").mkdir()
    _git(leaf / "nested", "init", "-q")  # a nested repository
    notes = tmp_path / "compositional_skills" / "notes"
    (notes / "deep").mkdir(parents=True)  # a folder that leads to no leaf
    (notes / "a.md").write_text("a")
    (notes / "deep" / "b.txt").write_text("b")
    (tmp_path / "knowledge").mkdir()
    (tmp_path / "knowledge" / "x.pdf").write_bytes(b"%PDF")
    (tmp_path / "compositional_skills" / "empty").mkdir()  # empty: git cannot hold it, left alone
    (tmp_path / "compositional_skills" / "writing" / "attribution.txt").write_text(ATTRIBUTION)  # no leaf
    hidden = tmp_path / "compositional_skills" / ".hidden" / "leaf"  # a folder validate never enters
    hidden.mkdir(parents=True)
    (hidden / "qna.yaml").write_text("version: 3\n")
    found = _stray(tmp_path)
    rel = "compositional_skills/writing/limerick"
    assert set(found) == {f"{rel}/model.bin", f"{rel}/nested/.git", "compositional_skills/notes", "knowledge",
                          "compositional_skills/writing/attribution.txt", "compositional_skills/.hidden"}, found
    assert found["compositional_skills/.hidden"].startswith("folder (1 file) is not part of a leaf")
    assert found["compositional_skills/notes"].startswith("folder (2 files) is not part of a leaf")
    assert "nested git repository" in found[f"{rel}/nested/.git"]
    assert all("not part of a leaf" in m for m in found.values())


def test_a_taxonomy_at_the_repository_top_keeps_its_own_files(tmp_path):
    """An InstructLab-style taxonomy repository: README, CI files and .git beside the top folders."""
    _tree_with_leaf(tmp_path)
    _git(tmp_path, "init", "-q")
    (tmp_path / "README.md").write_text("# taxonomy\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.md").write_text("x")
    assert _stray(tmp_path) == {}
    (tmp_path / "compositional_skills" / "HEAD").write_text("ref: refs/heads/main\n")
    assert set(_stray(tmp_path)) == {"compositional_skills/HEAD"}
