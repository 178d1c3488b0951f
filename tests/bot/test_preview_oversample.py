"""Issue 27.3: a preview delivers the samples per leaf it announces (new rounds with new request
seeds while filters drop candidates), and when it cannot, says why next to the count."""

from __future__ import annotations

import json

from tests.bot.conftest import skill_leaf

from lab_tools.bot.preview import build_preview
from lab_tools.bot.render import render_comment
from lab_tools.config import load_config

TOPICS = ("kindness", "honesty", "courage", "patience", "friendship")
FABLES = [(f"Tell me a fable about {t}.", f"A fox learned {t} from a crow one winter, and kept it all its life.")
          for t in TOPICS]
NOVEL = ("the river and the bridge", "a lantern in the harbor", "the desert at night", "a violin maker",
         "the glacier's last summer", "a market before dawn", "the orchard in spring", "a railway in the snow")


def _setup(pull_repo, tmp_path, attempts: int):
    """One changed leaf whose every question request lists three seed copies and one new fable
    request (which one depends on the request's seed): one sample per round at most."""
    replies = ["\n".join([*(f"{i + 1}. Tell me a fable about {t}." for i, t in enumerate(TOPICS[:3])),
                          f"4. Write a story about {n}."]) for n in NOVEL]
    script = tmp_path / "teacher.json"
    script.write_text(json.dumps({"skill_question": [{"reply": replies}]}), encoding="utf-8")
    (tmp_path / "cfg.yaml").write_text(
        f"generate:\n  teacher: 'scripted:{script}'\n  samples: 2\nbot:\n  samples: 2\n  max_attempts: {attempts}\n",
        encoding="utf-8")
    pull_repo.write_leaf("compositional_skills/writing/fables", skill_leaf("Write fables.", FABLES))
    pull_repo.commit("fables")
    return load_config(None, tmp_path / "cfg.yaml")


def test_preview_oversamples_until_it_has_the_samples_it_announces(pull_repo, tmp_path, cache_dir):
    cfg = _setup(pull_repo, tmp_path, attempts=4)
    preview = build_preview(pull_repo.taxonomy, cfg, base="main")
    (leaf,) = preview.leaves
    assert preview.failure is None and leaf.error is None
    assert len(leaf.samples) == 2 == preview.samples_per_leaf, leaf.stats
    assert leaf.attempts >= 2 and leaf.shortfall is None
    questions = [s["messages"][0]["content"] for s in leaf.samples]
    assert len(set(questions)) == 2 and not any("fable about" in q for q in questions)
    body = render_comment(preview)
    assert "2 samples per leaf" in body and "Short" not in body and "attempts" in body


def test_a_short_preview_says_which_filter_took_how_many(pull_repo, tmp_path, cache_dir):
    cfg = _setup(pull_repo, tmp_path, attempts=1)
    preview = build_preview(pull_repo.taxonomy, cfg, base="main")
    (leaf,) = preview.leaves
    assert len(leaf.samples) == 1
    assert leaf.shortfall.startswith("1 of 2 samples: dedup: near-duplicate of a seed example took 3")
    assert "bot.max_attempts" in leaf.shortfall
    body = render_comment(preview)
    assert "Short:" in body and "near-duplicate of a seed example took 3" in body
