"""What a model is evaluated on (:class:`EvalSet`): held-out knowledge MC items and skill prompts,
the *test* part of each leaf (:mod:`lab_tools.eval.sets`; never the items checkpoint selection
used), read from ``lab generate``'s held-out files or built from the taxonomy
(:mod:`lab_tools.eval.heldout`), plus user-supplied MMLU-format files (:func:`load_mmlu_file`).
Items are capped deterministically, round-robin over leaves (files) with a fixed seed, so that a
CPU run stays within minutes and every leaf keeps items (:func:`load_eval_set`).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.errors import LabError, plural
from lab_tools.eval.heldout import knowledge_mc_items, read_mc_items, read_prompts, skill_prompts
from lab_tools.eval.sets import draw, round_robin
from lab_tools.jsonl import iter_jsonl
from lab_tools.taxonomy.leaf import iter_leaves


LETTERS = "ABCDEFGHIJ"


@dataclass
class EvalSet:
    """What a model is evaluated on. ``mc``: held-out knowledge items ``{"leaf", "question",
    "choices", "answer"}``; ``mmlu``: user items ``{"source", "question", "choices", "answer"}``;
    ``prompts``: judge prompts ``{"leaf", "kind", "messages", "reference"}``."""
    mc: list[dict] = field(default_factory=list)
    mmlu: list[dict] = field(default_factory=list)
    prompts: list[dict] = field(default_factory=list)

    def digest(self) -> str:
        """sha256 hex of the items (stable JSON): part of the score cache key and build fingerprint."""
        blob = json.dumps([self.mc, self.mmlu, self.prompts], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.mc) + len(self.mmlu) + len(self.prompts)


def _answer_index(raw, n: int, path: Path, line: int) -> int:
    if isinstance(raw, bool):
        raise LabError("answer must be a letter or an index", file=str(path), line=line, field="answer")
    if isinstance(raw, int) and 0 <= raw < n:
        return raw
    text = str(raw).strip().upper()
    if len(text) == 1 and text in LETTERS[:n]:
        return LETTERS.index(text)
    if text.isdigit() and 0 <= int(text) < n:
        return int(text)
    raise LabError(f"answer {raw!r} is not one of {', '.join(LETTERS[:n])} (or 0..{n - 1})",
                   file=str(path), line=line, field="answer")


def load_mmlu_file(path: str | Path) -> list[dict]:
    """Read an MMLU-format file into items ``{"source", "question", "choices", "answer"}``.

    Formats: ``.csv`` rows ``question,A,B,C,D,answer`` (MMLU's dev/test files: no header; a
    header row ``question,A,B,C,D,answer`` is skipped), answer a letter; ``.jsonl`` lines
    ``{"question", "choices": [...], "answer": index|letter}`` or with keys ``A``..``D``.

    Raises:
        LabError: naming the file, line and field of the first malformed row; an empty file.
    """
    p = Path(path)
    if not p.is_file():
        raise LabError("MMLU file not found", file=str(p))
    items: list[dict] = []
    source = p.name
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabError(f"cannot read: {exc}", file=str(p)) from exc
    if p.suffix.lower() in (".jsonl", ".json"):
        for n, row in iter_jsonl(p):
            if not isinstance(row, dict) or not isinstance(row.get("question"), str):
                raise LabError("expected an object with a string 'question'", file=str(p), line=n,
                               field="question")
            choices = row.get("choices")
            if choices is None:
                choices = [row[k] for k in LETTERS if k in row]
            if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
                raise LabError("need at least 2 string choices", file=str(p), line=n, field="choices")
            items.append({"source": source, "question": row["question"], "choices": choices,
                          "answer": _answer_index(row.get("answer"), len(choices), p, n)})
    else:
        for n, row in enumerate(csv.reader(text.splitlines()), 1):
            if not row or not any(c.strip() for c in row):
                continue
            if n == 1 and [c.strip().lower() for c in row[:1] + row[-1:]] == ["question", "answer"]:
                continue
            if len(row) < 4:
                raise LabError(f"expected question,A,B,C,D,answer; got {plural(len(row), 'column')}",
                               file=str(p), line=n)
            choices = row[1:-1]
            items.append({"source": source, "question": row[0], "choices": choices,
                          "answer": _answer_index(row[-1], len(choices), p, n)})
    if not items:
        raise LabError("no questions in MMLU file", file=str(p))
    return items


def load_eval_set(*, taxonomy: str | Path | None = None, data_dir: str | Path | None = None,
                  mmlu_files: list[str | Path] = (), max_mc: int | None = 120,
                  max_prompts: int | None = 16, part: str | None = "test") -> EvalSet:
    """Collect evaluation items.

    Held-out items come from ``data_dir``'s ``heldout_mc.jsonl``/``heldout_prompts.jsonl``
    (written by ``lab generate``) when present, else are built from the taxonomy at ``taxonomy``.
    ``part``: which part of the held-out items (:mod:`lab_tools.eval.sets`): ``test`` (released
    figures; never the items a checkpoint was selected on), ``selection``, or None (all). Items are
    drawn round-robin over leaves (MMLU items over files) with a fixed seed; ``max_mc`` caps
    held-out and MMLU items each, ``max_prompts`` the judge prompts (None: no cap).

    Raises:
        LabError: a bad MMLU file, a malformed held-out row or a leaf that cannot be loaded.
    """
    mc: list[dict] = []
    prompts: list[dict] = []
    found = False
    if data_dir is not None:
        d = Path(data_dir)
        if (d / "heldout_mc.jsonl").is_file() or (d / "heldout_prompts.jsonl").is_file():
            mc, prompts, found = read_mc_items(d / "heldout_mc.jsonl"), read_prompts(d / "heldout_prompts.jsonl"), True
    if not found and taxonomy is not None:
        leaves = iter_leaves(taxonomy)
        mc, prompts = knowledge_mc_items(leaves), skill_prompts(leaves)
    mmlu: list[dict] = []
    for f in mmlu_files:
        mmlu += load_mmlu_file(f)
    pick = (lambda rows, cap: round_robin(rows, cap)) if part is None else (lambda rows, cap: draw(rows, part, cap))
    return EvalSet(mc=pick(mc, max_mc), mmlu=round_robin(mmlu, max_mc, key="source"),
                   prompts=pick(prompts, max_prompts))
