"""ALMoST pairing, BAD filter, trimming and length rule on hand-made responses (no model)."""

from __future__ import annotations

import pytest

from lab_tools.config_sections import FeedbackConfig
from lab_tools.errors import ConfigError
from lab_tools.feedback.pairing import Response, bad_reason, cut_to_last_sentence, length_threshold, make_pairs
from lab_tools.feedback.rubric import raw_prompt, resolve_configurations

GOOD = "The river runs past the old mill and then turns east toward the harbor town."


def V(word: str) -> str:
    """A valid response; words of equal length give responses of equal length."""
    return f"The {word} runs past the old mill and then turns east toward the harbor town."


def R(config, rank, text=GOOD, truncated=False):
    return Response(config=config, rank=rank, text=text, truncated=truncated)


def names(res):
    return [(p.chosen.config, p.rejected.config) for p in res.pairs]


@pytest.mark.parametrize("text,reason", [
    ("", "empty"),
    ("   \n", "empty"),
    ("Too short.", "too short"),
    ("What exactly do you mean by the river and the mill near the harbor town?", "ends with ? or :"),
    ("Here are the steps you need to follow to plan the trip to the harbor:", "ends with ? or :"),
    ("I don't know much about the river, but it is probably quite long and wide.", "I don't know"),
    ("Honestly, I do not know which mill is meant here, so I cannot answer it.", "I don't know"),
    ("The mill is old and the river is wide.\n\nHuman: thanks, and the harbor?", "role leakage"),
    ("User: tell me more. The mill is old and the river is wide and calm today.", "role leakage"),
    ("The mill is old and the river is wide and calm today.<|im_end|> more text", "template leakage"),
    ("The mill is old and the river is wide and calm today, and then the", "unfinished"),
])
def test_bad_rules(text, reason):
    assert bad_reason(text, min_chars=50) == reason


@pytest.mark.parametrize("text", [GOOD, 'He said "the mill is old and the river is wide and calm."',
                                  "The mill is old and the river is wide and calm today! Really!"])
def test_valid_responses_pass(text):
    assert bad_reason(text, min_chars=50) is None


def test_cut_to_last_sentence():
    assert cut_to_last_sentence("One fact. Two facts! And a third that got cu") == "One fact. Two facts!"
    assert cut_to_last_sentence('He said "done." Then the') == 'He said "done."'
    assert cut_to_last_sentence("no sentence end at all") == "no sentence end at all"
    assert cut_to_last_sentence("Version 2.5 is out and") == "Version 2.5 is out and"  # a decimal point is no end


def test_truncated_response_is_trimmed_and_recorded():
    long_tail = GOOD + " And then the road climbs up the hill toward the"
    other = "The mill is old and the river is wide and calm today."
    res = make_pairs([R("a", 0, long_tail, truncated=True), R("b", 1, other, truncated=True)])
    a, b = res.pairs[0].chosen, res.pairs[0].rejected
    assert a.trimmed and a.text == GOOD and a.bad is None
    assert not b.trimmed and b.text == other  # already ended with a full sentence
    # the same text without the truncation flag is not trimmed: it is invalid (unfinished)
    res2 = make_pairs([R("a", 0, long_tail), R("b", 1)])
    assert [r.bad for r in res2.invalid] == ["unfinished"] and not res2.invalid[0].trimmed
    assert res2.pairs == []


def test_adjacent_chain_of_pairs():
    res = make_pairs([R("c", 2, V("canal")), R("a", 0, V("river")), R("b", 1, V("creek"))])
    # sorted by rank: a > b > c; a is chosen once (a>b), then b once (b>c); a>c is skipped
    assert names(res) == [("a", "b"), ("b", "c")]
    assert res.skipped == {"chosen config used": 1}


def test_equal_ranks_are_skipped_and_a_rank_is_chosen_once():
    res = make_pairs([R("a", 0, V("river")), R("b", 0, V("creek")), R("c", 1, V("canal"))])
    # a=b tie skipped; a>c kept; b>c skipped because rank 0 was already used as chosen
    assert names(res) == [("a", "c")]
    assert res.skipped == {"tie": 1, "chosen rank used": 1}


def test_invalid_response_is_never_rejected():
    res = make_pairs([R("a", 0, V("river")), R("b", 1, ""), R("c", 2, V("canal"))])
    assert names(res) == [("a", "c")]  # b is dropped, so a pairs with the next valid one
    assert [r.config for r in res.invalid] == ["b"] and res.invalid[0].bad == "empty"


