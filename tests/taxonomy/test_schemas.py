"""The shipped JSON Schemas: valid Draft 2020-12, found by the package, same constraints as InstructLab's."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from lab_tools.taxonomy.schema import SUPPORTED, load_schema, schema_dir


@pytest.mark.parametrize("fam,version", sorted(SUPPORTED))
def test_schema_is_valid_draft_2020_12(fam, version):
    schema = load_schema(fam, version)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_packaged_schema_folder_is_the_repository_folder(repo_root):
    # editable install / checkout: lab_tools/schemas is the repository's schemas/ folder
    assert (schema_dir() / "v3" / "knowledge.json").read_bytes() == (repo_root / "schemas/v3/knowledge.json").read_bytes()


def _constraints(schema, path=""):
    """(path, keyword, value) for the constraint keywords of a schema, recursively."""
    out = {(path, "required", k) for k in schema.get("required", [])}  # one entry per key: $ref merges
    for key in ("minItems", "minLength", "uniqueItems", "type", "const"):
        if key in schema:
            value = schema[key]
            out.add((path, key, tuple(sorted(value)) if isinstance(value, list) else value))
    for name, sub in (schema.get("properties") or {}).items():
        out |= _constraints(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        out |= _constraints(schema["items"], f"{path}[]")
    return out


@pytest.mark.parametrize("fam,version", sorted(SUPPORTED))
def test_constraints_match_instructlab_schema(fam, version):
    resources = pytest.importorskip("importlib.resources")
    pytest.importorskip("instructlab.schema")
    base = resources.files("instructlab.schema") / f"v{version}"
    theirs = json.loads((base / f"{'knowledge' if fam == 'knowledge' else 'compositional_skills'}.json").read_text())
    version_schema = json.loads((base / "version.json").read_text())
    theirs_c = _constraints(theirs) | _constraints(version_schema)
    ours_c = _constraints(load_schema(fam, version))
    # InstructLab v1 says version "must become required" but does not require it; neither do we
    assert ours_c == theirs_c


@pytest.mark.slow
def test_wheel_ships_the_schemas(repo_root, tmp_path):
    """A normal (non-editable) install carries lab_tools/schemas/v*/*.json as real files."""
    import shutil
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo_root / name, src / name)
    shutil.copytree(repo_root / "schemas", src / "schemas")
    shutil.copytree(repo_root / "lab_tools", src / "lab_tools", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {out.stderr[-300:]}")
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"lab_tools/schemas/v{v}/skills.json" for v in (1, 2, 3)} | {"lab_tools/schemas/v3/knowledge.json"} <= names
