"""The bot end to end: real PyGithub against a fake GitHub REST API, a local git repository as the PR."""

from __future__ import annotations

import json

from click.testing import CliRunner
from tests.bot.conftest import OWNER_REPO, skill_leaf
from markdown_it import MarkdownIt

from lab_tools.bot import bounded
from lab_tools.bot.cli import bot
from lab_tools.bot.render import MARKER

COMMENTS = rf"/repos/{OWNER_REPO}/issues/7/comments"
PATCH = rf"/repos/{OWNER_REPO}/issues/comments/\d+"

LIMERICK = [(f"Write a limerick about {t}.", f"There once was a {t} so grand,\nwho wandered all over the land,\n"
             "it sang with a cheer,\nfor all who came near,\nand ended up leading the band.")
            for t in ("cat", "goat", "kettle", "river", "clock")]


def preview(pull_repo, *extra):
    """``lab bot preview`` for PR 7 on the checked-out repository with the trusted config."""
    args = ["preview", "--repo", OWNER_REPO, "--pr", "7", "--taxonomy", str(pull_repo.taxonomy),
            "--config", str(pull_repo.path.parent / "trusted.yaml"), *extra]
    return CliRunner().invoke(bot, args, catch_exceptions=False)


def states(fake, sha):
    return [payload["state"] for s, payload in fake.statuses if s == sha]


def test_first_push_posts_once_then_edits_in_place(fake_github, pull_repo, cache_dir):
    pull_repo.write_leaf("compositional_skills/writing/poetry/limerick", skill_leaf("Write limericks.", LIMERICK))
    sha1 = pull_repo.commit("add limerick")
    result = preview(pull_repo)
    assert result.exit_code == 0, result.output
    assert fake_github.count("POST", COMMENTS) == 1 and fake_github.count("PATCH", PATCH) == 0
    assert states(fake_github, sha1) == ["pending", "success"]
    assert all(p["context"] == "lab/preview" for _, p in fake_github.statuses)
    (comment,) = fake_github.comments.values()
    body = comment["body"]
    assert body.startswith(MARKER) and "limerick" in body and "haiku" not in body  # only the changed leaf
    assert "<details>" in body and "teacher" in body and "kept" in body

    # second push: the same comment is edited, never a second one
    pull_repo.write_leaf("compositional_skills/writing/poetry/limerick",
                         skill_leaf("Write funny limericks.", LIMERICK))
    sha2 = pull_repo.commit("tweak limerick")
    result = preview(pull_repo)
    assert result.exit_code == 0, result.output
    assert fake_github.count("POST", COMMENTS) == 1 and fake_github.count("PATCH", PATCH) == 1
    assert len(fake_github.comments) == 1
    assert states(fake_github, sha2) == ["pending", "success"]
    assert sha2[:12] in fake_github.comments[comment["id"]]["body"]


def test_a_marker_pasted_by_a_person_is_not_taken_over(fake_github, pull_repo, cache_dir):
    fake_github.add_comment(f"{MARKER} fake", {"login": "mallory", "type": "User"})
    pull_repo.write_leaf("compositional_skills/writing/poetry/limerick", skill_leaf("Write limericks.", LIMERICK))
    pull_repo.commit("add limerick")
    assert preview(pull_repo, "--validate-only").exit_code == 0
    assert fake_github.count("POST", COMMENTS) == 1 and fake_github.count("PATCH", PATCH) == 0


def test_invalid_leaf_shows_file_line_and_fails(fake_github, pull_repo, cache_dir):
    pull_repo.write_leaf("compositional_skills/writing/poetry/broken",
                         "version: 3\ntask_description: broken\ncreated_by: tester\nseed_examples:\n"
                         "  - question: only one\n")
    sha = pull_repo.commit("add broken leaf")
    result = preview(pull_repo)
    assert result.exit_code == 1
    assert states(fake_github, sha) == ["pending", "failure"]
    (comment,) = fake_github.comments.values()
    body = comment["body"]
    # file:line relative to the repository top, as in the PR's diff (markdown specials are entities)
    assert "taxonomy/compositional&#95;skills/writing/poetry/broken/qna.yaml:5" in body
    assert "seed&#95;examples" in body and "errors found" in body


