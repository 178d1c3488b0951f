"""Counts in user-facing messages are in the right number: "1 error", never "1 errors"."""

from __future__ import annotations

import yaml

from lab_tools.errors import plural


def test_plural():
    assert plural(1, "error") == "1 error"
    assert plural(0, "error") == "0 errors" and plural(2, "warning") == "2 warnings"
    assert plural(1, "leaf") == "1 leaf" and plural(3, "leaf") == "3 leaves"
    assert plural(2, "changed leaf") == "2 changed leaves" and plural(1, "more leaf") == "1 more leaf"
    assert plural(2, "teacher/judge request") == "2 teacher/judge requests"
    assert plural(2, "entry") == "2 entries" and plural(2, "person", "people") == "2 people"


def test_findings_summary():
    from lab_tools.taxonomy.findings import Finding, summary

    err = Finding("a/qna.yaml", 1, 1, "created_by", "must be a string", "error")
    warn = Finding("a/qna.yaml", 2, 1, "seed_examples", "too long", "warning")
    assert summary([err, warn], 1) == "1 leaf checked: 1 error, 1 warning"
    assert summary([err, err, warn, warn], 2) == "2 leaves checked: 2 errors, 2 warnings"
    assert summary([], 0) == "0 leaves checked: 0 errors, 0 warnings"


def test_validate_one_leaf_with_one_error(tmp_path, run_lab):
    leaf = tmp_path / "taxonomy" / "compositional_skills" / "writing" / "haiku"
    leaf.mkdir(parents=True)
    (leaf / "qna.yaml").write_text(yaml.safe_dump({
        "version": 3, "created_by": 7, "task_description": "Write a haiku about a topic.",
        "seed_examples": [{"question": f"Write a haiku about {t}.", "answer": f"A haiku about {t}\nfive seven five"}
                          for t in ("rain", "snow", "the sea", "autumn leaves", "a cat")]}))
    code, cap = run_lab(["taxonomy", "validate", str(tmp_path / "taxonomy")])
    assert code == 1 and "created_by" in cap.out
    assert "1 leaf checked: 1 error, 0 warnings" in cap.err, cap.err


def test_bot_comment_counts():
    from lab_tools.bot.render import FindingView, LeafView, render_leaf

    two = [FindingView("qna.yaml", n, "created_by", "must be a string") for n in (1, 2)]
    md = render_leaf(LeafView(path="compositional_skills/writing/haiku", findings=two), max_findings=1)
    assert "… and 1 more finding." in md, md
