"""Fixtures for evaluation tests: a scripted judge that rates every answer (no model needed)."""

import json

import pytest

JUDGE_SCRIPT = {"response": [{"match": "impartial judge",
                              "reply": ["The answer is short. Rating: [[4]]", "Relevant and clear. Rating: [[7]]",
                                        "Off topic, no rating here."]}]}


@pytest.fixture()
def judge_spec(tmp_path) -> str:
    """``scripted:PATH``: the fake teacher answering MT-Bench grading prompts with [[4]], [[7]] or
    an unparseable reply (chosen by a hash of the request)."""
    path = tmp_path / "judge.json"
    path.write_text(json.dumps(JUDGE_SCRIPT), encoding="utf-8")
    return f"scripted:{path}"
