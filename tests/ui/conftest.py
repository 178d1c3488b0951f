"""Fixtures for `lab ui`: a git clone-like copy of the project's taxonomy, a live server on a free
loopback port (scripted teacher), and a tiny HTTP client that sends the session token."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LEAVES = ("compositional_skills/writing/freeform/poetry/haiku",
          "compositional_skills/writing/grounded/summarization/one_sentence",
          "foundational_skills/reasoning/temporal_reasoning",
          "knowledge/science/biology/honey_bees")


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (test identity), returning stdout."""
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "HOME": str(cwd), "PATH": "/usr/bin:/bin",
           "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True,
                          env=env).stdout


@pytest.fixture()
def ui_repo(tmp_path, monkeypatch) -> Path:
    """A git repository holding ``lab.yaml`` and ``taxonomy/`` with four of the project's leaves
    (one commit on ``main``); returns the repository directory."""
    repo = tmp_path / "repo"
    for leaf in LEAVES:
        shutil.copytree(REPO / "taxonomy" / leaf, repo / "taxonomy" / leaf)
    shutil.copy(REPO / "lab.yaml", repo / "lab.yaml")
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    git(repo, "config", "user.name", "t")
    git(repo, "config", "user.email", "t@example.org")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "taxonomy")
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@example.org")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@example.org")
    return repo


@dataclass
class Client:
    """Talks to a running `lab ui`: ``call(method, path, body)`` -> ``(status, json)``, with the
    token and a same-origin ``Origin`` unless ``headers`` override them (None drops a header)."""
    base: str
    url: str
    token: str
    root: Path

    def call(self, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None):
        hdrs = {"X-Lab-Token": self.token, "Origin": self.base}
        if body is not None or raw is not None:
            hdrs["Content-Type"] = "application/json"
        for k, v in (headers or {}).items():
            if v is None:
                hdrs.pop(k, None)
            else:
                hdrs[k] = v
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, payload, self.last_headers = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as err:
            status, payload, self.last_headers = err.code, err.read(), err.headers
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode("utf-8", "replace")


@pytest.fixture()
def ui(ui_repo):
    """A `lab ui` server on ``ui_repo/taxonomy`` with the scripted teacher; yields a :class:`Client`."""
    from lab_tools.config import load_config
    from lab_tools.ui.server import ServerThread, create_app

    root = ui_repo / "taxonomy"
    app = create_app(root, load_config(root), teacher="scripted:")
    with ServerThread(app) as srv:
        yield Client(base=srv.base, url=srv.url, token=app.state.ui.token, root=root)


def form_of(client: Client, leaf: str) -> dict:
    """The form the page gets for an existing ``leaf``."""
    status, data = client.call("GET", f"/api/leaf?path={leaf}")
    assert status == 200, data
    return data["form"]


def wait_preview(client: Client, job_id: str, timeout: float = 180) -> dict:
    """Poll a preview job until it is done or failed; returns its last view."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, job = client.call("GET", f"/api/preview/{job_id}")
        assert status == 200, job
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"preview {job_id} did not finish in {timeout} s")
