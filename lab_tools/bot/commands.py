"""Comment commands on pull requests: ``/lab preview`` and ``/lab validate``.

Read from an ``issue_comment`` event (the JSON file at ``$GITHUB_EVENT_PATH`` in Actions). A command
is honoured only when its author has write permission on the repository (admin, maintain or
write) or is a member of the configured team (``bot.write_team: ORG/SLUG``); anyone else gets a
polite refusal. Comments by bots are ignored, so the bot never answers itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab_tools.bot.preview import run_preview
from lab_tools.bot.render import inline

#: the sub-commands understood after ``/lab``
KNOWN = ("preview", "validate")
_COMMAND = re.compile(r"^\s*/lab(?:\s+(\S+))?\s*$")


def parse_command(body: str | None) -> str | None:
    """The sub-command of the first line of ``body`` that reads ``/lab <word>``; ``""`` for a bare
    ``/lab``; None when no line is a command. Unknown words are returned as written (lower-case)."""
    for line in (body or "").splitlines():
        m = _COMMAND.match(line)
        if m:
            return (m.group(1) or "").lower()
    return None


@dataclass
class CommentEvent:
    """The fields of an ``issue_comment`` event the bot uses: ``repo`` (OWNER/NAME), ``pr`` number,
    ``user`` login, ``user_type`` (``User``|``Bot``), ``body``, ``is_pull`` (the issue is a PR)."""
    repo: str
    pr: int
    user: str
    user_type: str
    body: str
    is_pull: bool


def read_event(data: dict) -> CommentEvent:
    """A :class:`CommentEvent` from the parsed event payload. Raises KeyError on a payload that is
    not an ``issue_comment`` event."""
    comment, issue = data["comment"], data["issue"]
    user = comment.get("user") or {}
    return CommentEvent(repo=data["repository"]["full_name"], pr=int(issue["number"]),
                        user=str(user.get("login", "")), user_type=str(user.get("type", "User")),
                        body=str(comment.get("body") or ""), is_pull=bool(issue.get("pull_request")))


def refusal(user: str, command: str, team: str | None) -> str:
    """The polite reply to a command from someone without write access."""
    who = "people with write access to this repository" + (
        f" or members of <code>{inline(team, 100)}</code>" if team else "")
    return (f"Thanks, <code>{inline(user, 60)}</code>! <code>/lab {inline(command, 30)}</code> can only be "
            f"run by {who}, so I did not run it. The preview runs by itself on every push to this pull "
            "request, and a maintainer can ask for a fresh one at any time.")


def help_reply(command: str) -> str:
    """The reply to an unknown ``/lab`` sub-command."""
    return (f"I do not know <code>/lab {inline(command, 30)}</code>. Available: "
            "<code>/lab preview</code> (checks and a small generation), <code>/lab validate</code> "
            "(checks only).")


def handle_comment(gh, event: CommentEvent, root: str | Path, cfg, **preview_kwargs) -> str:
    """Act on one comment: returns what happened, one of ``ignored`` (no command, not a PR, a bot),
    ``refused``, ``unknown``, ``preview`` or ``validate``.

    ``gh``: a :class:`lab_tools.bot.github.GitHubClient`; ``preview_kwargs`` go to
    :func:`lab_tools.bot.preview.run_preview`. Raises LabError on GitHub API failures."""
    command = parse_command(event.body)
    if command is None or not event.is_pull or event.user_type == "Bot":
        return "ignored"
    team = cfg.bot.write_team
    if not gh.can_write(event.user, team):
        gh.reply(event.pr, refusal(event.user, command or "", team))
        return "refused"
    if command not in KNOWN:
        gh.reply(event.pr, help_reply(command))
        return "unknown"
    run_preview(gh, event.pr, root, cfg, mode=command, **preview_kwargs)
    return command
