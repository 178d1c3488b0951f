"""The bot's GitHub layer (PyGithub): the one sticky comment, commit statuses, write permission.

REST endpoints used (and nothing else, so a test server can answer them all):
``GET /repos/{o}/{r}``, ``GET /repos/{o}/{r}/pulls/{n}``, ``GET|POST /repos/{o}/{r}/issues/{n}/comments``,
``PATCH /repos/{o}/{r}/issues/comments/{id}``, ``POST /repos/{o}/{r}/statuses/{sha}``,
``GET /repos/{o}/{r}/collaborators/{user}/permission`` and, only when a write team is configured,
``GET /orgs/{org}/teams/{slug}`` + ``GET /teams/{id}/memberships/{user}``; and, to know which
comments are our own, ``GET /user`` (the token's login) or, for an app installation token (GitHub
Actions' ``GITHUB_TOKEN``, which ``GET /user`` refuses with 403), ``POST /graphql`` ``{ viewer {
login } }``.

As in GitHub Actions, the API base comes from ``GITHUB_API_URL`` and the token from ``GITHUB_TOKEN``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lab_tools.bot.render import MARKER
from lab_tools.errors import LabError

#: the commit status context the bot sets on the PR head
STATUS_CONTEXT = "lab/preview"
#: ``permission`` values of the collaborator-permission endpoint that count as write access
WRITE_PERMISSIONS = ("admin", "maintain", "write")


@dataclass
class PullInfo:
    """What the bot needs from a pull request: ``number``, ``head_sha``, ``base_ref`` (branch name),
    ``author`` (login), ``url`` (HTML URL)."""
    number: int
    head_sha: str
    base_ref: str
    author: str
    url: str = ""


def _github_error(exc: Exception, what: str) -> LabError:
    status = getattr(exc, "status", None)
    data = getattr(exc, "data", None)
    msg = data.get("message") if isinstance(data, dict) else str(exc)
    return LabError(f"GitHub API: {what} failed ({status}): {msg}", field="github")


class GitHubClient:
    """A repository on GitHub (or GitHub Enterprise, or a test server).

    Args:
        repo: ``OWNER/NAME``.
        token: API token (default ``$GITHUB_TOKEN``).
        base_url: REST API base (default ``$GITHUB_API_URL``, else ``https://api.github.com``).
        bot_login: login of the account the bot comments as when the API cannot tell
            (:meth:`login`); the API's answer wins when there is one.

    Our sticky comment is the one with :data:`MARKER` written by the token's own account
    (:meth:`login`), never one picked by author type: another app's or a person's comment with the
    marker pasted in is left alone.

    Raises:
        LabError: no token, or the repository cannot be read.
    """

    def __init__(self, repo: str, token: str | None = None, base_url: str | None = None,
                 bot_login: str | None = None):
        from github import Auth, Github, GithubException

        token = token or os.environ.get("GITHUB_TOKEN")
        if not token:
            raise LabError("no GitHub token: set GITHUB_TOKEN", field="GITHUB_TOKEN")
        base_url = (base_url or os.environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
        self._gh = Github(base_url=base_url, auth=Auth.Token(token), retry=None, timeout=30)
        self.bot_login = bot_login
        self._login: str | None = None
        self._pulls: dict[int, object] = {}
        try:
            self.repo = self._gh.get_repo(repo)
            self.repo_name = self.repo.full_name
        except GithubException as exc:
            raise _github_error(exc, f"reading repository {repo}") from exc

    def _pull(self, number: int):
        # one GET per pull request per run
        if number not in self._pulls:
            self._pulls[number] = self.repo.get_pull(number)
        return self._pulls[number]

    def pull(self, number: int) -> PullInfo:
        """The pull request ``number``. Raises LabError when it cannot be read."""
        from github import GithubException

        try:
            pr = self._pull(number)
            return PullInfo(number=number, head_sha=pr.head.sha, base_ref=pr.base.ref,
                            author=pr.user.login if pr.user else "", url=pr.html_url or "")
        except GithubException as exc:
            raise _github_error(exc, f"reading pull request #{number}") from exc

    def login(self) -> str:
        """The login the token comments as, asked once per client: ``GET /user``
        (PyGithub ``get_user().login``: a personal or a user token), else, for an app installation
        token, GraphQL ``viewer.login`` (``github-actions`` or ``<app-slug>``, shown on comments as
        ``github-actions[bot]`` / ``<app-slug>[bot]``), else the configured ``bot.login``.

        Raises:
            LabError: the API names no login and ``bot.login`` is not set (the bot would otherwise
                have to guess whose comment to edit).
        """
        from github import GithubException

        if self._login is None:
            try:
                self._login = self._gh.get_user().login
            except GithubException as exc:
                if getattr(exc, "status", None) not in (401, 403, 404):
                    raise _github_error(exc, "reading the token's own login (GET /user)") from exc
                self._login = self._viewer_login() or self.bot_login
            if not self._login:
                raise LabError("cannot tell which account this token comments as (GET /user and the "
                               "GraphQL viewer both refused): set bot.login in lab.yaml", field="bot.login")
        return self._login

    def _viewer_login(self) -> str | None:
        """GraphQL ``viewer { login }`` (answered for app installation tokens), or None."""
        from github import GithubException

        try:  # PyGithub's GraphQL endpoint: API base without /v3, plus /graphql (GHES too)
            _, data = self._gh.requester.graphql_query("query { viewer { login } }", {})
        except GithubException:
            return None
        login = (((data or {}).get("data") or {}).get("viewer") or {}).get("login")
        return str(login) if login else None

    def _is_ours(self, comment) -> bool:
        """A comment is ours when it holds :data:`MARKER` and its author is the token's account
        (:meth:`login`); an app's comments carry its login with ``[bot]`` appended, which only an
        app can have (logins of people cannot hold brackets), so that form counts for a Bot."""
        if MARKER not in (comment.body or ""):
            return False
        user = comment.user
        if user is None:
            return False
        me = self.login()
        author = user.login or ""
        return author == me or (user.type == "Bot" and author == f"{me}[bot]")

    def find_comment(self, number: int):
        """The bot's sticky comment on PR ``number`` (PyGithub IssueComment) or None."""
        from github import GithubException

        try:
            return next((c for c in self._pull(number).get_issue_comments() if self._is_ours(c)), None)
        except GithubException as exc:
            raise _github_error(exc, f"listing comments of #{number}") from exc

    def upsert_comment(self, number: int, body: str) -> tuple[int, bool]:
        """Edit the sticky comment in place, or create it when there is none.

        Returns ``(comment_id, created)``. ``body`` must contain :data:`MARKER`.
        Raises LabError on an API failure."""
        from github import GithubException

        assert MARKER in body, "the sticky comment needs its marker"
        existing = self.find_comment(number)
        try:
            if existing is not None:
                existing.edit(body)
                return existing.id, False
            created = self._pull(number).create_issue_comment(body)
            return created.id, True
        except GithubException as exc:
            raise _github_error(exc, f"writing the comment on #{number}") from exc

    def reply(self, number: int, body: str) -> int:
        """Post a plain (non-sticky) comment, e.g. a refusal. Returns its id."""
        from github import GithubException

        try:
            return self._pull(number).create_issue_comment(body).id
        except GithubException as exc:
            raise _github_error(exc, f"replying on #{number}") from exc

    def set_status(self, sha: str, state: str, description: str, target_url: str | None = None) -> None:
        """Set the ``lab/preview`` commit status on ``sha``.

        ``state``: pending|success|failure|error; ``description`` is cut to GitHub's 140 characters."""
        from github import GithubException

        assert state in ("pending", "success", "failure", "error"), state
        commit = self._gh.withLazy(True).get_repo(self.repo_name).get_commit(sha)  # no GET of the commit
        kwargs = {"state": state, "description": description[:140], "context": STATUS_CONTEXT}
        if target_url:
            kwargs["target_url"] = target_url
        try:
            commit.create_status(**kwargs)
        except GithubException as exc:
            raise _github_error(exc, f"setting status {state} on {sha[:12]}") from exc

    def can_write(self, user: str, team: str | None = None) -> bool:
        """True when ``user`` has admin/maintain/write permission on the repository, or is an
        active member of ``team`` (``ORG/SLUG``). Unknown users and API refusals count as False."""
        from github import GithubException

        try:
            if self.repo.get_collaborator_permission(user) in WRITE_PERMISSIONS:
                return True
        except GithubException:
            pass
        if team and "/" in team:
            org, slug = team.split("/", 1)
            try:
                membership = self._gh.get_organization(org).get_team_by_slug(slug).get_team_membership(user)
                return membership.state == "active"
            except GithubException:
                return False
        return False


def run_url() -> str | None:
    """The URL of the current GitHub Actions run, from ``GITHUB_SERVER_URL``, ``GITHUB_REPOSITORY``
    and ``GITHUB_RUN_ID``; None outside Actions."""
    server, repo, run = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None
