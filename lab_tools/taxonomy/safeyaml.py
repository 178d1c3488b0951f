"""Hostile-input-safe YAML loading with line numbers.

A ``qna.yaml`` comes from a stranger's pull request, so the loader refuses, with a LabError that
names the file and line, anything that could hurt the validator or hide a mistake:

- a file over :data:`MAX_BYTES` (1 MiB), a binary file (NUL bytes), invalid UTF-8;
- a tab in indentation (YAML forbids it; editors hide it);
- aliases and anchors (``&a`` / ``*a``): an alias can expand exponentially ("billion laughs"), and
  InstructLab leaves never need them;
- nesting deeper than :data:`MAX_DEPTH`;
- duplicate mapping keys (PyYAML silently keeps the last one);
- tags other than the YAML core schema (``!!python/object`` and friends);
- more than one document in the stream, an empty document, a top level that is not a mapping.

Parsing uses libyaml's event stream (``yaml.CParser`` when available): it is flat, so deep nesting
cannot exhaust the C stack, and aliases are refused as events, before anything expands. Objects
are built here with an explicit stack, recording the 1-based (line, column) of every node so that
findings point at the YAML node they concern.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.events import (AliasEvent, DocumentStartEvent, MappingEndEvent, MappingStartEvent,
                         ScalarEvent, SequenceEndEvent, SequenceStartEvent, StreamEndEvent)
from yaml.nodes import ScalarNode

from lab_tools.errors import LabError

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_IMPLICIT_FIRST = frozenset(k for k in _RESOLVER.yaml_implicit_resolvers if k is not None)
_CORE_TAGS = {f"tag:yaml.org,2002:{t}" for t in
              ("str", "int", "float", "bool", "null", "timestamp", "map", "seq", "binary")}


class YamlDoc:
    """A parsed YAML document: ``data`` (plain dicts/lists/scalars) and ``positions`` mapping each
    node's path (tuple of keys/indices, ``()`` for the root) to its 1-based ``(line, column)``;
    ``key_positions`` maps a mapping entry's path to the position of its key."""

    __slots__ = ("data", "positions", "key_positions", "text")

    def __init__(self, data, positions, key_positions, text):
        self.data = data
        self.positions = positions
        self.key_positions = key_positions
        self.text = text

    def position(self, path) -> tuple[int, int]:
        """(line, column) of ``path`` or of its nearest recorded ancestor (1, 1 at worst)."""
        path = tuple(path)
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), (1, 1))


def _err(msg: str, file: str, line: int | None = None, field: str | None = None) -> LabError:
    return LabError(msg, file=file, line=line, field=field)