def test_failure_inside_generation_still_comments(fake_github, pull_repo, cache_dir, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("the teacher fell over")

    monkeypatch.setattr(bounded, "generate_dataset", boom)
    pull_repo.write_leaf("compositional_skills/writing/poetry/limerick", skill_leaf("Write limericks.", LIMERICK))
    sha = pull_repo.commit("add limerick")
    result = preview(pull_repo)
    assert result.exit_code == 1
    assert states(fake_github, sha) == ["pending", "failure"]
    body = next(iter(fake_github.comments.values()))["body"]
    assert "What failed" in body and "generate" in body and "the teacher fell over" in body


def test_hostile_leaf_is_rendered_inert(fake_github, pull_repo, cache_dir):
    evil = [(f"<img src=x onerror=alert({i})> [click](https://evil.example/{i}) ![p](https://evil.example/p.png) "
             f"@someone please review ```` </details>", f"<script>alert({i})</script> @someone **bold**")
            for i in range(5)]
    pull_repo.write_leaf("compositional_skills/writing/poetry/evil_<b>x</b>",
                         skill_leaf("Hi @someone <b>bold</b> [x](https://evil.example)", evil))
    pull_repo.commit("hostile leaf")
    preview(pull_repo)
    body = next(iter(fake_github.comments.values()))["body"]
    rendered = MarkdownIt("commonmark", {"html": True}).render(body)
    assert "@someone" not in body
    assert "<img" not in rendered and "<script" not in rendered and "<b>" not in rendered
    assert "evil.example" not in "".join(a for a in rendered.split("<a ")[1:])  # no link to it
    assert rendered.count("<details") == rendered.count("</details>")


def _comment_event(tmp_path, user: str, body: str) -> str:
    event = {"action": "created", "repository": {"full_name": OWNER_REPO},
             "issue": {"number": 7, "pull_request": {"url": "x"}},
             "comment": {"body": body, "user": {"login": user, "type": "User"}}}
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    return str(path)


def test_command_from_reader_is_refused(fake_github, pull_repo, cache_dir, tmp_path):
    fake_github.permissions["visitor"] = "read"
    event = _comment_event(tmp_path, "visitor", "/lab preview")
    result = CliRunner().invoke(bot, ["command", "--event", event, "--taxonomy", str(pull_repo.taxonomy),
                                      "--config", str(pull_repo.path.parent / "trusted.yaml")],
                                catch_exceptions=False)
    assert result.exit_code == 0 and "refused" in result.output
    assert fake_github.statuses == []  # nothing ran
    (reply,) = fake_github.comments.values()
    assert "write access" in reply["body"] and MARKER not in reply["body"]
    assert fake_github.count("GET", rf"/repos/{OWNER_REPO}/collaborators/visitor/permission") == 1


def test_command_from_writer_runs_validate(fake_github, pull_repo, cache_dir, tmp_path):
    fake_github.permissions["maintainer"] = "write"
    pull_repo.write_leaf("compositional_skills/writing/poetry/limerick", skill_leaf("Write limericks.", LIMERICK))
    sha = pull_repo.commit("add limerick")
    event = _comment_event(tmp_path, "maintainer", "Looks fine.\n/lab validate")
    result = CliRunner().invoke(bot, ["command", "--event", event, "--taxonomy", str(pull_repo.taxonomy),
                                      "--config", str(pull_repo.path.parent / "trusted.yaml")],
                                catch_exceptions=False)
    assert result.exit_code == 0 and "validate" in result.output
    assert states(fake_github, sha) == ["pending", "success"]
    body = next(iter(fake_github.comments.values()))["body"]
    assert "lab validate" in body and "<details>" not in body  # checks only, no samples


def test_dry_run_prints_the_comment_without_github(pull_repo, cache_dir, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")  # nothing listens there
    pull_repo.write_leaf("compositional_skills/writing/poetry/limerick", skill_leaf("Write limericks.", LIMERICK))
    pull_repo.commit("add limerick")
    result = CliRunner().invoke(bot, ["preview", "--pr", "7", "--dry-run", "--validate-only", "--base", "main",
                                      "--taxonomy", str(pull_repo.taxonomy),
                                      "--config", str(pull_repo.path.parent / "trusted.yaml")],
                                catch_exceptions=False)
    assert result.exit_code == 0
    assert result.output.startswith(MARKER) and "limerick" in result.output
