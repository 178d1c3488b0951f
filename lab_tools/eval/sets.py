"""Selection and test sets of held-out items: stratified by leaf, disjoint, fixed seed.

Every set a decision or a released figure rests on comes from here: KT/1, KT/2 and ST checkpoint
selection (:mod:`lab_tools.train.phases`), the preference phase's selection
(:mod:`lab_tools.train.pref`), the alignment evaluation and ``lab evaluate``
(:func:`lab_tools.eval.evalset.load_eval_set`).

- **Item id** (:func:`item_id`): the row's ``id`` when it has one, else the first 16 hex digits of
  sha256 over its leaf and its question (MC items) or its messages (prompts), so the same
  question keeps its id across runs and files.
- **Split** (:func:`split`): per leaf, the distinct ids are ordered by ``sha256(SEED, id)`` and
  dealt alternately to ``selection`` (1st, 3rd, ...) and ``test`` (2nd, 4th, ...). Every leaf with
  at least one item has selection items; every leaf with two or more has test items; rows sharing
  an id fall in the same part, so the parts are disjoint by id. Decisions (which checkpoint,
  whether pref replaces ST) use ``selection``; released figures (``lab evaluate``, the alignment
  evaluation, the model card) use ``test``, so a figure is never the one a checkpoint was chosen on.
- **Draw** (:func:`round_robin`): items are taken one leaf at a time in turn, leaves ordered by
  ``sha256(SEED, leaf)``, items within a leaf by ``sha256(SEED, id)``, up to a cap; a capped set
  spreads over as many leaves as the cap allows instead of being the head of a leaf-sorted file.

:data:`SEED` is a constant, not a preset setting: training and ``lab evaluate`` must agree on the
split for the two parts to stay disjoint.
"""

from __future__ import annotations

import hashlib
import json

from lab_tools.eval.heldout import read_mc_items, read_prompts

SEED = "lab-tools-heldout-1"
PARTS = ("selection", "test")


def _h(*parts) -> str:
    return hashlib.sha256("\0".join(str(p) for p in (SEED, *parts)).encode()).hexdigest()


def item_id(item: dict) -> str:
    """A stable id of a held-out row (module doc); 16 hex digits unless the row carries ``id``."""
    if item.get("id"):
        return str(item["id"])
    body = item.get("question") if "question" in item else item.get("messages")
    blob = json.dumps([item.get("leaf") or item.get("source") or "", body], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _by_leaf(items: list[dict], key: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for it in items:
        groups.setdefault(str(it.get(key) or ""), []).append(it)
    return groups


def split(items: list[dict], key: str = "leaf") -> dict[str, list[dict]]:
    """``{"selection": [...], "test": [...]}``: each leaf's items dealt by hash order (module
    doc). Rows keep their file order inside a part."""
    part_of: dict[str, str] = {}
    for leaf, rows in _by_leaf(items, key).items():
        ids = sorted({item_id(r) for r in rows}, key=lambda i: _h("split", leaf, i))
        for pos, i in enumerate(ids):
            part_of[i] = PARTS[pos % 2]
    out: dict[str, list[dict]] = {p: [] for p in PARTS}
    for it in items:
        out[part_of[item_id(it)]].append(it)
    return out


def round_robin(items: list[dict], cap: int | None = None, key: str = "leaf") -> list[dict]:
    """At most ``cap`` items (None: all), one per leaf (``item[key]``) in turn, in the seeded
    order of the module doc. Deterministic; the same items give the same list."""
    queues = [sorted(rows, key=lambda r: _h("order", item_id(r)))
              for _, rows in sorted(_by_leaf(items, key).items(), key=lambda kv: _h("leaf", kv[0]))]
    out: list[dict] = []
    limit = len(items) if cap is None else min(cap, len(items))
    depth = 0
    while len(out) < limit:
        for q in queues:
            if depth < len(q) and len(out) < limit:
                out.append(q[depth])
        depth += 1
    return out


def draw(items: list[dict], part: str, cap: int | None = None, key: str = "leaf") -> list[dict]:
    """The ``part`` (``selection`` or ``test``) of ``items``, drawn round-robin up to ``cap``.

    Raises:
        ValueError: an unknown part.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    return round_robin(split(items, key)[part], cap, key)


def describe(items: list[dict]) -> list[dict]:
    """``[{"id", "leaf"}]`` of a set, in order: what a decision record names."""
    return [{"id": item_id(it), "leaf": it.get("leaf") or it.get("source")} for it in items]


def selection_sets(data_dir, max_mc: int | None, max_prompts: int | None) -> tuple[list[dict], list[dict]]:
    """``(mc_items, prompts)``: the selection parts of ``data_dir``'s ``heldout_mc.jsonl`` and
    ``heldout_prompts.jsonl``, drawn round-robin up to the caps (empty when a file is missing).

    Raises:
        LabError: a malformed held-out row (see :mod:`lab_tools.eval.heldout`).
    """
    from pathlib import Path

    d = Path(data_dir)
    return (draw(read_mc_items(d / "heldout_mc.jsonl"), "selection", max_mc),
            draw(read_prompts(d / "heldout_prompts.jsonl"), "selection", max_prompts))
