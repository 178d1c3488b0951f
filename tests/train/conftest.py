"""Fixtures for training tests: a small synthetic phase-data dir, a fast preset, a fake judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab_tools.sdg.backends import Completion

FACTS = ["Paris is the capital of France.", "The quick brown fox jumps over the lazy dog.",
         "Waves fold into foam.", "Knowledge documents are chunked into passages.",
         "Score: 3. The answer is correct and complete.", "0 1 2 3 4 5 6 7 8 9 10"]


def _sample(q: str, a: str, phase: str, kind: str, **meta) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            "metadata": {"leaf": f"{kind}/leaf", "leaf_hash": "0" * 64, "kind": kind,
                         "phase": phase, **meta}}


def write_phase_data(root: Path, n: int = 12) -> Path:
    """kt1 (short answers), kt2 (long answers), st (skills), and held-out files."""
    root.mkdir(parents=True, exist_ok=True)
    rows = {"kt1": [], "kt2": [], "st": []}
    for i in range(n):
        f = FACTS[i % len(FACTS)]
        rows["kt1"].append(_sample(f"Question: what is fact {i % 6}?", f, "kt1", "knowledge"))
        rows["kt2"].append(_sample(f"Summarize fact {i % 6} in detail.", f"{f} {f} Explanation: {f}",
                                   "kt2", "knowledge", loss_on="all" if i == 0 else None))
        rows["st"].append(_sample(f"Write a haiku about fact {i % 6}.", f"Waves fold into foam. {f}",
                                  "st", "compositional_skills"))
    for name, rs in rows.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    mc = [{"leaf": "knowledge/leaf", "question": f"What is fact {i}?",
           "choices": [FACTS[i], FACTS[(i + 1) % 6], FACTS[(i + 2) % 6]], "answer": 0} for i in range(4)]
    prompts = [{"leaf": "compositional_skills/leaf", "kind": "compositional_skills",
                "messages": [{"role": "user", "content": "Write a haiku about the sea."}],
                "reference": "Waves fold into foam."}]
    (root / "heldout_mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mc))
    (root / "heldout_prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prompts))
    return root


FAST_PRESET = {
    "max_seq_len": 96, "micro_batch_tokens": 192, "dtype": "float32", "mixed_precision": "no",
    "save_state_steps": 1, "seed": 7,
    "selection": {"max_mc_items": 4, "max_prompts": 1, "max_new_tokens": 8, "judge_max_tokens": 32,
                  "max_checkpoints": 2, "batch_size": 4},
    "kt1": {"learning_rate": 3e-3, "effective_batch_size": 4, "warmup_steps": 2, "epochs": 2},
    "kt2": {"learning_rate": 3e-3, "effective_batch_size": 4, "warmup_steps": 2, "epochs": 2,
            "replay_fraction": 0.5},
    "st": {"learning_rate": 3e-3, "effective_batch_size": 4, "warmup_steps": 2, "epochs": 2,
           "replay_fraction": 0.5},
}


class FakeJudge:
    """A Teacher stand-in: rates every answer 7 ("Rating: [[7]]") and records the requests."""
    name = "fake-judge"

    def __init__(self):
        self.requests = []

    def generate(self, requests):
        self.requests += requests
        return [Completion(text="The answer is fine. Rating: [[7]]") for _ in requests]

    def count_tokens(self, text):
        return len(text.split())


@pytest.fixture()
def phase_data(tmp_path) -> Path:
    return write_phase_data(tmp_path / "data")


@pytest.fixture()
def fast_preset(tmp_path) -> Path:
    import yaml

    p = tmp_path / "fast.yaml"
    p.write_text(yaml.safe_dump(FAST_PRESET))
    return p
