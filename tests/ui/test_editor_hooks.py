"""Editors and hooks: the schemas' ``$id``s, the yaml-language-server mapping in
``.vscode/settings.json`` (it must agree with ``lab taxonomy validate``), and the hooks of
``.pre-commit-hooks.yaml`` (their entries are real ``lab`` commands that pass and fail as they should)."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
from pathlib import Path

import pathspec
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from lab_tools.taxonomy.leaf import iter_leaf_paths
from lab_tools.taxonomy.validate import validate_file
from tests.ui.conftest import REPO, git

ID_BASE = "https://lab-tools.invalid/schemas/"


def _schemas() -> dict[str, dict]:
    return {p.relative_to(REPO / "schemas").as_posix(): json.loads(p.read_text())
            for p in sorted((REPO / "schemas").rglob("*.json"))}


def _mapping() -> dict[str, list[str]]:
    return json.loads((REPO / ".vscode" / "settings.json").read_text())["yaml.schemas"]


def _validator_for(schema_file: str) -> Draft202012Validator:
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in _schemas().values())
    return Draft202012Validator(_schemas()[schema_file], registry=registry)


def test_every_schema_has_a_stable_id_matching_its_path():
    schemas = _schemas()
    assert {"v1/skills.json", "v2/skills.json", "v3/skills.json", "v3/knowledge.json", "skills.json"} <= set(schemas)
    for rel, schema in schemas.items():
        assert schema["$id"] == ID_BASE + rel
        Draft202012Validator.check_schema(schema)


def test_vscode_mapping_points_at_existing_schemas_and_covers_every_leaf():
    mapping = _mapping()
    specs = {}
    for target, globs in mapping.items():
        path = (REPO / target).resolve()
        assert path.is_file() and path.is_relative_to(REPO / "schemas"), target
        specs[target] = pathspec.GitIgnoreSpec.from_lines(globs)
    leaves = iter_leaf_paths(REPO / "taxonomy")
    assert leaves
    for leaf in leaves:
        hits = [t for t, spec in specs.items() if spec.match_file(f"taxonomy/{leaf}/qna.yaml")]
        assert len(hits) == 1, (leaf, hits)
        assert ("knowledge" in hits[0]) == leaf.startswith("knowledge/")


def _schema_for(leaf: str) -> str:
    target = next(t for t, globs in _mapping().items()
                  if pathspec.GitIgnoreSpec.from_lines(globs).match_file(f"taxonomy/{leaf}/qna.yaml"))
    return os.path.normpath(target).removeprefix("schemas/")


MUTATIONS = [
    ("as written", lambda d: None),
    ("unknown field", lambda d: d.__setitem__("colour", "blue")),
    ("missing created_by", lambda d: d.pop("created_by")),
    ("wrong version", lambda d: d.__setitem__("version", 7 if d.get("version") == 3 else 3)),
    ("too few examples", lambda d: d.__setitem__("seed_examples", d["seed_examples"][:1])),
    ("example field", lambda d: d["seed_examples"][0].__setitem__("hint", "x")),
]


@pytest.mark.parametrize("name,mutate", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_editor_schema_agrees_with_the_validator(tmp_path, name, mutate):
    """What the editor underlines (the mapped schema) is what `lab taxonomy validate` reports as an
    error, for each of the project's leaves."""
    for leaf in iter_leaf_paths(REPO / "taxonomy"):
        data = yaml.safe_load((REPO / "taxonomy" / leaf / "qna.yaml").read_text())
        data = copy.deepcopy(data)
        mutate(data)
        editor_ok = not list(_validator_for(_schema_for(leaf)).iter_errors(data))
        dest = tmp_path / name.replace(" ", "_") / leaf
        dest.mkdir(parents=True)
        (dest / "qna.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        errors = [f for f in validate_file(dest.parents[len(Path(leaf).parts) - 1], f"{leaf}/qna.yaml")
                  if f.is_error]
        assert editor_ok == (not errors), (leaf, name, errors)


def _hooks() -> dict[str, dict]:
    return {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}


def test_hooks_are_declared_for_changed_leaves():
    hooks = _hooks()
    assert set(hooks) == {"lab-validate", "lab-licenses"}
    for hook in hooks.values():
        assert hook["language"] == "python" and hook["pass_filenames"] is False
        assert "--changed-only" in shlex.split(hook["entry"])
        files = re.compile(hook["files"])
        assert files.search("taxonomy/knowledge/a/b/qna.yaml")
        assert files.search("taxonomy/knowledge/a/b/attribution.txt")
        assert not files.search("README.md")


def test_hook_entries_are_real_commands_that_pass_and_fail(tmp_path, monkeypatch, run_lab):
    import shutil

    repo = tmp_path / "tax"
    leaf = "compositional_skills/writing/freeform/poetry/haiku"
    shutil.copytree(REPO / "taxonomy" / leaf, repo / "taxonomy" / leaf)
    shutil.copy(REPO / "lab.yaml", repo / "lab.yaml")
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "base")
    monkeypatch.chdir(repo)  # pre-commit runs hooks at the repository's top
    hooks = _hooks()
    for hook in hooks.values():
        args = shlex.split(hook["entry"])
        assert args[0] == "lab"
        code, out = run_lab(args[1:])
        assert code == 0, (hook["id"], out.out, out.err)
        assert "0 leaves checked" in out.err  # nothing changed against main
    qna = repo / "taxonomy" / leaf / "qna.yaml"
    qna.write_text(qna.read_text().replace("created_by:", "creator:"))
    code, out = run_lab(shlex.split(hooks["lab-validate"]["entry"])[1:])
    assert code == 1 and "created_by" in out.out
    (repo / "taxonomy" / leaf / "attribution.txt").write_text(
        "Title of work: x\nLink to work: y\nLicense of the work: CC-BY-NC-4.0\nCreator names: z\n")
    code, out = run_lab(shlex.split(hooks["lab-licenses"]["entry"])[1:])
    assert code == 1 and "non-commercial" in out.out
