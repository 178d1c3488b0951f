"""The PR comment names paths relative to the repository, never the runner's absolute paths."""

from __future__ import annotations

import html
import os

from click.testing import CliRunner
from tests.bot.conftest import OWNER_REPO, skill_leaf

from lab_tools.bot import bounded
from lab_tools.bot.cli import bot
from lab_tools.errors import LabError

LIMERICK = [(f"Write a limerick about {t}.", f"There once was a {t} so grand,\nwho wandered all over the land,\n"
             "it sang with a cheer,\nfor all who came near,\nand ended up leading the band.")
            for t in ("cat", "goat", "kettle", "river", "clock")]


def test_failure_message_paths_are_repository_relative(fake_github, pull_repo, cache_dir, monkeypatch):
    leaf = "compositional_skills/writing/poetry/limerick"
    qna = pull_repo.taxonomy / leaf / "qna.yaml"

    def boom(*args, **kwargs):
        raise LabError(f"shard cache unwritable: {cache_dir / 'sdg' / 'ab'}", file=str(qna.resolve()), line=3)

    monkeypatch.setattr(bounded, "generate_dataset", boom)
    pull_repo.write_leaf(leaf, skill_leaf("Write limericks.", LIMERICK))
    pull_repo.commit("add limerick")
    args = ["preview", "--repo", OWNER_REPO, "--pr", "7", "--taxonomy", str(pull_repo.taxonomy),
            "--config", str(pull_repo.path.parent / "trusted.yaml")]
    result = CliRunner().invoke(bot, args, catch_exceptions=False)
    assert result.exit_code == 1
    body = html.unescape(next(iter(fake_github.comments.values()))["body"])
    rel = qna.resolve().relative_to(pull_repo.path.resolve()).as_posix()
    assert f"{rel}:3: shard cache unwritable: <cache>/sdg/ab" in body
    for private in (str(pull_repo.path), str(pull_repo.path.resolve()), str(cache_dir), os.path.expanduser("~") + "/"):
        assert private not in body, private
