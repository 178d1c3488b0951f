"""JSON Lines reading shared by every stage (phase datasets, held-out items, MMLU files).

A malformed line is a LabError naming the file and line, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from lab_tools.errors import LabError


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, object]]:
    """Yield ``(1-based line number, parsed value)`` for each non-blank line of ``path``.

    Raises:
        LabError: the file cannot be read as UTF-8, or a line is not JSON (file and line named).
    """
    p = Path(path)
    try:
        with p.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LabError(f"not JSON: {exc.msg}", file=str(p), line=lineno) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabError(f"cannot read: {exc}", file=str(p)) from None


def read_jsonl(path: str | Path) -> list:
    """Every value of a JSONL file (an empty list if the file does not exist).

    Raises:
        LabError: as :func:`iter_jsonl`.
    """
    return [row for _, row in iter_jsonl(path)] if Path(path).is_file() else []


def count_lines(path: str | Path) -> int:
    """The number of non-blank lines of a JSONL file, without parsing them (0 when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return 0
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())
