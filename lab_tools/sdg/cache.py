"""Content-addressed cache of per-leaf SDG shards with per-stage checkpoints (LAB 3.2 SDG, resumable).

Layout: ``<cache>/sdg/<key[:2]>/<key>/`` holding ``stage-<n>.json`` checkpoints (the leaf's
state after stage n) and ``shard.json`` (the finished leaf). ``key`` is the sha256 of the leaf
content hash, document commits, teacher, judge, prompt version and sample settings, so a changed
input gets a new directory and an unchanged one is reused. Every file is written atomically
(:mod:`lab_tools.atomic`), so a run killed at any moment (kill -9) leaves either the old file or
the new one, never a torn one; a rerun resumes from the newest complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lab_tools.atomic import write_json_atomic  # re-exported: other modules import it from here


def cache_key(parts: dict) -> str:
    """sha256 hex of the canonical JSON of ``parts`` (sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _read(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # missing or unreadable: treated as absent, so the stage is redone


class LeafCache:
    """The cache directory of one (leaf, settings) key."""

    def __init__(self, root: Path, key: str):
        self.key = key
        self.dir = Path(root) / key[:2] / key

    def shard(self) -> dict | None:
        """The finished shard ``{"key", "leaf", "samples", "rejected", "stats"}``, or None."""
        data = _read(self.dir / "shard.json")
        return data if isinstance(data, dict) and data.get("key") == self.key else None

    def write_shard(self, shard: dict) -> None:
        write_json_atomic(self.dir / "shard.json", shard)

    def checkpoint(self) -> tuple[int, dict] | None:
        """``(stage_index, state)`` of the newest complete stage checkpoint, or None."""
        best = None
        if self.dir.is_dir():
            for p in self.dir.glob("stage-*.json"):
                try:
                    n = int(p.stem.split("-", 1)[1])
                except ValueError:
                    continue
                if best is None or n > best:
                    data = _read(p)
                    if isinstance(data, dict):
                        best = n
                        state = data
        return (best, state) if best is not None else None

    def write_checkpoint(self, stage_index: int, state: dict) -> None:
        write_json_atomic(self.dir / f"stage-{stage_index}.json", state)