def test_fewer_than_two_valid_responses_make_no_pair():
    res = make_pairs([R("a", 0), R("b", 1, "short.")])
    assert res.pairs == [] and res.threshold is None and res.invalid[0].bad == "too short"


def test_identical_texts_are_not_a_pair():
    res = make_pairs([R("a", 0), R("b", 1), R("c", 2, V("canal"))])
    assert names(res) == [("a", "c"), ("b", "c")]  # a = b is skipped; b was not yet chosen
    assert res.skipped["identical"] == 1


def test_length_rule():
    short = "The mill is old and the river is wide and calm."  # 48 chars
    long1 = GOOD * 3
    long2 = GOOD * 3 + " Yes."
    lengths = [len(short), len(long1), len(long2)]
    thr = length_threshold(lengths)
    assert len(short) < thr
    res = make_pairs([R("a", 0, short), R("b", 1, long1), R("c", 2, long2)], min_chars=20)
    # a>b dropped (chosen shorter than rejected and below mean - std/2); a>c dropped the same way;
    # a was never used as chosen, so b>c is tried and kept (chosen shorter, but not below the bound)
    assert [(p.chosen.config, p.rejected.config) for p in res.length_dropped] == [("a", "b"), ("a", "c")]
    assert names(res) == [("b", "c")]


def test_length_rule_needs_both_conditions():
    short = "The mill is old and the river is wide and calm."
    a, b, c = "x" * 59 + ".", "y" * 61 + ".", "z" * 39 + "."  # bound: mean 54 - std/2 ~ 49
    assert len(c) < length_threshold([60, 62, 40]) < len(a) < len(b)
    # chosen shorter than the rejected one but not below the bound: kept
    res = make_pairs([R("a", 0, a), R("b", 1, b), R("c", 2, c)], min_chars=20)
    assert names(res) == [("a", "b"), ("b", "c")] and not res.length_dropped
    # chosen below the bound but longer than the rejected one: kept
    res = make_pairs([R("a", 0, short + " More."), R("b", 1, short), R("c", 2, GOOD * 4)], min_chars=20)
    assert ("a", "b") in names(res)


def test_rubric_presets_and_errors():
    fb = FeedbackConfig()
    confs = resolve_configurations(fb, "transformers:embedded", "embedded")
    assert [c.name for c in confs] == ["leaf-3shot", "hhh-1shot", "raw-0shot"]
    assert [c.rank for c in confs] == [0, 1, 2] and confs[2].format == "raw"
    fb.preset = "gpu"
    gpu = resolve_configurations(fb, "vllm:big", "embedded")
    assert {c.model for c in gpu} == {"vllm:big", "transformers:embedded"}
    fb = FeedbackConfig(configurations=[{"name": "x", "demonstrations": "leaf", "shots": 2},
                                        {"name": "y"}, {"name": "z", "model": "openai:http://h/v1#m", "format": "raw"}],
                        rubric=[["x", "y"], "z", "w"])
    with pytest.raises(ConfigError) as err:
        resolve_configurations(fb, "scripted:", "embedded")
    msg = str(err.value)
    assert "unknown configuration 'w'" in msg and "'raw' needs" in msg
    fb = FeedbackConfig(configurations=[{"name": "x"}, {"name": "y"}], rubric=[["x", "y"]])
    with pytest.raises(ConfigError, match="at least two ranks"):
        resolve_configurations(fb, "scripted:", "embedded")
    fb = FeedbackConfig(configurations=[{"name": "x"}, {"name": "y"}], rubric=[["x", "y"], []])
    with pytest.raises(ConfigError, match="at least two ranks"):
        resolve_configurations(fb, "scripted:", "embedded")
    fb = FeedbackConfig(configurations=[{"name": "x", "shots": 1}, {"name": "y", "colour": 1}])
    with pytest.raises(ConfigError) as err:
        resolve_configurations(fb, "scripted:", "embedded")
    assert "takes 0 shots" in str(err.value) and "colour" in str(err.value)


def test_raw_prompt():
    msgs = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi?"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Why?"}]
    assert raw_prompt(msgs) == "Be kind.\n\nHuman: Hi?\n\nAssistant: Hello.\n\nHuman: Why?\n\nAssistant:"
