"""The JSON Schema of ``lab.yaml`` for editors (:func:`lab_tools.config_schema.config_json_schema`): built
from the config dataclasses and their ``RANGES``, it accepts the shipped ``lab.yaml``, refuses what
the loader refuses, and the committed ``schemas/lab.yaml.schema.json`` is its current output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from lab_tools.config import load_config
from lab_tools.config_schema import config_json_schema
from lab_tools.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILE = REPO / "schemas" / "lab.yaml.schema.json"
REGENERATE = ".venv/bin/python -m lab_tools.config_schema > schemas/lab.yaml.schema.json"


def _validator() -> Draft202012Validator:
    schema = config_json_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_the_shipped_lab_yaml_validates():
    data = yaml.safe_load((REPO / "lab.yaml").read_text(encoding="utf-8"))
    assert list(_validator().iter_errors(data)) == []
    load_config(REPO, environ={})  # and the loader agrees


@pytest.mark.parametrize("data", [
    {"generate": {"samples": "many"}},  # wrong type
    {"generate": {"samples": True}},  # a bool is no count
    {"generate": {"temperature": "hot"}},
    {"licenses": {"allowlist": "MIT"}},  # a string, not a list
    {"generate": {"smaples": 3}},  # unknown key
    {"bogus": 1},
    {"generate": {"samples": 0}},  # out of range
    {"generate": {"max_new_tokens": 10_000_000}},  # above the upper bound
    {"generate": {"filters": {"max_top_ngram_frac": [0.3, 1.5]}}},  # list element out of range
    {"documents": {"fetch_timeout": 0}},  # exclusive minimum
    {"feedback": {"rubric": [["a", 1]]}},
], ids=repr)
def test_what_the_loader_refuses_the_schema_refuses(tmp_path, data):
    assert list(_validator().iter_errors(data)), data
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError):
        load_config(tmp_path, environ={})


def test_what_the_loader_accepts_the_schema_accepts(tmp_path):
    data = {"cache_dir": None, "generate": {"judge": None, "temperature": 0, "filters": {"enabled": False}},
            "feedback": {"rubric": ["a", ["b", "c"]], "configurations": [{"name": "a"}],
                         "rm_score_threshold": -1.5}, "bot": {"write_team": "org/team"}}
    assert list(_validator().iter_errors(data)) == []
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(data))
    load_config(tmp_path, environ={})


def test_the_schema_carries_defaults_and_descriptions_for_editors():
    gen = config_json_schema()["properties"]["generate"]
    assert gen["additionalProperties"] is False and "Synthetic data generation" in gen["description"]
    assert gen["properties"]["samples"] == {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 8}


def test_the_committed_schema_is_current():
    current = json.dumps(config_json_schema(), indent=2) + "\n"
    committed = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.is_file() else ""
    assert committed == current, (f"{SCHEMA_FILE.relative_to(REPO)} is stale or missing; "
                                  f"regenerate it with: {REGENERATE}")
