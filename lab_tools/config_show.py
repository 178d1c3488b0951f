"""What ``lab config init`` writes and what ``lab config show`` prints (no torch imported here).

- :func:`commented_yaml`: a ``lab.yaml`` holding every setting at its default, each with a
  one-line comment taken from its section dataclass's docstring (the sentence that names the
  field) and its allowed values or range; loading it back gives the defaults exactly.
- :func:`effective_settings`: every setting's effective value and where it came from, in the
  precedence of DESIGN.md (Configuration): ``default`` < ``lab.yaml`` < ``--config`` <
  ``environment`` (``LAB_SECTION__KEY``) < ``flag`` (a command-line option). The loader
  (:func:`lab_tools.config.load_config`) records the file sources; flags are applied here with
  :meth:`lab_tools.config.Config.override`, as the other commands apply theirs.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from pathlib import Path

import yaml

from lab_tools.atomic import write_text_atomic
from lab_tools.config import Config, find_lab_yaml, load_config
from lab_tools.config_rules import range_of
from lab_tools.errors import ConfigError, LabError

SOURCES = ("default", "lab.yaml", "--config", "environment", "flag")
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :mod:`x`, :func:`~a.b` -> x, a.b
MAX_COMMENT = 150  # characters of a field's comment before it is cut with " ..."


def iter_settings(obj=None, prefix: str = ""):
    """``(dotted key, dataclass that owns it, field name, value)`` for every leaf setting of
    ``obj`` (default: a fresh :class:`~lab_tools.config.Config`), in declaration order."""
    obj = Config() if obj is None else obj
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            yield from iter_settings(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", type(obj), f.name, value


def _plain(text: str) -> str:
    """Docstring text without reST markup, on one line."""
    text = _ROLE.sub(r"\1", text)
    return " ".join(text.replace("``", "`").split())


def _sentences(doc: str) -> list[str]:
    """The sentences of a docstring: split after ``.`` or ``;`` outside parentheses and brackets,
    where the next word starts a new statement (a capital, a backtick or an opening parenthesis).
    Any opening bracket closes any closing one, so interval notation (``(0, 1]``) stays balanced."""
    text = " ".join(doc.split())
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        if ch in ".;" and depth <= 0 and text[i + 1:i + 2] == " " and text[i + 2:i + 3] in _STARTS:
            out.append(text[start:i + 1].strip())
            start = i + 2
    return [s for s in out + [text[start:].strip()] if s]


_STARTS = set("`(ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def field_doc(cls, name: str) -> str:
    """One line about field ``name`` of section dataclass ``cls``, from the class docstring: the
    sentence that defines it (````name```` before the sentence's first colon), else one that
    defines a pattern matching it (````rm_*````, ````*_tokens````), else the first that names it,
    else a pointer to the class; cut at :data:`MAX_COMMENT` characters. Raises nothing."""
    import fnmatch

    sentences = _sentences(inspect.cleandoc(cls.__doc__ or ""))

    def head(s: str) -> str:
        return s.split(": ", 1)[0]

    def patterns(s: str) -> list[str]:
        return [p for p in re.findall(r"``([^`]+)``", head(s)) if "*" in p]

    tag = f"``{name}``"
    hit = (next((s for s in sentences if tag in head(s)), None)
           or next((s for s in sentences if any(fnmatch.fnmatchcase(name, p) for p in patterns(s))), None)
           or next((s for s in sentences if tag in s), None))
    if hit is None:
        return f"(not described yet: see {cls.__name__} in {cls.__module__.replace('.', '/')}.py)"
    text = _plain(hit).rstrip(";")
    if len(text) > MAX_COMMENT:
        text = text[:MAX_COMMENT].rsplit(" ", 1)[0] + " ..."
    return text


def allowed(cls, name: str) -> str:
    """The allowed values of a field as a short text (``one of a, b``; ``>= 1 and <= 100000``), or ""."""
    choices = (getattr(cls, "CHOICES", None) or {}).get(name)
    if choices:
        return "one of " + ", ".join(map(str, choices))
    rng = range_of(cls, name)
    return str(rng) if rng is not None and str(rng) else ""


def yaml_value(value) -> str:
    """``value`` as one line of YAML (flow style: lists in brackets, None as null)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


HEADER = """\
# lab-tools settings (lab.yaml), written by `lab config init`: every setting at its default.
# Keep the ones you change and delete the rest, or leave them: a default written out changes nothing.
# Precedence: defaults < lab.yaml < --config FILE < LAB_SECTION__KEY environment variables
# (e.g. LAB_GENERATE__SAMPLES=4) < command-line flags; `lab config show` prints where each comes from.
# Unknown keys are errors. JSON Schema for editors: schemas/lab.yaml.schema.json.
"""


def commented_yaml() -> str:
    """The text ``lab config init`` writes: :data:`HEADER`, then every section of
    :class:`~lab_tools.config.Config` with each setting at its default, preceded by a comment
    (:func:`field_doc`, and :func:`allowed` in brackets). Raises nothing."""
    lines = [HEADER.rstrip("\n")]

    def section(obj, indent: str) -> None:
        cls = type(obj)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(hints[f.name]):
                lines.append("")
                summary = _sentences(inspect.cleandoc(type(value).__doc__ or ""))[:1]
                lines.append(f"{indent}# {_plain(summary[0]) if summary else f.name}")
                lines.append(f"{indent}{f.name}:")
                section(value, indent + "  ")
                continue
            rule = allowed(cls, f.name)
            lines.append(f"{indent}# {field_doc(cls, f.name)}" + (f" [{rule}]" if rule else ""))
            lines.append(f"{indent}{f.name}: {yaml_value(value)}")

    section(Config(), "")
    return "\n".join(lines) + "\n"


def write_init(path: str | Path, *, force: bool = False) -> Path:
    """Write :func:`commented_yaml` to ``path`` (a directory: ``path/lab.yaml``); returns the file.

    Raises:
        LabError: the file exists and ``force`` is false.
    """
    target = Path(path)
    if target.is_dir():
        target = target / "lab.yaml"
    if target.exists() and not force:
        raise LabError("exists; pass --force to overwrite it", file=str(target))
    return write_text_atomic(target, commented_yaml())


def parse_set(items) -> list[tuple[str, object]]:
    """``--set section.key=VALUE`` arguments as ``(dotted key, value)``; VALUE is read as a YAML
    scalar or flow collection (``4``, ``true``, ``null``, ``[MIT, CC0-1.0]``), as environment
    variables are.

    Raises:
        ConfigError: an argument without ``=`` or with an empty key, naming it.
    """
    out, errors = [], []
    for item in items:
        key, sep, raw = str(item).partition("=")
        if not sep or not key.strip():
            errors.append(f"--set {item}: expected SECTION.KEY=VALUE")
            continue
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    if errors:
        raise ConfigError(errors)
    return out


def effective_settings(root: str | Path | None = None, config_file: str | Path | None = None,
                       flags: list[tuple[str, object, str]] = (), environ: dict[str, str] | None = None) -> dict:
    """Load the settings as a command does and say where each comes from.

    ``flags``: ``(dotted key, value, option)`` applied last, in order, with
    :meth:`~lab_tools.config.Config.override` (a None value is a flag left unset and changes
    nothing); ``option`` is how the flag was written (``--teacher``, ``--set generate.samples``).
    A flag that names a whole section with a mapping sets each key inside it.

    Returns ``{"files": {"lab.yaml": path | None, "--config": path | None}, "settings":
    {dotted key: {"value", "default", "source" (one of SOURCES), "where" (FILE:LINE, $VARIABLE,
    the option, or "")}}}`` in declaration order.

    Raises:
        ConfigError: every bad setting of the files and variables (as :func:`load_config`), then
        a bad flag (unknown key, wrong type, out of range).
    """
    prov: dict[str, tuple[str, str]] = {}
    cfg = load_config(root, config_file, environ=environ, provenance=prov)
    defaults = {key: value for key, _, _, value in iter_settings()}
    for key, value, option in flags:
        if value is None:
            continue
        try:
            cfg.override(key, value)
        except ConfigError as err:
            raise ConfigError([f"{option}: {e}" if not e.startswith(option) else e for e in err.errors]) from None
        leaves = [k for k in defaults if k == key or k.startswith(key + ".")]
        for leaf in leaves:
            if leaf == key or (isinstance(value, dict) and leaf.split(".")[len(key.split("."))] in value):
                prov[leaf] = ("flag", option)
    found = find_lab_yaml(root) if root is not None else None
    settings = {}
    for key, _, _, value in iter_settings(cfg):
        source, where = prov.get(key, ("default", ""))
        settings[key] = {"value": value, "default": defaults[key], "source": source, "where": where}
    return {"files": {"lab.yaml": str(found) if found else None,
                      "--config": str(config_file) if config_file is not None else None},
            "settings": settings}
