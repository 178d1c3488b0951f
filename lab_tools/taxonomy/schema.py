"""The JSON Schemas (Draft 2020-12) for ``qna.yaml`` and their compiled validators.

Schemas live in the repository's ``schemas/`` folder (``v1..v3/skills.json``, ``v3/knowledge.json``),
written for this project with InstructLab's field names and constraints (instructlab/schema 0.4.2).
The installed package carries the same files as ``lab_tools/schemas``: in the repository that is
a symlink to ``../schemas``, so setuptools' package discovery (``lab_tools*``, namespace packages,
``*.json`` package data) copies the real files into wheels and sdists, while editable installs and
plain checkouts read ``schemas/`` through the link. One source of truth, no copy step.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from jsonschema import Draft202012Validator

#: (kind family, version) pairs that have a schema; knowledge v1-2 are deprecated (refused earlier).
SUPPORTED = {("skills", 1), ("skills", 2), ("skills", 3), ("knowledge", 3)}
DEPRECATED_KNOWLEDGE = (1, 2)


@functools.lru_cache(maxsize=1)
def schema_dir() -> Path:
    """Folder holding ``v1/ v2/ v3/`` schema files: the packaged ``lab_tools.schemas`` when
    installed, else ``<checkout>/schemas``.

    Raises:
        FileNotFoundError: neither exists (a broken install).
    """
    here = Path(__file__).resolve().parents[1]  # the lab_tools package directory
    packaged = here / "schemas"  # a real folder in a wheel, the symlink to ../schemas in a checkout
    if (packaged / "v3" / "skills.json").is_file():
        return packaged
    source = Path(__file__).resolve().parents[2] / "schemas"
    if (source / "v3" / "skills.json").is_file():
        return source
    raise FileNotFoundError("qna.yaml schemas not found (neither lab_tools.schemas nor ./schemas)")


def family(kind: str) -> str:
    """``knowledge`` for knowledge leaves, ``skills`` for foundational and compositional skills."""
    return "knowledge" if kind == "knowledge" else "skills"


@functools.lru_cache(maxsize=None)
def load_schema(fam: str, version: int) -> dict:
    """The schema for ``fam`` (``skills``/``knowledge``) at ``version`` as a dict (read once).

    Raises:
        KeyError: no such schema (see :data:`SUPPORTED`).
    """
    if (fam, version) not in SUPPORTED:
        raise KeyError((fam, version))
    return json.loads((schema_dir() / f"v{version}" / f"{fam}.json").read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def validator(fam: str, version: int) -> Draft202012Validator:
    """A compiled Draft 2020-12 validator for (``fam``, ``version``), built once per process."""
    schema = load_schema(fam, version)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)
