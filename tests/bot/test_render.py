"""The comment renderer: untrusted text stays inert, fences hold, the size limit is kept."""

from __future__ import annotations

import html
import re

from markdown_it import MarkdownIt

from lab_tools.bot.commands import parse_command
from lab_tools.bot.render import (GITHUB_LIMIT, MARKER, ZWJ, FindingView, LeafView, Preview, code_block,
                                  inline, render_comment)

HOSTILE = ('<img src=x onerror=alert(1)> <script>alert(2)</script> [click me](https://evil.example/x) '
           '![pixel](https://evil.example/p.png) @someone @org/team #12 **bold** `code` </details> '
           'www.evil.example | a | b |')


def to_html(md: str) -> str:
    """Render like GitHub would for our purposes: CommonMark with raw HTML allowed, tables on."""
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(md)


def test_inline_is_inert_and_keeps_the_text():
    out = inline(HOSTILE, limit=10_000)
    rendered = to_html(f"- {out}")
    assert "<img" not in rendered and "<script" not in rendered and "<a " not in rendered
    assert "<strong>" not in rendered and "<code>" not in rendered and "</details>" not in rendered
    assert "@someone" not in out and not re.search(r"(?<!&)#12", out)
    # nothing is lost: decoding entities and removing the joiners gives the text back
    assert html.unescape(out).replace(ZWJ, "") == " ".join(HOSTILE.split())


def test_inline_inside_summary_html_stays_text():
    md = f"<details>\n<summary>{inline(HOSTILE, 10_000)}</summary>\n\nbody\n\n</details>"
    rendered = to_html(md)
    assert rendered.count("<details>") == 1 and rendered.count("</details>") == 1
    assert "<img" not in rendered and "<script" not in rendered


def test_code_block_cannot_be_closed_from_inside():
    text = "before\n```\n<img src=x>\n````\n[x](https://evil.example)\nafter @someone"
    block = code_block(text)
    fence = block.split("\n", 1)[0]
    assert len(fence) == 5  # longest run inside is 4
    rendered = to_html(block)
    assert rendered.count("<pre>") == 1 and "<img" not in rendered and "<a " not in rendered
    assert "after @" in html.unescape(rendered) and "@someone" not in rendered


def _leaf(i: int, samples: int, size: int) -> LeafView:
    sample = {"messages": [{"role": "user", "content": "Q " * size}, {"role": "assistant", "content": "A " * size}],
              "metadata": {"leaf": f"compositional_skills/x/leaf{i}", "score": 3, "phase": "st"}}
    return LeafView(path=f"compositional_skills/x/leaf{i}", kind="compositional_skills",
                    findings=[FindingView(f"taxonomy/compositional_skills/x/leaf{i}/qna.yaml", 4, "version",
                                          "unsupported", "warning")],
                    samples=[sample] * samples, stats={"generated": samples, "kept": samples})


def test_comment_under_limit_is_complete():
    p = Preview(sha="a" * 40, teacher="scripted:t", samples_per_leaf=2, leaves=[_leaf(1, 2, 10)])
    body = render_comment(p)
    assert body.startswith(MARKER)
    assert body.count("<details>") == 2 and "truncated" not in body
    assert "taxonomy/compositional&#95;skills/x/leaf1/qna.yaml:4" in body


def test_long_comment_is_truncated_with_a_note():
    leaves = [_leaf(i, 8, 1500) for i in range(40)]  # ~40 x 8 x 6000 characters of samples
    p = Preview(sha="b" * 40, teacher="scripted:t", samples_per_leaf=8, leaves=leaves)
    body = render_comment(p)
    assert len(body) <= GITHUB_LIMIT
    assert body.startswith(MARKER) and "truncated" in body
    # every leaf is still named, and the markup stays balanced
    for i in range(40):
        assert f"leaf{i}<" in body or f"leaf{i}</code>" in body
    rendered = to_html(body)
    assert rendered.count("<details>") == rendered.count("</details>")
    small = render_comment(p, limit=5000)
    assert len(small) <= 5000 and "truncated" in small


def test_failure_is_shown():
    p = Preview(sha="c" * 40, failure="generate: RuntimeError: teacher went away")
    body = render_comment(p)
    assert "failed" in body and "teacher went away" in body and not p.ok


def test_parse_command():
    assert parse_command("/lab preview") == "preview"
    assert parse_command("thanks!\n  /lab   validate  \nmore") == "validate"
    assert parse_command("/lab") == ""
    assert parse_command("/lab Dance") == "dance"
    assert parse_command("please run /lab preview") is None
    assert parse_command("/labpreview") is None
    assert parse_command(None) is None
    assert re.search("/lab", render_comment(Preview(sha="d" * 40)))  # footer tells how
    assert parse_command(render_comment(Preview(sha="d" * 40))) is None  # the bot never triggers itself


def test_filtered_out_candidates_are_shown_inert():
    rejected = [{"stage": "question_eval", "reason": "not a question <b>x</b>", "question": "Q @someone ```",
                 "raw": "<script>alert(1)</script>"}] * 5
    leaf = LeafView(path="compositional_skills/x/y", rejected=rejected, stats={"generated": 5, "kept": 0,
                                                                             "rejected": {"question_eval": 5}})
    body = render_comment(Preview(sha="e" * 40, leaves=[leaf]))
    rendered = to_html(body)
    assert "filtered out: 5 (the first 3 shown)" in body and "…and 2 more" in body
    assert "<script" not in rendered and "<b>" not in rendered and "@someone" not in body
    assert rendered.count("<details>") == rendered.count("</details>") == 1


def test_a_leaf_with_nothing_kept_is_flagged_but_not_failed():
    leaf = LeafView(path="compositional_skills/x/y", stats={"generated": 2, "kept": 0, "rejected": {"pair_eval": 2}})
    p = Preview(sha="f" * 40, leaves=[leaf])
    body = render_comment(p)
    assert p.ok and "⚠️" in body and "No candidate survived" in body and "pair&#95;eval 2" in body


def test_sample_label_shows_judge_scores_or_says_judges_were_off():
    from lab_tools.bot.render import _sample_md

    msgs = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    judged = _sample_md(1, {"messages": msgs, "metadata": {"phase": "st", "scores": {"pair": 3, "question_ok": None}}}, 500)
    assert "judge: pair 3" in judged and "None" not in judged
    off = _sample_md(2, {"messages": msgs, "metadata": {"phase": "st", "scores": {"pair": None}}}, 500)
    assert "judge: off" in off and "None" not in off
