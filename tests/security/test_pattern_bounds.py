"""Issue 23 item 1: a knowledge leaf's ``document.patterns`` cannot hang the runner.

The attack: ``patterns: ["*a*a*...*a*b"]`` (14 stars) and a document named with 60 ``a``s passed
``lab taxonomy validate``, then pathspec's regular expression backtracked for the preview's whole
60-minute budget. A pattern pathspec cannot compile (``notes[z-a].md``, a lone backslash) was a
traceback in ``lab generate`` and failed the preview of every leaf. Now: the validator bounds
patterns and names the field; matching is time-bounded; the preview skips only the bad leaf.
"""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner
from tests.bot.conftest import pull_repo, skill_leaf  # noqa: F401  (pull_repo: a fixture)
from tests.security.test_documents import Workspace, _git, generate_fails, validate_flags
from tests.taxonomy.helpers import ATTRIBUTION, knowledge, write_leaf

from lab_tools.config_sections import DocumentsConfig
from lab_tools.errors import LabError
from lab_tools.taxonomy import documents
from lab_tools.taxonomy.patterns import MAX_STARS, check_pattern

pytestmark = pytest.mark.timeout(120)

EVIL = "*a" * 14 + "*b"  # the pattern
A60 = "a" * 60  # the file name


@pytest.fixture()
def ws(tmp_path, monkeypatch, cache_dir) -> Workspace:
    w = Workspace(tmp_path / "ws")
    w.add_files({f"documents/moon/{A60}": "sixty a\n", f"documents/moon/{'a' * 200}.md": "two hundred a\n"})
    w.docs_commit = _git(w.pr, "rev-parse", "HEAD")
    monkeypatch.chdir(w.path)
    return w


@pytest.mark.timeout(60)
def test_the_backtracking_pattern_is_a_validation_error_and_generate_fails_fast(ws, run_lab):
    ws.leaf(patterns=["moon/moon.md", EVIL])
    validate_flags(ws, run_lab, "document.patterns.1")
    code, cap = run_lab(["taxonomy", "validate", "pr/taxonomy"])
    assert "wildcards" in cap.out and f"over the limit of {MAX_STARS}" in cap.out
    started = time.monotonic()
    generate_fails(ws, run_lab, "document.patterns.1", "wildcards")
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("pattern,words", [
    ("moon/notes[z-a].md", "is not a valid git wildmatch pattern"),
    ("\\", "is not a valid git wildmatch pattern"),
    ("moon/" + "x" * 300, "characters, over the limit"),
])
def test_a_pattern_that_cannot_compile_is_a_validation_error_naming_the_field(ws, run_lab, pattern, words):
    ws.leaf(patterns=["moon/moon.md", pattern])
    validate_flags(ws, run_lab, "document.patterns.1")
    err = generate_fails(ws, run_lab, "document.patterns.1", words)
    assert "re.error" not in err and "GitIgnorePatternError" not in err


@pytest.mark.timeout(30)
def test_the_most_wildcards_allowed_match_a_long_name_quickly(ws):
    """Six stars pass the validator; Python's ``re`` on a 200-character name would backtrack
    ~200^6/6! steps (hours). The matcher (``regex``) answers at once."""
    pattern = "moon/" + "*a" * (MAX_STARS - 1) + "*b"
    assert check_pattern(pattern) is None
    leaf = ws.leaf(patterns=["moon/moon.md", pattern])
    started = time.monotonic()
    with pytest.raises(LabError) as err:
        documents.resolve_documents(leaf)
    assert time.monotonic() - started < 10
    assert err.value.field == "document.patterns.1" and "matches no file" in err.value.message


def test_matching_stops_at_the_time_budget_with_an_error_naming_the_pattern(ws):
    leaf = ws.leaf(patterns=["moon/moon.md", "moon/*.md"])
    with pytest.raises(LabError) as err:
        documents.resolve_documents(leaf, settings=DocumentsConfig(match_timeout=1e-9))
    assert err.value.field == "document.patterns.0" and "documents.match_timeout" in err.value.message
    assert len(documents.resolve_documents(leaf, settings=DocumentsConfig(match_timeout=5))) == 3


def test_too_many_patterns_are_refused(ws, run_lab):
    ws.leaf(patterns=[f"moon/file{i}.md" for i in range(40)])
    code, cap = run_lab(["taxonomy", "validate", "pr/taxonomy"])
    assert code == 1 and "40 patterns, over the limit of 32" in cap.out


@pytest.mark.timeout(120)
def test_the_preview_skips_only_the_leaf_with_the_bad_pattern(pull_repo, cache_dir, monkeypatch):
    from lab_tools.bot.cli import bot

    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")  # nothing listens there
    docs = pull_repo.path / "documents"
    docs.mkdir()
    (docs / "moon.md").write_text("The moon is round.\n", encoding="utf-8")
    (docs / A60).write_text("sixty a\n", encoding="utf-8")
    commit = pull_repo.commit("documents")
    data = knowledge()
    data["document"] = {"repo": "../documents", "commit": commit, "patterns": ["moon.md", EVIL]}
    write_leaf(pull_repo.taxonomy, "knowledge/space/moon", data, ATTRIBUTION)
    pull_repo.write_leaf("compositional_skills/writing/poetry/limerick", skill_leaf("Write limericks.", [
        (f"Write a limerick about {t}.", f"A {t} sat down by the sea,\nand sang to a bird in a tree,\n"
         "the bird sang along,\nthe whole day long,\nand both were as glad as can be.")
        for t in ("cat", "goat", "kettle", "river", "clock")]))
    pull_repo.commit("two leaves")
    result = CliRunner().invoke(bot, ["preview", "--pr", "7", "--dry-run", "--base", "main",
                                      "--taxonomy", str(pull_repo.taxonomy),
                                      "--config", str(pull_repo.path.parent / "trusted.yaml")],
                                catch_exceptions=False)
    out = result.output
    assert "document.patterns.1" in out and "wildcards" in out, out
    assert "fix the errors above" in out  # the knowledge leaf is skipped...
    assert "limerick" in out and "<details>" in out, out  # ...the skill leaf still shows samples
    assert "generate:" not in out  # no failure of the whole preview
