"""Fixtures for the bot: a fake GitHub REST API (pytest-httpserver) and a local git repository
whose checked-out branch plays the pull request head."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from werkzeug import Request, Response

OWNER_REPO = "octo/taxonomy"
BOT = {"login": "github-actions[bot]", "type": "Bot"}


@dataclass
class FakeGitHub:
    """In-memory state behind the endpoints the bot uses; ``calls`` lists (method, path) in order."""
    base: str
    pr_number: int = 7
    head_sha: str = "0" * 40
    comments: dict[int, dict] = field(default_factory=dict)
    statuses: list[tuple[str, dict]] = field(default_factory=list)
    permissions: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    next_id: int = 1000
    # who the token is: an app installation token (GitHub Actions) is refused by GET /user and
    # answered by GraphQL's viewer (login without "[bot]"); a user token is answered by GET /user
    token_user: dict | None = None
    viewer_login: str | None = "github-actions"
    author: dict = field(default_factory=lambda: dict(BOT))  # who comments the fake posts are by

    def url(self, path: str) -> str:
        return self.base + path

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p in self.calls if m == method and re.fullmatch(pattern, p))

    def add_comment(self, body: str, user: dict) -> dict:
        self.next_id += 1
        c = {"id": self.next_id, "body": body, "user": user,
             "url": self.url(f"/repos/{OWNER_REPO}/issues/comments/{self.next_id}"),
             "html_url": f"https://github.example/{OWNER_REPO}/pull/{self.pr_number}#c{self.next_id}"}
        self.comments[self.next_id] = c
        return c

    # --- handlers -------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        self.calls.append((request.method, request.path))
        path, method = request.path, request.method
        repo = f"/repos/{OWNER_REPO}"
        if path == "/user" and method == "GET":
            if self.token_user is None:
                return _json({"message": "Resource not accessible by integration"}, 403)
            return _json(self.token_user)
        if path == "/graphql" and method == "POST":
            if self.viewer_login is None:
                return _json({"message": "Resource not accessible by integration"}, 403)
            return _json({"data": {"viewer": {"login": self.viewer_login}}})
        if path == repo and method == "GET":
            return _json({"id": 1, "name": "taxonomy", "full_name": OWNER_REPO, "url": self.url(repo)})
        if m := re.fullmatch(rf"{repo}/pulls/(\d+)", path):
            n = int(m.group(1))
            if n != self.pr_number:
                return _json({"message": "Not Found"}, 404)
            return _json({"number": n, "url": self.url(f"{repo}/pulls/{n}"),
                          "issue_url": self.url(f"{repo}/issues/{n}"),
                          "html_url": f"https://github.example/{OWNER_REPO}/pull/{n}",
                          "user": {"login": "contributor", "type": "User"},
                          "head": {"sha": self.head_sha, "ref": "pr"}, "base": {"sha": "1" * 40, "ref": "main"}})
        if re.fullmatch(rf"{repo}/issues/{self.pr_number}/comments", path):
            if method == "GET":
                return _json(list(self.comments.values()))
            if method == "POST":
                return _json(self.add_comment(json.loads(request.data)["body"], self.author), 201)
        if (m := re.fullmatch(rf"{repo}/issues/comments/(\d+)", path)) and method == "PATCH":
            c = self.comments.get(int(m.group(1)))
            if c is None or c["user"] != self.author:
                return _json({"message": "Forbidden"}, 403)
            c["body"] = json.loads(request.data)["body"]
            return _json(c)
        if (m := re.fullmatch(rf"{repo}/statuses/([0-9a-f]+)", path)) and method == "POST":
            payload = json.loads(request.data)
            self.statuses.append((m.group(1), payload))
            return _json({"id": len(self.statuses), **payload}, 201)
        if m := re.fullmatch(rf"{repo}/collaborators/([^/]+)/permission", path):
            perm = self.permissions.get(m.group(1), "read")
            return _json({"permission": perm, "user": {"login": m.group(1)}})
        return _json({"message": "Not Found"}, 404)


def _json(data, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json")


@pytest.fixture()
def fake_github(httpserver, monkeypatch) -> FakeGitHub:
    """A fake GitHub answering every path; GITHUB_API_URL / GITHUB_TOKEN point the bot at it."""
    fake = FakeGitHub(base=httpserver.url_for("").rstrip("/"))
    httpserver.expect_request(re.compile(".*")).respond_with_handler(fake.handle)
    monkeypatch.setenv("GITHUB_API_URL", fake.base)
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    for var in ("GITHUB_SERVER_URL", "GITHUB_RUN_ID", "GITHUB_REPOSITORY", "GITHUB_EVENT_PATH"):
        monkeypatch.delenv(var, raising=False)
    return fake


def skill_leaf(task: str, pairs: list[tuple[str, str]]) -> str:
    """A version-3 compositional skill ``qna.yaml`` (InstructLab format) with the given seed pairs."""
    lines = ["version: 3", f"task_description: {json.dumps(task)}", "created_by: tester", "seed_examples:"]
    for q, a in pairs:
        lines += [f"  - question: {json.dumps(q)}", f"    answer: {json.dumps(a)}"]
    return "\n".join(lines) + "\n"


ATTRIBUTION = ("Title of work: test leaf\nLink to work: https://example.org/leaf\n"
               "License of the work: CC-BY-4.0\nCreator names: Tester\n")

HAIKU = [(f"Write a haiku about {t}.", f"{t.capitalize()} in the light,\nquiet {t} breathing slow,\n"
          f"the day folds its hands.") for t in ("rain", "snow", "autumn leaves", "the sea", "a mountain")]


class PullRepo:
    """A git repository in a temporary directory: ``main`` holds one leaf, ``pr`` is checked out."""

    def __init__(self, path: Path):
        self.path = path
        self.taxonomy = path / "taxonomy"

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.path), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    def write_leaf(self, rel: str, qna: str, attribution: str | None = ATTRIBUTION) -> None:
        d = self.taxonomy / rel
        d.mkdir(parents=True, exist_ok=True)
        (d / "qna.yaml").write_text(qna, encoding="utf-8")
        if attribution is not None:
            (d / "attribution.txt").write_text(attribution, encoding="utf-8")

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    @property
    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


@pytest.fixture()
def pull_repo(tmp_path) -> PullRepo:
    """A repository with one valid leaf on ``main`` and a checked-out ``pr`` branch (no changes yet);
    ``trusted.yaml`` next to it is the base branch's settings (scripted teacher, 2 samples)."""
    repo = PullRepo(tmp_path / "repo")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    repo.git("config", "user.email", "t@example.org")
    repo.git("config", "user.name", "Tester")
    repo.git("config", "commit.gpgsign", "false")
    repo.write_leaf("compositional_skills/writing/poetry/haiku", skill_leaf("Write haiku.", HAIKU))
    repo.commit("base")
    repo.git("checkout", "-q", "-b", "pr")
    (tmp_path / "trusted.yaml").write_text(
        "generate:\n  teacher: 'scripted:'\n  samples: 2\nbot:\n  samples: 2\n", encoding="utf-8")
    return repo
