"""Held-out evaluation items built from the taxonomy's seed examples.

SDG uses seed examples only as in-context examples and never writes them as training samples,
so they serve as held-out questions (LAB 3.3 checkpoint selection; DESIGN.md):

- knowledge leaves -> multiple-choice items (MMLU style): the seed answer plus up to 3 other
  answers of the same leaf (then of other knowledge leaves) as distractors, order fixed by a hash;
- skills leaves -> judge prompts: the seed question (with its context for grounded skills) and
  the seed answer as a reference for the judge.

Files written by ``lab generate`` next to the phase datasets:
``heldout_mc.jsonl``: {"leaf", "question", "choices": [str], "answer": int}
``heldout_prompts.jsonl``: {"leaf", "kind", "messages": [{"role": "user", ...}], "reference": str}

Both are read back through :func:`read_mc_items` / :func:`read_prompts`, which check every row's
shape (a hand-edited or truncated file is a clean error naming file, line and field).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from lab_tools.atomic import write_jsonl_atomic
from lab_tools.errors import LabError
from lab_tools.jsonl import iter_jsonl
from lab_tools.taxonomy.leaf import Leaf


def _order(key: str, n: int) -> list[int]:
    return sorted(range(n), key=lambda i: hashlib.sha256(f"{key}\0{i}".encode()).hexdigest())


def knowledge_mc_items(leaves: list[Leaf], n_choices: int = 4) -> list[dict]:
    """Multiple-choice items from knowledge leaves' seed Q&A. Items with fewer than 2 distinct
    choices are skipped. Returns dicts ``{"leaf", "question", "choices", "answer"}``."""
    pool = {leaf.path: [a for s in leaf.seed_examples for _, a in s.qna if a]
            for leaf in leaves if leaf.kind == "knowledge"}
    everyone = [a for answers in pool.values() for a in answers]
    items = []
    for leaf in leaves:
        if leaf.kind != "knowledge":
            continue
        for seed in leaf.seed_examples:
            for question, answer in seed.qna:
                if not question or not answer:
                    continue
                distractors = []
                for cand in pool[leaf.path] + everyone:
                    if cand != answer and cand not in distractors:
                        distractors.append(cand)
                    if len(distractors) == n_choices - 1:
                        break
                if not distractors:
                    continue
                choices = [answer] + distractors
                order = _order(question, len(choices))
                shuffled = [choices[i] for i in order]
                items.append({"leaf": leaf.path, "question": question, "choices": shuffled,
                              "answer": order.index(0)})
    return items


def skill_prompts(leaves: list[Leaf]) -> list[dict]:
    """Judge prompts from skills leaves' seed examples:
    ``{"leaf", "kind", "messages": [{"role": "user", "content"}], "reference"}``."""
    out = []
    for leaf in leaves:
        if leaf.kind == "knowledge":
            continue
        for seed in leaf.seed_examples:
            if not seed.question:
                continue
            content = f"{seed.question}\n\n{seed.context}" if seed.context else seed.question
            out.append({"leaf": leaf.path, "kind": leaf.kind,
                        "messages": [{"role": "user", "content": content}],
                        "reference": seed.answer or ""})
    return out


def write_heldout(leaves: list[Leaf], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``heldout_mc.jsonl`` and ``heldout_prompts.jsonl`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "heldout_mc.jsonl", out / "heldout_prompts.jsonl")
    for path, rows in zip(paths, (knowledge_mc_items(leaves), skill_prompts(leaves))):
        write_jsonl_atomic(path, rows)
    return paths


def _rows(path: str | Path, check) -> list[dict]:
    """Every row of a held-out JSONL file (empty when it is missing), each an object with a
    string ``leaf`` (when present) that passes ``check(row, path, line)``."""
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    for n, row in iter_jsonl(p):
        if not isinstance(row, dict):
            raise LabError(f"expected a JSON object, got a {type(row).__name__}", file=str(p), line=n)
        if not isinstance(row.get("leaf", ""), str):
            raise LabError("expected a leaf path (a string)", file=str(p), line=n, field="leaf")
        check(row, p, n)
        rows.append(row)
    return rows


def _check_mc(row: dict, p: Path, n: int) -> None:
    if not isinstance(row.get("question"), str) or not row["question"].strip():
        raise LabError("expected a non-empty string", file=str(p), line=n, field="question")
    choices = row.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise LabError("expected a list of at least 2 strings" + ("" if "choices" in row else " (missing)"),
                       file=str(p), line=n, field="choices")
    answer = row.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise LabError(f"expected the index of the right choice, 0..{len(choices) - 1}, got {answer!r}",
                       file=str(p), line=n, field="answer")


def _check_prompt(row: dict, p: Path, n: int) -> None:
    msgs = row.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in msgs) or not any(m["role"] == "user" for m in msgs):
        raise LabError("expected a non-empty list of {role, content} strings with a user turn",
                       file=str(p), line=n, field="messages")
    if not isinstance(row.get("reference", ""), str):
        raise LabError("expected a string", file=str(p), line=n, field="reference")


def read_mc_items(path: str | Path) -> list[dict]:
    """The rows of a ``heldout_mc.jsonl`` (empty when the file is missing), each checked:
    ``question`` a non-empty string, ``choices`` a list of at least 2 strings, ``answer`` an
    integer index into ``choices``.

    Raises:
        LabError: the first malformed row (file, line and field named) or a line that is not JSON.
    """
    return _rows(path, _check_mc)


def read_prompts(path: str | Path) -> list[dict]:
    """The rows of a ``heldout_prompts.jsonl`` (empty when the file is missing), each checked:
    ``messages`` a non-empty list of ``{"role", "content"}`` strings with a user turn,
    ``reference`` a string when present.

    Raises:
        LabError: the first malformed row (file, line and field named) or a line that is not JSON.
    """
    return _rows(path, _check_prompt)