def read_text(path: str | Path, *, max_bytes: int = MAX_BYTES) -> str:
    """Read ``path`` as UTF-8 text, refusing big, binary and non-UTF-8 files.

    Raises:
        LabError: missing/unreadable file, over ``max_bytes``, NUL bytes, invalid UTF-8
        (with the line of the first bad byte).
    """
    p = Path(path)
    name = str(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise _err(f"file is {size} bytes, over the limit of {max_bytes} bytes (1 MiB)", name)
        raw = p.read_bytes()
    except FileNotFoundError:
        raise _err("file not found", name) from None
    except IsADirectoryError:
        raise _err("is a directory, not a file", name) from None
    except OSError as exc:
        raise _err(f"cannot read: {exc.strerror or exc}", name) from None
    return decode_text(raw, name, max_bytes=max_bytes)


def decode_text(raw: bytes, name: str, *, max_bytes: int = MAX_BYTES) -> str:
    """Decode ``raw`` bytes of file ``name`` as UTF-8 under the same rules as :func:`read_text`."""
    if len(raw) > max_bytes:
        raise _err(f"file is {len(raw)} bytes, over the limit of {max_bytes} bytes (1 MiB)", name)
    if b"\0" in raw:
        line = raw[: raw.index(b"\0")].count(b"\n") + 1
        raise _err("binary file (contains NUL bytes); a qna.yaml must be UTF-8 text", name, line)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _err(f"invalid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8", name, line) from None
    return text[1:] if text.startswith("\ufeff") else text


def _check_tabs(text: str, name: str) -> None:
    # A tab anywhere in the indentation of a line; tabs inside text after indentation are allowed.
    if "\t" not in text:
        return
    for no, line in enumerate(text.split("\n"), 1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent and line.strip():
            raise _err("tab character in indentation; indent with spaces", name, no)


def _scalar(ev: ScalarEvent, name: str):
    tag = ev.tag
    if tag is None:
        # fast paths, same answers as the resolver: quoted/block scalars are strings, and so are
        # plain ones whose first character starts no implicit type (bool, int, float, null, ...)
        value = ev.value
        if ev.style or (value and value[0] not in _IMPLICIT_FIRST):
            return value
    if tag in (None, "!"):
        tag = _RESOLVER.resolve(ScalarNode, ev.value, ev.implicit)
    if tag not in _CORE_TAGS or tag.endswith(("map", "seq")):
        raise _err(f"tag {ev.tag!r} is not allowed (only plain YAML values)", name, ev.start_mark.line + 1)
    if tag == "tag:yaml.org,2002:str":
        return ev.value
    try:
        return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, ScalarNode(tag, ev.value))
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise _err(f"bad {tag.rsplit(':', 1)[-1]} value {ev.value!r}: {exc}", name,
                   ev.start_mark.line + 1) from None


def _path_str(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def parse_yaml_text(text: str, name: str, *, max_depth: int = MAX_DEPTH) -> YamlDoc:
    """Parse one YAML document from ``text`` (file name ``name`` for messages) under the rules of
    this module. The top level may be any node; see :func:`load_yaml_doc` for the mapping rule.

    Raises:
        LabError: with file, 1-based line and (where it applies) field path.
    """
    _check_tabs(text, name)
    positions: dict = {}
    key_positions: dict = {}
    # stack entries: [container, path, pending_key (mappings only), is_mapping]
    stack: list[list] = []
    root = _UNSET = object()
    docs = 0
    try:
        for ev in yaml.parse(text, Loader=_Loader):
            cls = type(ev)
            if cls is DocumentStartEvent:
                docs += 1
                if docs > 1:
                    raise _err("more than one YAML document (---); a qna.yaml holds one", name,
                               ev.start_mark.line + 1)
                continue
            if cls is StreamEndEvent:
                break
            if cls is AliasEvent:
                raise _err(f"YAML alias *{ev.anchor} is not allowed (aliases can expand without "
                           "bound); write the value out", name, ev.start_mark.line + 1)
            if cls in (MappingEndEvent, SequenceEndEvent):
                stack.pop()  # the container was attached to its parent when it started
                continue
            if cls in (ScalarEvent, MappingStartEvent, SequenceStartEvent):
                if ev.anchor is not None:
                    raise _err(f"YAML anchor &{ev.anchor} is not allowed; write the value out", name,
                               ev.start_mark.line + 1)
                pos = (ev.start_mark.line + 1, ev.start_mark.column + 1)
                if cls is ScalarEvent:
                    value = _scalar(ev, name)
                else:
                    if len(stack) >= max_depth:
                        raise _err(f"nesting deeper than {max_depth} levels", name, pos[0])
                    if ev.tag not in (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
                        raise _err(f"tag {ev.tag!r} is not allowed (only plain YAML values)", name, pos[0])
                    value = {} if cls is MappingStartEvent else []
                # where does this node go?
                if stack:
                    top = stack[-1]
                    if top[3]:  # mapping: key or value?
                        if top[2] is _UNSET:
                            if cls is not ScalarEvent:
                                raise _err("a mapping key must be a plain scalar", name, pos[0],
                                           _path_str(top[1]))
                            key = value if isinstance(value, str) else str(value)
                            if key in top[0]:
                                first = key_positions.get(top[1] + (key,), (None,))[0]
                                raise _err(f"duplicate key {key!r} (first at line {first})", name,
                                           pos[0], _path_str(top[1] + (key,)))
                            top[2] = key
                            key_positions[top[1] + (key,)] = pos
                            continue
                        path = top[1] + (top[2],)
                        top[0][top[2]] = value
                        top[2] = _UNSET
                    else:
                        path = top[1] + (len(top[0]),)
                        top[0].append(value)
                else:
                    path = ()
                    root = value
                positions[path] = pos
                if cls is not ScalarEvent:
                    stack.append([value, path, _UNSET, cls is MappingStartEvent])
                continue
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise _err(f"invalid YAML: {problem}", name, mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise _err(f"invalid YAML: {exc}", name) from None
    except RecursionError:  # defensive: the event loop is flat, this should never happen
        raise _err(f"nesting deeper than {max_depth} levels", name) from None
    if root is _UNSET:
        root = None
    return YamlDoc(root, positions, key_positions, text)


def load_yaml_doc(path: str | Path, *, text: str | None = None) -> YamlDoc:
    """Read and parse ``path`` (or the given ``text``) whose top level must be a mapping.

    Returns:
        :class:`YamlDoc` with data and node positions.

    Raises:
        LabError: any rule of this module, an empty file, a top level that is not a mapping.
    """
    name = str(path)
    if text is None:
        text = read_text(path)
    doc = parse_yaml_text(text, name)
    if doc.data is None:
        raise _err("empty file: expected a mapping with version, created_by, seed_examples...", name, 1)
    if not isinstance(doc.data, dict):
        kind = "a list" if isinstance(doc.data, list) else f"a {type(doc.data).__name__}"
        raise _err(f"top level must be a mapping (key: value pairs), not {kind}", name, 1)
    return doc


def load_yaml_file(path: Path):
    """Parse ``path`` safely and return its top-level mapping (plain dict/list/scalar values).

    Raises:
        LabError: naming the file and line: see the module docstring for every rule.
    """
    return load_yaml_doc(path).data
