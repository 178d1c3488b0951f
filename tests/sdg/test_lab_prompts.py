"""LAB as written (arXiv 2403.01081, 3.2.1): the instruction-generation prompt carries figure 3's
principles; pair evaluation uses figure 4's 3-point scale with its meanings, the judge explains
before it scores and the score is read from the end of its reply; an SDG answer that copies a
held-out seed answer is rejected like a copied question."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab_tools.jsonl import read_jsonl
from lab_tools.sdg import filters, quality
from lab_tools.sdg.datacard import scores_of
from lab_tools.sdg.fake import ScriptedTeacher
from lab_tools.sdg.pipeline import generate_dataset
from lab_tools.sdg.skills import _build_questions
from lab_tools.sdg.stages import LeafContext, new_state
from lab_tools.sdg.templates import load_prompts
from lab_tools.taxonomy.leaf import load_leaf

HAIKU = "compositional_skills/writing/poetry/haiku"
MATH = "foundational_skills/reasoning/arithmetic"
DATES = "compositional_skills/grounded/extraction/dates"


@pytest.mark.parametrize("leaf_path", [HAIKU, DATES])
def test_instruction_generation_states_figure_3_principles(taxonomy, cfg, leaf_path):
    ctx = LeafContext(load_leaf(taxonomy, leaf_path), cfg.generate, count_tokens=len)
    reqs = _build_questions(ctx, new_state())
    assert reqs
    for r in reqs:
        system = r.messages[0]["content"].lower()
        assert "{principles}" not in system
        for principle in ("diverse", "style", "length", "on the task", "language model can answer in text",
                          "harmful", "do not repeat the examples"):
            assert principle in system, principle


def test_pair_evaluation_states_figure_4_scale_and_explanation_first():
    spec = load_prompts()["skills"]["pair_eval"]
    system = spec["system"]
    assert re.search(r"1 = incorrect, irrelevant, unsafe, incomplete or cut off, or harmful", system)
    assert "2 = correct but brief, without explanation or context" in system
    assert "3 = complete, well explained, expert and safe" in system
    assert system.index("Explanation:") < system.index("Score:")  # explain first, then score
    for ex in spec["examples"]:  # each example shows the format, with numbers in its explanation
        explanation, score = ex["reply"].rsplit("\n", 1)
        assert explanation.startswith("Explanation:") and re.search(r"\d", explanation)
        assert score.startswith("Score:")
        assert quality.parse_score(ex["reply"]) == int(score.split(":")[1])


def test_the_scripted_judge_answers_in_the_new_format(cfg):
    from lab_tools.sdg.backends import ChatRequest

    reply = ScriptedTeacher().generate([ChatRequest([{"role": "user", "content": "x"}], tag="pair_eval",
                                                    max_tokens=cfg.generate.eval_tokens)])[0].text
    assert reply.startswith("Explanation:") and quality.parse_score(reply) == 3


def _script(tmp_path: Path, data: dict) -> ScriptedTeacher:
    p = tmp_path / "script.json"
    p.write_text(json.dumps(data))
    return ScriptedTeacher(str(p))


@pytest.mark.parametrize("reply,kept", [
    ("Explanation: 3 lines, but 2 of them are off the topic.\nScore: 1", False),   # opens with a 3
    ("Explanation: 1 step, correct, and 2 reasons are given.\nScore: 3", True),    # opens with a 1
])
def test_pair_scores_are_read_after_the_explanation(taxonomy, cfg, tmp_path, reply, kept):
    """A judge that explains with numbers: the score is the one after the explanation."""
    cfg.generate.eval_tokens = 64
    out = tmp_path / "out"
    rep = generate_dataset(taxonomy, [HAIKU], out, cfg, teacher=_script(tmp_path, {"pair_eval": [{"reply": reply}]}),
                           progress=False)
    stats = rep.leaves[0]
    judged = [r for r in read_jsonl(out / "rejected.jsonl") if r["stage"] == "pair_eval"]
    if kept:
        assert stats.kept > 0 and not judged
        assert all(scores_of(s["metadata"])["pair"] == 3 for s in read_jsonl(out / "st.jsonl"))
    else:
        assert stats.kept == 0 and judged
        assert {r["reason"] for r in judged} == {"pair score 1 < threshold 3"}


def test_an_answer_copying_a_seed_answer_never_trains(taxonomy, cfg, tmp_path):
    seed_answer = load_leaf(taxonomy, MATH).seed_examples[0].answer  # "2 plus 3 is 5."
    t = _script(tmp_path, {"response": [{"reply": seed_answer.upper()}]})
    out = tmp_path / "out"
    rep = generate_dataset(taxonomy, [MATH], out, cfg, teacher=t, progress=False)
    assert rep.leaves[0].kept == 0
    rejected = read_jsonl(out / "rejected.jsonl")
    assert rejected and all(r["stage"] == "filters" and r["reason"] == filters.SEED_COPY
                            for r in rejected if r.get("answer"))


def test_short_label_answers_are_not_seed_copies():
    """A classification leaf's seed answer "Positive." is what a right answer to another review
    says too: only seed answers of SEED_ANSWER_MIN_WORDS words or more are checked for copies."""
    from types import SimpleNamespace

    from lab_tools.config_sections import FiltersConfig
    from lab_tools.taxonomy.leaf import SeedExample

    leaf = SimpleNamespace(kind="compositional_skills", seed_examples=[
        SeedExample(question="Classify the review: I loved every minute of it.", answer="Positive."),
        SeedExample(question="Classify the review: a dull, slow film.", answer="The review is clearly negative.")])
    seeds = filters.seed_texts(leaf)
    assert filters.check("Classify the review: great acting.", "Positive.", FiltersConfig(), seeds=seeds).reason is None
    assert filters.check("Classify the review: boring.", "the review is clearly NEGATIVE", FiltersConfig(),
                         seeds=seeds).reason == filters.SEED_COPY
