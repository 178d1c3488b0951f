"""Issue 23.8: the bot edits only its own comment, identified by the token's login from the API
(``GET /user``, or GraphQL ``viewer`` for an app installation token), never by author type."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from tests.bot.conftest import OWNER_REPO, fake_github, pull_repo, skill_leaf  # noqa: F401 -- fixtures

from lab_tools.bot.cli import bot
from lab_tools.bot.github import GitHubClient
from lab_tools.bot.render import MARKER
from lab_tools.errors import LabError

PATCH = rf"/repos/{OWNER_REPO}/issues/comments/\d+"
COMMENTS = rf"/repos/{OWNER_REPO}/issues/7/comments"
OTHER_APP = {"login": "other-app[bot]", "type": "Bot"}
LIMERICK = [(f"Write a limerick about {t}.", f"There once was a {t} on a hill,\nwho never could ever keep still,\n"
             "it hopped and it spun,\nit had so much fun,\nand it's probably hopping there still.")
            for t in ("cat", "goat", "kettle", "river", "clock")]


def test_another_apps_comment_with_our_marker_is_left_alone(fake_github, pull_repo, cache_dir):
    """Installation token (GET /user refused): another app's comment holding our marker, listed
    first, is not overwritten; our own earlier comment is edited in place."""
    other = fake_github.add_comment(f"{MARKER} planted by another app", OTHER_APP)
    ours = fake_github.add_comment(f"{MARKER} our old preview", {"login": "github-actions[bot]", "type": "Bot"})
    pull_repo.write_leaf("compositional_skills/writing/poetry/limerick", skill_leaf("Write limericks.", LIMERICK))
    pull_repo.commit("add limerick")
    result = CliRunner().invoke(bot, ["preview", "--repo", OWNER_REPO, "--pr", "7", "--taxonomy",
                                      str(pull_repo.taxonomy), "--validate-only", "--config",
                                      str(pull_repo.path.parent / "trusted.yaml")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert fake_github.comments[other["id"]]["body"] == f"{MARKER} planted by another app"
    assert fake_github.comments[ours["id"]]["body"] != f"{MARKER} our old preview"
    assert fake_github.count("PATCH", PATCH) == 1 and fake_github.count("POST", COMMENTS) == 0
    assert fake_github.count("POST", "/graphql") == 1  # asked once, not once per comment


def test_only_another_apps_marker_means_a_new_comment(fake_github):
    other = fake_github.add_comment(f"{MARKER} planted", OTHER_APP)
    gh = GitHubClient(OWNER_REPO)
    cid, created = gh.upsert_comment(7, f"{MARKER} fresh")
    assert created and cid != other["id"]
    assert fake_github.comments[other["id"]]["body"] == f"{MARKER} planted"


def test_a_user_token_owns_its_comments_and_not_a_bots(fake_github):
    """A personal token answers GET /user: its own comments (a User, not a Bot) are ours, a
    Bot-type author's comment with the marker is not."""
    me = {"login": "lab-bot", "type": "User"}
    fake_github.token_user, fake_github.author = me, me
    bots = fake_github.add_comment(f"{MARKER} a bot's", {"login": "github-actions[bot]", "type": "Bot"})
    ours = fake_github.add_comment(f"{MARKER} ours", me)
    gh = GitHubClient(OWNER_REPO)
    assert gh.login() == "lab-bot"
    cid, created = gh.upsert_comment(7, f"{MARKER} updated")
    assert (cid, created) == (ours["id"], False)
    assert fake_github.comments[ours["id"]]["body"] == f"{MARKER} updated"
    assert fake_github.comments[bots["id"]]["body"] == f"{MARKER} a bot's"
    assert fake_github.count("POST", "/graphql") == 0


def test_a_lookalike_user_login_is_not_the_app(fake_github):
    """The app's login is ``github-actions`` per GraphQL; a *User* named like it is not us, and
    neither is a Bot whose login merely starts the same."""
    fake_github.add_comment(f"{MARKER} x", {"login": "github-actions", "type": "Bot"})  # exact: ours
    gh = GitHubClient(OWNER_REPO)
    assert gh._is_ours(_comment(f"{MARKER}", "github-actions[bot]", "Bot"))
    assert not gh._is_ours(_comment(f"{MARKER}", "github-actions[bot]", "User"))
    assert not gh._is_ours(_comment(f"{MARKER}", "github-actions-x[bot]", "Bot"))
    assert not gh._is_ours(_comment("no marker", "github-actions[bot]", "Bot"))


def test_no_login_from_the_api_needs_bot_login(fake_github):
    fake_github.viewer_login = None  # both GET /user and GraphQL refuse
    fake_github.add_comment(f"{MARKER} planted", OTHER_APP)
    with pytest.raises(LabError, match="bot.login"):
        GitHubClient(OWNER_REPO).upsert_comment(7, f"{MARKER} new")
    assert fake_github.count("POST", COMMENTS) == 0  # nothing written on a guess
    gh = GitHubClient(OWNER_REPO, bot_login="github-actions[bot]")
    assert gh.upsert_comment(7, f"{MARKER} new")[1] is True  # the other app's comment is not ours


def _comment(body: str, login: str, type_: str):
    class User:
        pass

    class Comment:
        pass
    u, c = User(), Comment()
    u.login, u.type = login, type_
    c.body, c.user = body, u
    return c
