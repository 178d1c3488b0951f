"""Scoring used by checkpoint selection and `lab evaluate`: MC log-likelihood, answers, judge."""

from __future__ import annotations

import math

import pytest

from lab_tools.eval.scoring import (answer_prompts, judge_request_messages, judge_scores,
                                    mc_accuracy, parse_rating)
from lab_tools.sdg.backends import Completion


@pytest.mark.parametrize("text,expected", [
    ("Good answer. Rating: [[7]]", 7.0), ("[[ 8.5 ]]", 8.5), ("Rating: 6", 6.0),
    ("I'd give it 9/10.", 9.0), ("score: 3", 3.0), ("Rating: [[11]] no, [[4]]", 4.0),
    ("no number here", None), ("Rating: [[0]]", None), ("", None)])
def test_parse_rating_is_tolerant_but_bounded(text, expected):
    assert parse_rating(text) == expected


class ScriptedJudge:
    name = "scripted"

    def __init__(self, replies):
        self.replies, self.requests = replies, []

    def generate(self, requests):
        self.requests += requests
        return [r if isinstance(r, Completion) else Completion(text=r) for r in self.replies]

    def count_tokens(self, text):
        return len(text.split())


def test_judge_scores_excludes_unparseable_and_failed_ratings():
    prompts = [{"leaf": f"l{i}", "messages": [{"role": "user", "content": f"q{i}"}],
                "reference": "ref" if i == 0 else ""} for i in range(4)]
    judge = ScriptedJudge(["fine [[8]]", "meh", Completion(text="", error="timeout"), "Rating: 4"])
    mean, per = judge_scores(judge, prompts, ["a0", "a1", "a2", "a3"], max_tokens=50)
    assert mean == pytest.approx(6.0)
    assert [p["rating"] for p in per] == [8.0, None, None, 4.0]
    assert per[0]["explanation"] == "fine [[8]]" and per[1]["error"] == "unparseable rating"
    assert all(r.temperature == 0 and r.max_tokens == 50 for r in judge.requests)
    first = judge.requests[0].messages[-1]["content"]
    assert "q0" in first and "a0" in first and "Reference Answer" in first
    assert "Reference Answer" not in judge.requests[1].messages[-1]["content"]
    nan_mean, _ = judge_scores(ScriptedJudge(["?"]), prompts[:1], ["x"])
    assert math.isnan(nan_mean)


def test_multi_turn_prompt_grades_the_last_answer():
    msgs = judge_request_messages({"messages": [
        {"role": "user", "content": "first q"}, {"role": "assistant", "content": "first a"},
        {"role": "user", "content": "second q"}]}, "second a")
    text = msgs[-1]["content"]
    assert text.index("first q") < text.index("second q") < text.index("second a")


def test_mc_accuracy_is_length_normalized_loglik(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    items = [{"leaf": "k", "question": "What is the capital of France?",
              "choices": ["Paris is the capital of France.", "Waves fold into foam.", "no"], "answer": 1},
             {"leaf": "k", "question": "Rate it.", "choices": ["[[8]]", "true false yes"], "answer": 0}]
    acc, per = mc_accuracy(model, tok, items, batch_size=2)
    # recompute one choice by hand: mean log-prob of the choice tokens after the prompt
    q = tok(tok.apply_chat_template([{"role": "user", "content": items[0]["question"]}],
                                    tokenize=False, add_generation_prompt=True),
            add_special_tokens=False)["input_ids"]
    a = tok(items[0]["choices"][1], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([q + a])).logits[0].float(), -1)
    manual = float(sum(logp[len(q) - 1 + j, a[j]] for j in range(len(a))) / len(a))
    assert per[0]["scores"][1] == pytest.approx(manual, abs=1e-4)
    for it, p in zip(items, per):
        assert p["pred"] == max(range(len(it["choices"])), key=lambda c: p["scores"][c])
        assert p["correct"] == (p["pred"] == it["answer"])
    assert acc == sum(p["correct"] for p in per) / 2


def test_answer_prompts_batches_and_restores_padding_side(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    prompts = [{"messages": [{"role": "user", "content": "Write a haiku about the sea." * k}]} for k in (1, 3, 1)]
    out = answer_prompts(model, tok, prompts, max_new_tokens=5, batch_size=2)
    assert len(out) == 3 and all(isinstance(x, str) for x in out)
    assert out[0] == out[2]  # greedy and padding-independent
    assert tok.padding_side == "right"


def test_reference_logprob_scores_the_seed_answer_after_the_last_user_turn(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lab_tools.eval.scoring import reference_logprob

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    prompts = [
        {"leaf": "s", "messages": [{"role": "user", "content": "Write a haiku about the sea."}],
         "reference": "Waves fold into foam."},
        {"leaf": "s", "messages": [{"role": "user", "content": "Say hi."}], "reference": ""},
        {"leaf": "t", "messages": [{"role": "user", "content": "first turn"},
                                   {"role": "assistant", "content": "ok"},
                                   {"role": "user", "content": "What is the capital of France?"}],
         "reference": "Paris is the capital of France."},
    ]
    got = reference_logprob(model, tok, prompts)
    assert got[1] is None  # no reference, no score
    _, per = mc_accuracy(model, tok, [
        {"question": "Write a haiku about the sea.", "choices": ["Waves fold into foam."], "answer": 0},
        {"question": "What is the capital of France?", "choices": ["Paris is the capital of France."],
         "answer": 0}])
    assert got[0] == pytest.approx(per[0]["scores"][0], abs=1e-5)
    assert got[2] == pytest.approx(per[1]["scores"][0], abs=1e-5)
    assert got[0] < 0 and got[2] < 0  # log-probabilities
