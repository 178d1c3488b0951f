"""Held-out seed examples never leak into training (DESIGN.md, Trust boundary; LAB 3.2 quality
controls): a teacher that answers the instruction-generation prompt with near-copies of the seed
questions it was shown (one word changed, added or dropped, punctuation or case or spacing
changed) gets none of them into kt1/kt2/st.jsonl, through ``lab generate``."""

from __future__ import annotations

import json

import pytest
import yaml

from lab_tools.config_sections import FiltersConfig, GenerateConfig
from lab_tools.jsonl import read_jsonl
from lab_tools.sdg import quality

HAIKU_SEEDS = ["Write a haiku about the first snow of winter.",
               "Write a haiku about a heron waiting by the river.",
               "Compose a haiku about city lights at night."]
UNITS_SEEDS = ["How many centimeters are in one meter?",
               "How many minutes are in three hours?",
               "Define a kilogram."]
PLANET_SEEDS = ["Which planet has two small moons?", "What is the hottest planet?",
                "Which planet is the largest in the Solar System?"]
DOC = ("Mercury is the closest planet to the Sun. Venus is the hottest planet because its thick "
       "atmosphere traps heat. Mars has two small moons named Phobos and Deimos. Jupiter is the "
       "largest planet in the Solar System.")

# near-copies of the seeds above, each marked with what changed
HAIKU_COPIES = ["Write a haiku about the first snow of spring.",         # one word changed
                "write a haiku about the first snow of winter!",          # case + punctuation
                "WRITE A HAIKU ABOUT A HERON WAITING BY THE RIVER",        # case, no punctuation
                "Compose a haiku, about city lights at night."]           # one comma added
UNITS_COPIES = ["How many centimeters are in one yard?",                  # one word changed
                "how   many minutes are in THREE hours ?",                # spacing + case
                "Define a kilometer."]                                    # 3 words, one changed
PLANET_COPIES = ["Which planet has two tiny moons?", "what is the HOTTEST planet",
                 "Which planet is the biggest in the Solar System?"]
NOVEL = {"haiku": "Describe a quiet harbor at dawn in three short sentences.",
         "units": "Explain why a leap year has one extra day in February."}


