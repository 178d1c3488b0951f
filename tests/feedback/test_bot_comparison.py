"""The bot's preview shows one synthetic comparison per changed leaf when feedback is enabled,
escaped like everything else that a pull request can influence."""

from __future__ import annotations

from lab_tools.bot.preview import build_preview
from lab_tools.bot.render import LeafView, render_comment, render_leaf
from lab_tools.config import load_config
from tests.bot.conftest import HAIKU, pull_repo, skill_leaf  # noqa: F401  (pull_repo is a fixture)

LIMERICK = [(f"Write a limerick about {t}.", f"There once was a {t} from the coast,\nwho liked the warm sun the most.")
            for t in ("a cat", "a dog", "a fox", "an owl", "a crab")]


def test_preview_shows_one_comparison_per_changed_leaf(pull_repo, cache_dir):  # noqa: F811
    pull_repo.write_leaf("compositional_skills/writing/poetry/limerick", skill_leaf("Write limericks.", LIMERICK))
    pull_repo.commit("add limerick")
    trusted = pull_repo.path.parent / "trusted.yaml"
    trusted.write_text(trusted.read_text() + "feedback:\n  enabled: true\n  min_chars: 20\n")
    cfg = load_config(None, trusted)
    preview = build_preview(pull_repo.taxonomy, cfg, base="main")
    assert preview.failure is None, preview.failure
    (leaf,) = preview.leaves
    assert leaf.comparison is not None
    md = leaf.comparison["metadata"]
    assert md["leaf"] == leaf.path and md["ranks"]["chosen"] < md["ranks"]["rejected"]
    body = render_comment(preview)
    assert "synthetic comparison" in body and md["chosen_config"].replace("-", "") in body.replace("-", "")


def test_preview_without_feedback_shows_no_comparison(pull_repo, cache_dir):  # noqa: F811
    pull_repo.write_leaf("compositional_skills/writing/poetry/limerick", skill_leaf("Write limericks.", LIMERICK))
    pull_repo.commit("add limerick")
    preview = build_preview(pull_repo.taxonomy, load_config(None, pull_repo.path.parent / "trusted.yaml"), base="main")
    assert preview.leaves[0].comparison is None and "synthetic comparison" not in render_comment(preview)


def test_comparison_text_is_escaped():
    hostile = "<img src=x onerror=alert(1)> @maintainers see #12 ```` end"
    row = {"prompt": [{"role": "user", "content": hostile}],
           "chosen": [{"role": "assistant", "content": "fine ``` answer"}],
           "rejected": [{"role": "assistant", "content": "[link](https://evil.example)"}],
           "metadata": {"chosen_config": "<b>leaf</b>", "rejected_config": "raw_0shot", "ranks": {"chosen": 0, "rejected": 2}}}
    out = render_leaf(LeafView(path="compositional_skills/x", kind="compositional_skills", comparison=row,
                               stats={"generated": 1, "kept": 1}))
    assert "<b>leaf</b>" not in out and "&#60;b&#62;leaf" in out  # configuration names are escaped
    assert "@\u200dmaintainers" in out and "#\u200d12" in out  # no mention, no issue link
    assert "`````" in out  # the fence is longer than the backtick run inside
    assert "https://evil" not in out
