"""Test data for SDG tests: a small taxonomy (creative skill, foundational skill, grounded skill, knowledge)."""

from __future__ import annotations

from pathlib import Path

import yaml


HAIKU = {"version": 3, "created_by": "tester", "task_description": "Write a haiku about a topic.",
         "seed_examples": [{"question": f"Write a haiku about {t}.", "answer": f"A haiku about {t}\nfive seven five\nthe end"}
                           for t in ("rain", "snow", "the sea", "autumn leaves", "a cat")]}
MATH = {"version": 3, "created_by": "tester", "task_description": "Solve arithmetic word problems.",
        "seed_examples": [{"question": f"What is {a} plus {b}?", "answer": f"{a} plus {b} is {a + b}."}
                          for a, b in ((2, 3), (10, 7), (41, 1), (6, 6), (9, 90))]}
GROUNDED = {"version": 3, "created_by": "tester", "task_description": "Extract the date from the text.",
            "seed_examples": [{"context": f"The meeting about item {i} took place on {d} in the main hall.",
                               "question": "On which date did the meeting take place?", "answer": d}
                              for i, d in enumerate(("1 May", "2 June", "3 July", "4 August", "5 March"))]}
DOC = ("# Planets\n\nMercury is the closest planet to the Sun and has no moons. "
       "Venus is the hottest planet because its thick atmosphere traps heat. "
       "Earth is the only planet known to support life.\n\n"
       "Mars has two small moons named Phobos and Deimos. Jupiter is the largest planet in the Solar System "
       "and has a storm called the Great Red Spot that has lasted for centuries. "
       "Saturn has bright rings made of ice and rock.\n")
KNOWLEDGE = {"version": 3, "created_by": "tester", "domain": "astronomy",
             "document_outline": "Facts about the planets of the Solar System.",
             "document": {"repo": "https://example.org/docs.git", "commit": "a" * 40, "patterns": ["planets.md"]},
             "seed_examples": [{"context": "Mercury is the closest planet to the Sun.",
                                "questions_and_answers": [
                                    {"question": f"Which planet is closest to the Sun? ({k})", "answer": "Mercury."}
                                    for k in range(3)]} for _ in range(5)]}

LEAVES = {"compositional_skills/writing/poetry/haiku": HAIKU,
          "foundational_skills/reasoning/arithmetic": MATH,
          "compositional_skills/grounded/extraction/dates": GROUNDED,
          "knowledge/science/planets": KNOWLEDGE}


def write_leaf(root: Path, path: str, data: dict) -> None:
    d = root / path
    d.mkdir(parents=True, exist_ok=True)
    (d / "qna.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
