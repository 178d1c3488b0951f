"""How one setting's value is checked and applied: the :class:`Range` of a numeric setting and the
shared bounds (:data:`COUNT`, :data:`TOKENS`...), the type / ``CHOICES`` / range checks, and
:func:`apply_setting`, which sets a key path of a section dataclass and names the value's source in
its error (:class:`Origin`: ``FILE:LINE``, ``$VARIABLE`` or a flag). Used by the loader
(:mod:`lab_tools.config`), the section tables (:mod:`lab_tools.config_sections`) and the training
presets (:mod:`lab_tools.train.config`, through :func:`fill_dataclass`).

Ranges: every numeric field has its allowed range in its section's ``RANGES`` table
(``{field: Range(...)}``); every integer field also has an upper bound (generous: :data:`COUNT`
100 000, :data:`TOKENS` 1 000 000, ...). A value outside it, a NaN or an infinity (``.nan``,
``.inf``) is an error when it is set (file, env variable or flag), reported with the others.
``tests/test_config_ranges.py`` checks that no numeric field lacks one. A string setting with a
fixed set of values lists them in its section's ``CHOICES`` table (``{field: (value, ...)}``).
:func:`lab_tools.config_schema.config_json_schema` gives the same rules as a JSON Schema for editors (``schemas/lab.yaml.schema.json``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import operator
import types
import typing
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Range:
    """Allowed interval of a numeric setting: ``ge``/``gt`` lower bound (inclusive/exclusive),
    ``le``/``lt`` upper bound; None = unbounded. For a list setting every element is checked.
    NaN and infinities are never inside."""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __str__(self) -> str:
        return " and ".join(f"{sym} {_num(getattr(self, attr))}" for sym, attr, _ in _BOUNDS
                            if getattr(self, attr) is not None)

    def problem(self, value) -> str | None:
        """``"must be <bound it breaks>, got X"`` when ``value`` (a number or a list of numbers) is
        outside (``"must be a finite number, ..."`` for NaN or an infinity), else None."""
        for v in value if isinstance(value, list) else [value]:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue  # the type check reports it
            if isinstance(v, float) and not math.isfinite(v):
                return _NOT_FINITE.format(v)
            for sym, attr, ok in _BOUNDS:
                bound = getattr(self, attr)
                if bound is not None and not ok(v, bound):
                    return f"must be {sym} {_num(bound)}, got {v!r}"
        return None


_BOUNDS = ((">=", "ge", operator.ge), (">", "gt", operator.gt), ("<=", "le", operator.le), ("<", "lt", operator.lt))
_NOT_FINITE = "must be a finite number, got {!r} (.nan and .inf are not allowed)"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


# Integer settings use the bounded ranges; POSITIVE and NON_NEGATIVE (no upper bound) remain for
# the training presets (lab_tools/train/config.py) and float settings.
POSITIVE = Range(ge=1)
NON_NEGATIVE = Range(ge=0)
FRACTION = Range(ge=0, le=1)
COUNT = Range(ge=1, le=100_000)  # samples, batch sizes, workers, prompts, candidates, turns
COUNT0 = Range(ge=0, le=100_000)  # a count where 0 means none (or, where documented, all)
TOKENS = Range(ge=1, le=1_000_000)  # token limits and sizes
TOKENS0 = Range(ge=0, le=1_000_000)
SEED = Range(ge=0, le=2**32 - 1)  # numpy's seed range


def range_of(cls, name: str) -> Range | None:
    """The :class:`Range` of field ``name`` of dataclass ``cls`` (its ``RANGES`` table), or None."""
    return (getattr(cls, "RANGES", None) or {}).get(name)


def _type_ok(tp, value) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(t, value) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        (inner,) = typing.get_args(tp)
        return isinstance(value, list) and all(_type_ok(inner, v) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


@dataclass
class Origin:
    """Where values come from, to name it in errors: a file (with the line of each key path), an
    environment variable, or neither (a flag, or a preset's own prefix). ``record``: when given,
    each setting applied from here is recorded as ``{"section.key": where}``."""
    file: str | None = None
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    var: str | None = None
    prefix: str = ""
    record: dict[str, str] | None = None

    def where(self, path: tuple[str, ...]) -> str:
        """``FILE:LINE`` (the line of the key, else of its nearest parent), ``$VAR`` or ``""``."""
        if self.file is not None:
            for i in range(len(path), 0, -1):
                if path[:i] in self.lines:
                    return f"{self.file}:{self.lines[path[:i]]}"
            return self.file
        return f"${self.var}" if self.var else ""

    def label(self, path: tuple[str, ...]) -> str:
        """How an error names the setting at key ``path``."""
        if self.var is not None:
            return f"${self.var} ({self.var[4:].lower().replace('__', '.')})"
        dotted = ".".join(p for p in (self.prefix, *path) if p)
        return f"{self.where(path)}: {dotted}" if self.file is not None else dotted

    def unknown(self, path: tuple[str, ...], known) -> str:
        """The message for the unknown last key of ``path``, with a did-you-mean when one is close."""
        key = path[-1]
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        hint = ""
        if close:
            hint = f"; did you mean {close[0]!r}"
            if self.var is not None:
                parts = self.var[4:].split("__")
                parts[len(path) - 1] = close[0].upper()
                hint += f" ($LAB_{'__'.join(parts)})"
            hint += "?"
        return f"unknown key {key!r}{hint} (known: {', '.join(sorted(known))})"


def _problem(cls, key: str, tp, value) -> str | None:
    """What is wrong with ``value`` for field ``key`` (type ``tp``) of dataclass ``cls``, or None."""
    if not _type_ok(tp, value):
        return f"expected {getattr(tp, '__name__', tp)}, got {value!r}"
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, float) and not math.isfinite(v):
            return _NOT_FINITE.format(v)
    choices = (getattr(cls, "CHOICES", None) or {}).get(key)
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(map(str, choices))}, got {value!r}"
    rng = range_of(cls, key)
    return rng.problem(value) if rng is not None else None


def apply_setting(obj, keys: list[str], value, path: tuple[str, ...], origin: Origin, errors: list[str]) -> None:
    """Set ``keys`` (a key path below ``obj``, which sits at ``path``) to ``value``, or append the
    problem to ``errors``; a mapping given for a section sets its keys one by one. ``origin``
    names the value's source in the message (:class:`Origin`). Raises nothing: problems go to ``errors``."""
    hints = typing.get_type_hints(type(obj))
    key = keys[0]
    here = (*path, key)
    if key not in hints:
        errors.append(f"{origin.label(here)}: {origin.unknown(here, hints)}")
        return
    tp = hints[key]
    if len(keys) > 1:
        if not dataclasses.is_dataclass(tp):
            errors.append(f"{origin.label(here)}: {key!r} is a setting, not a section")
            return
        apply_setting(getattr(obj, key), keys[1:], value, here, origin, errors)
        return
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{origin.label(here)}: expected a mapping")
            return
        for k, v in value.items():
            apply_setting(getattr(obj, key), [str(k)], v, here, origin, errors)
        return
    problem = _problem(type(obj), key, tp, value)
    if problem:
        errors.append(f"{origin.label(here)}: {problem}")
        return
    setattr(obj, key, float(value) if tp is float else value)
    if origin.record is not None:
        origin.record[".".join(here)] = origin.where(here)


def fill_dataclass(obj, data: dict, where: str, errors: list[str]) -> None:
    """Set the fields of dataclass ``obj`` from the mapping ``data``, recursing into nested
    dataclasses. Each unknown key (with a did-you-mean), wrong type, NaN/infinity or value outside
    the field's :class:`Range` appends ``"<where>.<key>: <problem>"`` to ``errors`` (so callers can
    report every problem at once); valid keys are still applied. Raises nothing."""
    origin = Origin(prefix=where)
    for k, v in data.items():
        apply_setting(obj, [str(k)], v, (), origin, errors)
