"""Evaluation data shipped inside the package (never trained on): Static HHH and the Vicuna
questions, with their source, license and sha256 in ``README.md`` beside them.

ALMoST (arXiv 2305.13735, section 4) evaluates alignment on Static HHH (BIG-bench's HHH alignment
task, 221 pairs, accuracy per type) and on the 80 Vicuna questions (A/B win rates). The files
are found through this module, so a clone without ``../shared`` evaluates the same way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lab_tools.errors import LabError

HERE = Path(__file__).resolve().parent

#: file name -> sha256 of its bytes (README.md lists the same values)
CHECKSUMS = {
    "hhh_eval.json": "377ae88ce833896553059fbe3e7474a13ca30f08473ef95cb95ed3fdfeadf7a7",
    "vicuna_questions.jsonl": "590c39157bc561eadd7f03cad4be18c2b597f93029780af65f86718f39eafa87",
}


def shipped_file(name: str) -> Path:
    """Path of the shipped evaluation file ``name`` (a key of :data:`CHECKSUMS`), checked.

    Raises:
        LabError: the file is missing (a broken install: reinstall lab-tools) or its sha256
        differs from the recorded one (the file was edited), naming the file.
    """
    path = HERE / name
    if not path.is_file():
        raise LabError("the shipped evaluation file is missing (reinstall lab-tools)", file=str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != CHECKSUMS[name]:
        raise LabError(f"the shipped evaluation file was modified: sha256 {digest[:12]}..., expected "
                       f"{CHECKSUMS[name][:12]}... (see {HERE / 'README.md'})", file=str(path))
    return path


def static_hhh_path() -> Path:
    """The shipped Static HHH pairs (``hhh_eval.json``, 221 pairs); see :func:`shipped_file`."""
    return shipped_file("hhh_eval.json")


def vicuna_questions_path() -> Path:
    """The shipped Vicuna questions (``vicuna_questions.jsonl``, 80); see :func:`shipped_file`."""
    return shipped_file("vicuna_questions.jsonl")


def load_vicuna_questions(path: str | Path | None = None) -> list[dict]:
    """The Vicuna questions as ``[{"question_id": int, "text": str, "category": str}]`` in file
    order (default: the shipped file).

    Raises:
        LabError: the file is missing, or a line is not JSON or lacks ``text`` (line named).
    """
    path = Path(path) if path is not None else vicuna_questions_path()
    if not path.is_file():
        raise LabError("Vicuna questions not found", file=str(path))
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabError(f"not valid JSON ({exc.msg})", file=str(path), line=lineno) from exc
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise LabError("a question needs a non-empty 'text'", file=str(path), line=lineno)
        out.append(row)
    return out
