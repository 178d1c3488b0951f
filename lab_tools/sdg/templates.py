"""Prompt templates for SDG, shipped as package data (``lab_tools/sdg/prompts/*.yaml``).

``PROMPT_VERSION`` combines each file's ``version`` with a hash of the files' bytes, so any edit
to a prompt changes every cache key (LAB 3.2: the prompts are part of the data's provenance).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources

import yaml

FILES = ("skills.yaml", "knowledge.yaml")


@lru_cache(maxsize=1)
def load_prompts() -> dict[str, dict]:
    """``{"skills": {...}, "knowledge": {...}}`` as parsed from the YAML files."""
    base = resources.files("lab_tools.sdg") / "prompts"
    return {name.removesuffix(".yaml"): yaml.safe_load((base / name).read_text(encoding="utf-8"))
            for name in FILES}


@lru_cache(maxsize=1)
def prompt_version() -> str:
    """E.g. ``skills-1+knowledge-1@3f2a9c1d0b7e``: versions plus the first 12 hex of the bytes' sha256."""
    base = resources.files("lab_tools.sdg") / "prompts"
    h = hashlib.sha256()
    for name in FILES:
        h.update((base / name).read_bytes())
    p = load_prompts()
    return f"{p['skills']['version']}+{p['knowledge']['version']}@{h.hexdigest()[:12]}"


def chat(system: str, user: str, **values) -> list[dict]:
    """Messages ``[system, user]`` with ``user`` formatted from ``values`` (braces in values are safe)."""
    return [{"role": "system", "content": system.strip()},
            {"role": "user", "content": user.format(**values).strip()}]


def fewshot(system: str, turns: list[tuple[list[dict], str]], user: str) -> list[dict]:
    """``[system, (user, assistant)*, user]``: in-context examples as earlier chat turns."""
    msgs = [{"role": "system", "content": system.strip()}]
    for u, a in turns:
        msgs += [{"role": "user", "content": u.strip()}, {"role": "assistant", "content": a.strip()}]
    msgs.append({"role": "user", "content": user.strip()})
    return msgs


def judge_messages(spec: dict, rotation: int, **values) -> list[dict]:
    """Messages for a judge stage whose YAML ``spec`` has ``system``, ``user`` and ``examples``
    (each with the user's placeholders and a ``reply``). The examples are rotated by ``rotation``
    so that no verdict is always shown last (small models copy the last verdict)."""
    ex = spec.get("examples") or []
    if ex:
        k = rotation % len(ex)
        ex = ex[k:] + ex[:k]
    turns = [(spec["user"].format(**{k: v for k, v in e.items() if k != "reply"}), str(e["reply"]))
             for e in ex]
    return fewshot(spec["system"], turns, spec["user"].format(**values))
