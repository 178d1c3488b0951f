"""`lab taxonomy validate`: findings with file:line:col and field path, every check, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lab_tools.taxonomy.validate import has_errors, render, validate_tree

from .helpers import knowledge, skill, write_leaf

LEAF = "compositional_skills/math/addition"


def errors(findings):
    return [f for f in findings if f.is_error]


def test_valid_skill_and_knowledge_leaves_have_no_findings(tmp_path):
    write_leaf(tmp_path, LEAF, skill())
    write_leaf(tmp_path, "foundational_skills/reasoning/sums", skill(version=2, context=True))
    write_leaf(tmp_path, "compositional_skills/legacy/v1", skill(n=1, version=1))
    write_leaf(tmp_path, "knowledge/astronomy/moon", knowledge())
    assert validate_tree(tmp_path) == []


def test_every_error_reported_at_once_with_node_position(tmp_path):
    data = skill()
    del data["created_by"]
    data["seed_examples"][2]["answer"] = ""
    data["seed_examples"][3]["anser"] = "typo"
    data["bogus"] = 1
    f = write_leaf(tmp_path, LEAF, data)
    found = validate_tree(tmp_path)
    by_field = {x.field: x for x in found}
    assert {"created_by", "seed_examples.2.answer", "seed_examples.3.anser", "bogus"} <= set(by_field)
    lines = f.read_text().splitlines()
    typo = by_field["seed_examples.3.anser"]
    assert lines[typo.line - 1][typo.column - 1:].startswith("anser")
    empty = by_field["seed_examples.2.answer"]
    assert lines[empty.line - 1][empty.column - 1:].startswith("''")
    assert by_field["bogus"].line == len(lines)  # dumped last
    text = render(found, "text").splitlines()
    assert all(line.startswith(f"{f}:") for line in text)
    assert f"{f}:{typo.line}:{typo.column}: seed_examples.3.anser: unknown field" in render(found)


def test_render_json_and_github(tmp_path):
    data = skill()
    data["seed_examples"] = data["seed_examples"][:2]
    write_leaf(tmp_path, LEAF, data)
    found = validate_tree(tmp_path)
    rows = [json.loads(line) for line in render(found, "json").splitlines()]
    assert rows and set(rows[0]) == {"file", "line", "column", "field", "message", "severity"}
    assert any("at least 5" in r["message"] for r in rows)
    gh = render(found, "github").splitlines()
    assert gh[0].startswith("::error file=") and ",line=" in gh[0] and ",col=" in gh[0]


def test_placement_checks(tmp_path):
    write_leaf(tmp_path, "skills/math", skill())  # not under a top folder
    (tmp_path / LEAF).mkdir(parents=True)
    (tmp_path / LEAF / "qna.yml").write_text("version: 3\n")  # misnamed
    msgs = [f.message for f in validate_tree(tmp_path)]
    assert any("must be named qna.yaml" in m for m in msgs)
    assert any("under one of" in m for m in msgs)


def test_symlink_leaving_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    write_leaf(outside, "x", skill())
    root = tmp_path / "tax"
    (root / "compositional_skills" / "a").mkdir(parents=True)
    os.symlink(outside / "x" / "qna.yaml", root / "compositional_skills" / "a" / "qna.yaml")
    os.symlink(outside / "x", root / "compositional_skills" / "linked_dir")
    found = validate_tree(root)
    assert len(found) == 2 and all("symlink leaves the taxonomy root" in f.message for f in found)


@pytest.mark.parametrize("version", [1, 2])
def test_old_knowledge_versions_are_refused_as_deprecated(tmp_path, version):
    data = {"version": version, "created_by": "a", "domain": "d", "task_description": "t",
            "seed_examples": [{"question": "q", "answer": "a"}],
            "document": {"repo": "https://x", "commit": "abc", "patterns": ["*.md"]}}
    write_leaf(tmp_path, "knowledge/a/b", data)
    found = errors(validate_tree(tmp_path))
    assert len(found) == 1 and found[0].field == "version" and "deprecated" in found[0].message


def test_unsupported_and_non_integer_versions(tmp_path):
    write_leaf(tmp_path, "compositional_skills/a/b", skill(version=4))
    write_leaf(tmp_path, "compositional_skills/a/c", {**skill(), "version": "three"})
    assert len(errors(validate_tree(tmp_path))) == 2


def test_duplicate_seed_questions(tmp_path):
    data = skill()
    data["seed_examples"][4]["question"] = "  what is 1 PLUS 1? "
    write_leaf(tmp_path, LEAF, data)
    found = errors(validate_tree(tmp_path))
    assert [f.field for f in found] == ["seed_examples.4.question"]
    assert "duplicate seed question" in found[0].message
    # same question on different contexts (a grounded skill) is fine
    data = skill(context=True)
    for ex in data["seed_examples"]:
        ex["question"] = "Summarize the row."
    write_leaf(tmp_path, LEAF, data)
    assert validate_tree(tmp_path) == []


def test_duplicate_knowledge_questions(tmp_path):
    data = knowledge()
    data["seed_examples"][3]["questions_and_answers"][1]["question"] = "Fact 3, part 0?"  # same context
    write_leaf(tmp_path, "knowledge/a/b", data)
    found = errors(validate_tree(tmp_path))
    assert [f.field for f in found] == ["seed_examples.3.questions_and_answers.1.question"]
    # the same question under another context is no duplicate (instructlab-schema agrees)
    data["seed_examples"][3]["questions_and_answers"][1]["question"] = "Fact 0, part 0?"
    write_leaf(tmp_path, "knowledge/a/b", data)
    assert validate_tree(tmp_path) == []


def test_word_limits_warn_and_strict_makes_them_errors(tmp_path):
    data = skill(context=True)
    data["seed_examples"][0]["context"] = "word " * 501
    data["seed_examples"][1]["answer"] = "word " * 250
    write_leaf(tmp_path, LEAF, data)
    found = validate_tree(tmp_path)
    assert {f.field for f in found} == {"seed_examples.0.context", "seed_examples.1"}
    assert not has_errors(found)
    assert len(errors(validate_tree(tmp_path, strict=True))) == 2


def test_yamllint_warnings_for_version_2_and_later(tmp_path):
    text = "version: 3   \ncreated_by: me\n" + "\n".join(
        ["task_description: t", "seed_examples:"] + [f"  - question: q{i}\n    answer: a{i}" for i in range(5)])
    write_leaf(tmp_path, LEAF, text)  # trailing spaces on line 1, no newline at the end
    found = validate_tree(tmp_path)
    assert found and not has_errors(found)
    assert any("yamllint trailing-spaces" in f.message and f.line == 1 for f in found)
    write_leaf(tmp_path, LEAF, text.replace("version: 3", "version: 1"))
    assert validate_tree(tmp_path) == []  # InstructLab does not lint version 1 files


def test_hostile_file_becomes_a_finding_not_an_exception(tmp_path):
    write_leaf(tmp_path, LEAF, "a: &x 1\nb: *x\n")
    (tmp_path / "knowledge" / "b" / "c").mkdir(parents=True)
    (tmp_path / "knowledge" / "b" / "c" / "qna.yaml").write_bytes(b"\xff\xfe\x00")
    found = validate_tree(tmp_path)
    assert len(found) == 2 and all(f.is_error for f in found)


def test_paths_restrict_validation(tmp_path):
    write_leaf(tmp_path, LEAF, skill())
    write_leaf(tmp_path, "compositional_skills/bad/one", {"version": 3})
    assert validate_tree(tmp_path, paths=[LEAF]) == []
    assert validate_tree(tmp_path, paths=["compositional_skills/gone"]) == []
    assert errors(validate_tree(tmp_path, paths=["compositional_skills/bad/one"]))


def _lab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lab_tools", "taxonomy", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_cli_exit_codes(tmp_path):
    write_leaf(tmp_path, LEAF, skill())
    ok = _lab("validate", str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    write_leaf(tmp_path, "compositional_skills/bad/one", {"version": 3, "created_by": "x"})
    bad = _lab("validate", str(tmp_path), "--format", "json")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    rows = [json.loads(line) for line in bad.stdout.splitlines()]
    assert {r["field"] for r in rows} == {"task_description", "seed_examples"}
    usage = _lab("validate", str(tmp_path), "--format", "xml")
    assert usage.returncode == 2
    missing = _lab("validate", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


@pytest.mark.parametrize("command", ["validate", "licenses"])
def test_a_tree_without_leaves_is_an_error(tmp_path, command):
    """An empty folder, or one with files but no leaf, is not a valid taxonomy: "0 leaves checked"
    with exit 0 would pass CI on the wrong folder. The message names the folder."""
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _lab(command, str(empty))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert str(empty) in out.stderr and "no leaves" in out.stderr
    assert "0 leaves checked" not in out.stderr
    # no ROOT and no ./taxonomy: the fallback to the current folder is said, with the folder
    (tmp_path / "notes.txt").write_text("not a leaf\n")
    out = _lab(command, cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert str(tmp_path) in out.stderr and "no leaves" in out.stderr and "./taxonomy" in out.stderr


def test_the_repository_taxonomy_still_validates(repo_root):
    if not (repo_root / "taxonomy").is_dir():
        pytest.skip("no taxonomy/ in this checkout")
    out = _lab("validate", "taxonomy", cwd=repo_root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 leaves checked" not in out.stderr
