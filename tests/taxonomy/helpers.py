"""Small builders for taxonomy test trees (valid leaves that each test then breaks on purpose)."""

from __future__ import annotations

from pathlib import Path

import yaml


def skill(n: int = 5, version: int = 3, context: bool = False) -> dict:
    """A valid skills qna.yaml mapping with ``n`` distinct seed examples."""
    examples = []
    for i in range(n):
        ex = {"question": f"What is {i} plus {i}?", "answer": f"{i} plus {i} is {2 * i}."}
        if context:
            ex["context"] = f"Table row {i}: value {i}."
        examples.append(ex)
    return {"version": version, "created_by": "tester", "task_description": "Add small numbers.",
            "seed_examples": examples}


def knowledge(n: int = 5) -> dict:
    """A valid knowledge v3 qna.yaml mapping."""
    return {"version": 3, "created_by": "tester", "domain": "Astronomy",
            "document_outline": "Facts about the moon.",
            "document": {"repo": "https://example.org/docs.git", "commit": "0" * 40, "patterns": ["*.md"]},
            "seed_examples": [{"context": f"The moon fact number {i}.",
                               "questions_and_answers": [{"question": f"Fact {i}, part {j}?",
                                                          "answer": f"Answer {i}.{j}."} for j in range(3)]}
                              for i in range(n)]}


def write_leaf(root: Path, leaf: str, data: dict | str, attribution: str | None = None) -> Path:
    """Write ``root/leaf/qna.yaml`` (a mapping is dumped as block YAML) and optional attribution.txt."""
    d = root / leaf
    d.mkdir(parents=True, exist_ok=True)
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)
    (d / "qna.yaml").write_text(text, encoding="utf-8")
    if attribution is not None:
        (d / "attribution.txt").write_text(attribution, encoding="utf-8")
    return d / "qna.yaml"


ATTRIBUTION = ("Title of work: Moon facts\nLink to work: https://example.org/moon\n"
               "License of the work: CC-BY-4.0\nCreator names: Example Authors\n")
