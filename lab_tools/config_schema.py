"""JSON Schema of ``lab.yaml`` for editors (yaml-language-server), built from the section
dataclasses of :mod:`lab_tools.config`: their types, defaults, docstrings and ``RANGES``. Unknown
keys are refused (``additionalProperties: false``) as the loader refuses them.

The loader stays the authority (it also refuses NaN/infinity and checks cross-field rules); the
committed copy, ``schemas/lab.yaml.schema.json``, is regenerated with
``python -m lab_tools.config_schema > schemas/lab.yaml.schema.json``
(``tests/test_config_schema.py`` fails when it is stale).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing

from lab_tools.config import Config
from lab_tools.config_rules import range_of

SCHEMA_ID = "https://lab-tools.invalid/schemas/lab.yaml.schema.json"
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null", dict: "object"}
_BOUNDS = (("ge", "minimum"), ("gt", "exclusiveMinimum"), ("le", "maximum"), ("lt", "exclusiveMaximum"))


def _type_schema(tp) -> dict:
    """The schema of a value of the Python type ``tp`` (scalars, lists, unions, sections)."""
    if dataclasses.is_dataclass(tp):
        return _section_schema(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        parts = [_type_schema(a) for a in args]
        if all(set(p) == {"type"} for p in parts):
            return {"type": [p["type"] for p in parts]}
        return {"anyOf": parts}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    raise TypeError(f"no JSON Schema for {tp!r}")


def _number(value) -> int | float:
    return int(value) if float(value).is_integer() else value


def _with_range(schema: dict, rng) -> dict:
    """``schema`` with the bounds of :class:`~lab_tools.config_rules.Range` ``rng`` (on the items of a list)."""
    target = schema["items"] if schema.get("type") == "array" else schema  # optional: bounds skip null
    for attr, keyword in _BOUNDS:
        if getattr(rng, attr) is not None:
            target[keyword] = _number(getattr(rng, attr))
    return schema


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    value = f.default_factory()  # type: ignore[misc]
    return None if dataclasses.is_dataclass(value) else value


def _section_schema(cls) -> dict:
    """An object schema for section dataclass ``cls``: one property per field, nothing else."""
    hints = typing.get_type_hints(cls)
    props = {}
    for f in dataclasses.fields(cls):
        schema = _type_schema(hints[f.name])
        rng = range_of(cls, f.name)
        if rng is not None:
            schema = _with_range(schema, rng)
        choices = (getattr(cls, "CHOICES", None) or {}).get(f.name)
        if choices is not None:
            schema["enum"] = list(choices)
        default = _default(f)
        if not dataclasses.is_dataclass(hints[f.name]):
            schema["default"] = default
        props[f.name] = schema
    doc = inspect.cleandoc(cls.__doc__ or "")
    return {"description": " ".join(doc.split()), "type": "object", "properties": props,
            "additionalProperties": False}


def config_json_schema() -> dict:
    """A JSON Schema (draft 2020-12) of ``lab.yaml`` for editors, built from the section
    dataclasses, their defaults and ``RANGES``; the committed copy is ``schemas/lab.yaml.schema.json``.

    Raises:
        TypeError: a config field has a type this builder cannot express (a bug to fix here).
    """
    body = _section_schema(Config)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "lab-tools settings (lab.yaml)", **body}


def main() -> None:
    """Print the schema (``python -m lab_tools.config_schema > schemas/lab.yaml.schema.json``)."""
    print(json.dumps(config_json_schema(), indent=2))


if __name__ == "__main__":
    main()
