"""Tolerant parsing of teacher output, similarity, and token-aware chunking."""

from __future__ import annotations

import pytest

from lab_tools.sdg import quality
from lab_tools.sdg.chunking import chunk_text


@pytest.mark.parametrize("text,expected", [
    ("Write a poem about the moon.", "Write a poem about the moon."),
    ("1. Write a poem about the moon.", "Write a poem about the moon."),
    ("Question: Write a poem about the moon.\nAnswer: The moon...", "Write a poem about the moon."),
    ('"Write a poem about the moon."', "Write a poem about the moon."),
    ("New request: Describe a sunset.\n\nHere is my answer: it was red.", "Describe a sunset."),
    ("", None), ("ok", None), (None, None),
])
def test_parse_question(text, expected):
    assert quality.parse_question(text) == expected


def test_parse_qa_variants():
    assert quality.parse_qa("Question: Who is closest?\nAnswer: Mercury.") == ("Who is closest?", "Mercury.")
    assert quality.parse_qa("Q: Which moon is largest?\nA: Ganymede.") == ("Which moon is largest?", "Ganymede.")
    assert quality.parse_qa("Which planet has rings? Answer: Saturn.") == ("Which planet has rings?", "Saturn.")
    # a second generated question after the answer is not part of the answer
    q, a = quality.parse_qa("Question: What is red?\nAnswer: Mars.\nQuestion: What is blue?\nAnswer: Neptune.")
    assert (q, a) == ("What is red?", "Mars.")
    assert quality.parse_qa("Saturn is a planet.") is None
    assert quality.parse_qa("Question: What?\nAnswer:") is None


@pytest.mark.parametrize("text,expected", [
    ("yes", True), ("Yes.", True), ("No, it is not.", False), ("no", False),
    ("The answer is supported.", True), ("maybe", None), ("", None),
])
def test_parse_yes_no(text, expected):
    assert quality.parse_yes_no(text) is expected


@pytest.mark.parametrize("text,expected", [
    ("3", 3), ("[[2]]", 2), ("Score: 1/3", 1), ("I would rate it 3.", 3), ("10", None), ("great", None),
])
def test_parse_score(text, expected):
    assert quality.parse_score(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("Explanation: the answer names 3 colours but gets 1 of them wrong.\nScore: 2", 2),
    ("Explanation: 6 x 7 = 42 is right and the 2 steps are shown. Score: 3", 3),
    ("Explanation: all 3 facts are right but there is no context.\n**Score:** [[2]]", 2),
    ("Explanation: 2 of the 3 steps are wrong.\n\nScore: 1/3", 1),
    ("Explanation: it lists 3 steps and then stops at step 2", None),   # cut before its score
    ("Explanation: the sum is 3", None),                                # no score line
])
def test_parse_score_reads_the_score_after_the_explanation(text, expected):
    """LAB figure 4: the judge explains first, then scores; numbers in the explanation are not
    the score (the score is read from the end of the reply)."""
    assert quality.parse_score(text) == expected


def test_similarity_and_near_duplicates():
    a = "Write a haiku about the rain falling on the roof"
    assert quality.similarity(a, a) == 1.0
    assert quality.similarity(a, "Explain how a compiler turns code into instructions") < 0.3
    assert quality.near_duplicate(a + ".", [a.upper()], 0.9) == a.upper()
    assert quality.near_duplicate(a, ["Something entirely different here"], 0.9) is None


def test_refers_to_document():
    assert quality.refers_to_document("According to the passage, who won?")
    assert quality.refers_to_document("What does the text above say about Mars?")
    assert not quality.refers_to_document("Which planet has two moons?")


def test_chunks_respect_token_bound_and_overlap():
    words = lambda s: len(s.split())  # noqa: E731
    text = " ".join(f"Sentence number {i} has exactly seven words." for i in range(40))
    chunks = chunk_text(text, words, max_tokens=50, overlap=14)
    assert len(chunks) > 5
    assert all(words(c) <= 50 for c in chunks)
    for prev, nxt in zip(chunks, chunks[1:]):  # each chunk starts with the tail of the previous one
        assert nxt.split(".")[0] in prev
    # every sentence survives
    assert all(f"number {i} " in " ".join(chunks) for i in range(40))


def test_chunk_cuts_overlong_sentence_and_blank_text():
    words = lambda s: len(s.split())  # noqa: E731
    chunks = chunk_text(" ".join(["word"] * 120), words, max_tokens=50, overlap=0)
    assert [words(c) for c in chunks] == [50, 50, 20]
    assert chunk_text("   \n\n ", words) == []


def test_parse_questions_reads_every_listed_instruction():
    reply = "1. Write a poem about the moon.\n2) Describe a sunset\nover the bay.\n- ok\n3. Name a"
    qs, bad = quality.parse_questions(reply)
    # continuation lines stay with their item; "ok" is too short to be a request
    assert qs == ["Write a poem about the moon.", "Describe a sunset\nover the bay."] and bad == 2
    # a reply cut by its token bound: the last item is dropped as cut, not parsed
    assert quality.parse_questions(reply, truncated=True) == (qs, 2)
    assert quality.parse_questions("Write a haiku about rain.") == (["Write a haiku about rain."], 0)
    assert quality.parse_questions("Write a haiku about rain.", truncated=True) == (["Write a haiku about rain."], 0)
    assert quality.parse_questions("") == ([], 1)  # nothing usable: one malformed reply


def test_parse_grounded_reads_a_context_and_its_questions():
    ctx = "The library opened on 3 May 1921 in the old mill."
    reply = f"Context: {ctx}\nQuestions:\n1. When did it open?\n2. **Where** is it?\n3. ok\n4. What was the buil"
    assert quality.parse_grounded(reply) == (ctx, ["When did it open?", "**Where** is it?", "What was the buil"], 1)
    assert quality.parse_grounded(reply, truncated=True) == (ctx, ["When did it open?", "**Where** is it?"], 2)
    # a single "Question:", the question first, or a list straight after the context are read too
    assert quality.parse_grounded(f"Question: When did it open?\nContext: {ctx}") == (ctx, ["When did it open?"], 0)
    assert quality.parse_grounded(f"Context: {ctx}\n1. When did it open?\n2. Who ran it?") == (
        ctx, ["When did it open?", "Who ran it?"], 0)
    # no usable context, or a context without any question: one malformed reply
    assert quality.parse_grounded("Context: short\nQuestions:\n1. When did it open?") == ("", [], 1)
    assert quality.parse_grounded(f"Context: {ctx}") == (ctx, [], 1)
    assert quality.parse_grounded("no structure at all") == ("", [], 1)


@pytest.mark.parametrize("text,loops", [
    ("2. Solve this riddle, 3. Solve this riddle, 4. Solve this riddle, 5. Solve this riddle, 6. Solve this riddle", True),
    ("The cat sat. The cat sat. The cat sat. The cat sat. The cat sat.", True),
    ("A snail is at the bottom of a 20-foot well. Each day it climbs up 3 feet, but at night it slips back 2 feet.", False),
    ("Mix the flour and the sugar, then add the eggs and stir until the batter is smooth and shiny.", False),
    ("yes yes yes", False),  # too short to judge
])
def test_repetitive(text, loops):
    assert quality.repetitive(text) is loops
