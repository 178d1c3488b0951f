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


def test_parse_context_question():
    ctx, q = quality.parse_context_question("Context: The shop opened on 3 May 2001 in Leeds.\n"
                                            "Question: When did the shop open?")
    assert ctx.startswith("The shop opened") and q == "When did the shop open?"
    assert quality.parse_context_question("Question: When did the shop open?") is None


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
