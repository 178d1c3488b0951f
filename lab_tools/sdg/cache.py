"""Content-addressed cache of per-leaf SDG shards with per-stage checkpoints (LAB 3.2 SDG, resumable).

Layout: ``<cache>/sdg/<key[:2]>/<key>/`` holding ``stage-<n>.json`` checkpoints (the leaf's
state after stage n) and ``shard.json`` (the finished leaf), and ``<key[:2]>/<key>.lock`` beside
it: the run that may write the entry holds it (:meth:`LeafCache.hold`, :mod:`lab_tools.locks`).
``key`` is the sha256 of the leaf content hash, document commits, teacher, judge, prompt version
and sample settings, so a changed input gets a new directory and an unchanged one is reused. Every file is written atomically
(:mod:`lab_tools.atomic`), so a run killed at any moment (kill -9) leaves either the old file or
the new one, never a torn one; a rerun resumes from the newest complete checkpoint. A file that
is valid JSON but not of the shape the caller expects (``{}`` as a checkpoint) is treated as
absent too, with a warning naming it, never a KeyError in a later stage.
"""

from __future__ import annotations

import functools
import hashlib
import json
from contextlib import AbstractContextManager, ExitStack
from contextvars import ContextVar
from pathlib import Path

import click

from lab_tools.atomic import write_json_atomic  # re-exported: other modules import it from here
from lab_tools.locks import cache_entry

#: the shape of an SDG shard (:func:`lab_tools.sdg.rounds.finish`), for :class:`LeafCache`
SDG_SHARD_SHAPE = {"key": "", "leaf": "", "samples": [{"messages": [], "metadata": {"phase": None}}],
                   "rejected": [], "stats": {}}


_HELD: ContextVar[ExitStack | None] = ContextVar("lab_sdg_cache_held", default=None)


def holding_entries(fn):
    """Decorator: the entry locks :meth:`LeafCache.claim` takes during a call of ``fn`` are held
    until that call returns or raises."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with ExitStack() as stack:
            token = _HELD.set(stack)
            try:
                return fn(*args, **kwargs)
            finally:
                _HELD.reset(token)
    return wrapper


def cache_key(parts: dict) -> str:
    """sha256 hex of the canonical JSON of ``parts`` (sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _read(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # missing or unreadable: treated as absent, so the stage is redone


def conforms(data, shape) -> str | None:
    """Why ``data`` does not have ``shape``, or None when it does. ``shape`` is an example value:
    a dict needs each of its keys (values checked recursively), a list with one item needs every
    element to conform to that item, None accepts anything, a float accepts any number, any other
    value needs the same type."""
    if shape is None:
        return None
    if isinstance(shape, dict):
        if not isinstance(data, dict):
            return f"an object expected, not {type(data).__name__}"
        for key, sub in shape.items():
            if key not in data:
                return f"missing {key!r}"
            why = conforms(data[key], sub)
            if why:
                return f"{key}: {why}"
        return None
    if isinstance(shape, list):
        if not isinstance(data, list):
            return f"a list expected, not {type(data).__name__}"
        for i, item in enumerate(data if shape else ()):
            why = conforms(item, shape[0])
            if why:
                return f"[{i}]: {why}"
        return None
    if isinstance(shape, float):
        ok = isinstance(data, (int, float)) and not isinstance(data, bool)
    else:
        ok = type(data) is type(shape)
    return None if ok else f"{type(shape).__name__} expected, not {type(data).__name__}"


class LeafCache:
    """The cache directory of one (leaf, settings) key.

    ``state_shape`` / ``shard_shape``: what a checkpoint's state and the shard must look like
    (:func:`conforms`; e.g. :func:`lab_tools.sdg.stages.new_state` and :data:`SDG_SHARD_SHAPE`);
    a file that does not is treated as absent, with a warning on stderr."""

    def __init__(self, root: Path, key: str, *, state_shape: dict | None = None, shard_shape: dict | None = None):
        self.key = key
        self.dir = Path(root) / key[:2] / key
        self.lock_path = Path(root) / key[:2] / f"{key}.lock"
        self.state_shape, self.shard_shape = state_shape or {}, shard_shape or {}

    def hold(self, what: str = "") -> AbstractContextManager:
        """A context manager holding this entry's lock (one writer per entry; waits, saying so,
        while another process holds it). ``what``: names the entry in that message."""
        return cache_entry(self.lock_path, f"cache entry {self.key[:12]}" + (f" ({what})" if what else ""))

    def claim(self, what: str = "") -> None:
        """Hold this entry's lock (:meth:`hold`) until the enclosing :func:`holding_entries` call
        ends.

        Raises:
            RuntimeError: no :func:`holding_entries` call encloses this one (a programming error).
        """
        stack = _HELD.get()
        if stack is None:
            raise RuntimeError("LeafCache.claim outside a holding_entries call")
        stack.enter_context(self.hold(what))

    @staticmethod
    def _valid(path: Path, data, shape: dict, kind: str) -> bool:
        why = conforms(data, shape)
        if why:
            click.echo(f"warning: {path}: valid JSON but not a {kind} of this cache ({why}); treated as "
                       "absent, so it is made again", err=True)
        return why is None

    def shard(self) -> dict | None:
        """The finished shard ``{"key", "leaf", "samples", "rejected", "stats"}``, or None."""
        path = self.dir / "shard.json"
        data = _read(path)
        if not (isinstance(data, dict) and data.get("key") == self.key):
            return None
        return data if self._valid(path, data, self.shard_shape, "shard") else None

    def write_shard(self, shard: dict) -> None:
        write_json_atomic(self.dir / "shard.json", shard)

    def checkpoint(self) -> tuple[int, dict] | None:
        """``(stage_index, state)`` of the newest complete stage checkpoint of the expected shape,
        or None."""
        found = []
        if self.dir.is_dir():
            for p in self.dir.glob("stage-*.json"):
                try:
                    found.append((int(p.stem.split("-", 1)[1]), p))
                except ValueError:
                    continue
        for n, p in sorted(found, reverse=True):
            data = _read(p)
            if data is not None and self._valid(p, data, self.state_shape, "stage checkpoint"):
                return n, data
        return None

    def write_checkpoint(self, stage_index: int, state: dict) -> None:
        write_json_atomic(self.dir / f"stage-{stage_index}.json", state)