def _leaf(root, path, data):
    d = root / path
    d.mkdir(parents=True)
    (d / "qna.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@pytest.fixture()
def taxonomy(tmp_path, monkeypatch):
    """A compositional skill (-> st), a foundational skill (-> kt2) and a knowledge leaf
    (-> kt1/kt2, its document resolved to DOC without a network)."""
    from lab_tools.taxonomy import documents

    root = tmp_path / "taxonomy"
    skill = lambda task, seeds: {"version": 3, "created_by": "tester", "task_description": task,  # noqa: E731
                                 "seed_examples": [{"question": q, "answer": f"An answer to: {q}"} for q in seeds]}
    _leaf(root, "compositional_skills/writing/poetry/haiku", skill("Write a haiku on a topic.", HAIKU_SEEDS))
    _leaf(root, "foundational_skills/reasoning/units", skill("Answer questions about units.", UNITS_SEEDS))
    _leaf(root, "knowledge/science/planets", {
        "version": 3, "created_by": "tester", "domain": "astronomy", "document_outline": "Planets.",
        "document": {"repo": "https://example.org/docs.git", "commit": "a" * 40, "patterns": ["planets.md"]},
        "seed_examples": [{"context": DOC, "questions_and_answers": [
            {"question": q, "answer": "See the document."} for q in PLANET_SEEDS]} for _ in range(5)]})
    monkeypatch.setattr(documents, "resolve_documents", lambda leaf, **kw: [documents.Document(
        path="planets.md", text=DOC, repo=leaf.document["repo"], commit=leaf.document["commit"], sha256="0" * 64)])
    return root


def _script(tmp_path) -> str:
    listed = lambda items: "\n".join(f"{k + 1}. {q}" for k, q in enumerate(items))  # noqa: E731
    script = {"skill_question": [{"match": "haiku", "reply": listed(HAIKU_COPIES + [NOVEL["haiku"]])},
                                 {"match": "units", "reply": listed(UNITS_COPIES + [NOVEL["units"]])}],
              # every knowledge request is answered with a near-copy of a seed question
              "knowledge_qa": [{"reply": [f"Question: {q}\nAnswer: Mars has two small moons." for q in PLANET_COPIES]}]}
    path = tmp_path / "copies.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    return str(path)


def test_near_copies_of_seed_questions_reach_no_phase_file(taxonomy, tmp_path, cache_dir, run_lab):
    out = tmp_path / "out"
    code, cap = run_lab(["generate", str(taxonomy), "--teacher", f"scripted:{_script(tmp_path)}",
                         "--samples", "2", "--out", str(out), "--quiet"])
    assert code == 0, cap.out + cap.err
    trained = [m["content"] for p in ("kt1", "kt2", "st") for s in read_jsonl(out / f"{p}.jsonl")
               for m in s["messages"] if m["role"] == "user"]
    copies = HAIKU_COPIES + UNITS_COPIES + PLANET_COPIES
    assert not set(copies) & set(trained)
    for text in trained:  # nothing in a phase file is a seed question up to case/punctuation/spacing
        assert all(quality.normalize(text) != quality.normalize(s) for s in HAIKU_SEEDS + UNITS_SEEDS + PLANET_SEEDS)
    # the novel instructions did go through: the filter rejects copies, not everything
    assert NOVEL["haiku"] in trained and NOVEL["units"] in trained
    rejected = read_jsonl(out / "rejected.jsonl")
    as_seed = {r["question"] for r in rejected if r["reason"] == "near-duplicate of a seed example"}
    assert set(HAIKU_COPIES + UNITS_COPIES) <= as_seed  # each skill copy rejected for the right reason
    knowledge = [r for r in rejected if r["leaf"] == "knowledge/science/planets"]
    assert knowledge and all(r["reason"] == "near-duplicate of a seed example" for r in knowledge)
    assert {r["question"] for r in knowledge} <= set(PLANET_COPIES)


@pytest.mark.parametrize("seed,copy", [
    ("Write a haiku about the first snow of winter.", "Write a haiku about the first snow of spring."),
    ("Write a haiku about the first snow of winter.", "Write a short haiku about the first snow of winter."),
    ("Write a haiku about the first snow of winter.", "write a haiku about the first snow of winter!"),
    ("What is the capital of France?", "What   is the capital of France ?"),
    ("Define a kilogram.", "Define a kilometer."),
    ("Summarize the text – in “one” sentence.", "summarize the text in one sentence"),
])
def test_seed_copy_ignores_case_punctuation_whitespace_and_one_word(seed, copy):
    assert quality.seed_copy(copy, [seed], FiltersConfig().seed_threshold) == seed


def test_seed_threshold_is_stricter_than_the_within_leaf_one():
    seed_t, dedup_t = FiltersConfig().seed_threshold, GenerateConfig().dedup_threshold
    assert seed_t < dedup_t
    seed = "Write a haiku about the first snow of winter in the mountains."
    # two words changed out of eleven: similarity 9/11 = 0.82, between the two thresholds
    other = "Write a haiku about the last snow of spring in the mountains."
    assert seed_t <= quality.similarity(seed, other) < dedup_t
    assert quality.seed_copy(other, [seed], seed_t) == seed           # too close to a held-out seed
    assert quality.near_duplicate(other, [seed], dedup_t) is None    # but not a duplicate of a sample
    # a different request on the same topic is neither
    assert quality.seed_copy("Describe the first snow of winter to a child who has never seen it.",
                             [seed], seed_t) is None


def test_grounded_seed_context_with_another_question_reaches_no_phase_file(tmp_path, cache_dir, run_lab):
    """A grounded skill's held-out seed is its context and question together: a generated sample
    that reuses a seed's context (one word changed) under a new question is dropped too."""
    ctx = ("Join us for the Spring Plant Swap on Saturday, April 12, 2025! Bring cuttings, seedlings or "
           "pots and take home something new. Doors open at 10:00 am in the community hall on Elm Street.")
    others = [f"The {n} meeting takes place on {d} in room {r}; remote staff can join by video link."
              for n, d, r in (("quarterly", "3 June 2025", "B"), ("annual", "9 May 2025", "C"), ("weekly", "2 July 2025", "D"))]
    root = tmp_path / "taxonomy"
    _leaf(root, "compositional_skills/extraction/structured/events", {
        "version": 3, "created_by": "tester", "task_description": "Extract the event details as JSON.",
        "seed_examples": [{"context": c, "question": "Extract the event details as JSON.", "answer": '{"event": "x"}'}
                          for c in [ctx] + others]})
    copied = ctx.replace("Saturday", "Sunday")
    fresh = "The Harbor Jazz Night is on Friday, 18 July 2025, at 8 pm in the old boathouse by the pier."
    script = tmp_path / "ctx.json"
    script.write_text(json.dumps({"skill_question": [
        # a long new question: context + question together stay under the seed threshold (0.61)
        {"match": "Spring Plant", "reply": f"Context: {copied}\nQuestions:\n1. What should visitors bring to the "
                                           "swap, and at what time do the doors of the community hall open to the public?"},
        {"reply": f"Context: {fresh}\nQuestions:\n1. When does the jazz night start?"}]}), encoding="utf-8")
    out = tmp_path / "out"
    code, cap = run_lab(["generate", str(root), "--teacher", f"scripted:{script}", "--samples", "2",
                         "--out", str(out), "--quiet"])
    assert code == 0, cap.out + cap.err
    trained = [s["messages"][0]["content"] for s in read_jsonl(out / "st.jsonl")]
    assert trained and all(fresh in t for t in trained)  # the fresh context went through
    assert not any("Plant Swap" in t for t in trained)
    assert any(r["reason"] == "near-duplicate of a seed example" and "Plant Swap" in r.get("context", "")
               for r in read_jsonl(out / "rejected.jsonl"))
