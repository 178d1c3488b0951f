"""Helpers for end-to-end builds (imported by conftest.py and the tests).

A small taxonomy repository: a git repo with one knowledge leaf (its document pinned to a commit
of the same repo), one compositional and one foundational skill leaf, copied from this
repository's taxonomy; lab.yaml uses the scripted teacher and judge and the tiny student."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

LEAVES = ("knowledge/science/biology/honey_bees",
          "compositional_skills/writing/freeform/poetry/haiku",
          "foundational_skills/reasoning/common_sense_reasoning")
JUDGE_SCRIPT = {"response": [{"match": "impartial judge",
                              "reply": ["Short but relevant. Rating: [[5]]", "Clear. Rating: [[8]]"]}]}


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a fixed identity; returns stdout."""
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org",
                           "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def make_build_repo(tmp_path: Path, repo_root: Path, tiny_model: Path) -> Path:
    """Create ``tmp_path/repo`` and return its taxonomy root (``<repo>/taxonomy``)."""
    repo = tmp_path / "repo"
    (repo / "documents").mkdir(parents=True)
    shutil.copytree(repo_root / "documents" / "honey_bees", repo / "documents" / "honey_bees")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "documents")
    git(repo, "commit", "-q", "-m", "documents")
    doc_commit = git(repo, "rev-parse", "HEAD")
    for leaf in LEAVES:
        shutil.copytree(repo_root / "taxonomy" / leaf, repo / "taxonomy" / leaf)
    qna = repo / "taxonomy" / LEAVES[0] / "qna.yaml"
    qna.write_text(re.sub(r"commit: [0-9a-f]{40}", f"commit: {doc_commit}", qna.read_text()))
    judge = repo / "judge.json"
    judge.write_text(json.dumps(JUDGE_SCRIPT))
    (repo / "lab.yaml").write_text(
        "licenses:\n  allowlist: [CC-BY-4.0, CC0-1.0, Apache-2.0]\n"
        "generate:\n  teacher: 'scripted:'\n  judge: 'scripted:" + str(judge) + "'\n  samples: 2\n"
        "train:\n  preset: tiny-cpu\n  student: " + str(tiny_model) + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "taxonomy")
    return repo / "taxonomy"
