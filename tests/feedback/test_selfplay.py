"""RM-guided self-play (lab_tools/feedback/selfplay.py): the reward model's argmax candidate is
kept at every assistant turn, invalid candidates never are, the threshold drops conversations,
a crash resumes from the last turn to the same result, and a failing teacher fails loudly."""

from __future__ import annotations

import dataclasses
import re
from types import SimpleNamespace

import pytest

from lab_tools.config_sections import FeedbackConfig
from lab_tools.errors import LabError
from lab_tools.feedback.play import PlayJob, best_candidate, play_leaf, play_leaves, user_turn
from lab_tools.feedback.rubric import Configuration
from lab_tools.feedback.selfplay import kept_samples
from lab_tools.sdg.backends import Completion

LEAF = SimpleNamespace(path="compositional_skills/writing/haiku", content_hash="h" * 64,
                       kind="compositional_skill", seed_examples=[])
CONF = Configuration("leaf-3shot", "scripted:", demonstrations="none")


class Assistant:
    """Each candidate's quality is a number derived from its seed; a few candidates are invalid."""

    def __init__(self, fail: bool = False):
        self.fail, self.calls, self.seen = fail, 0, []

    def generate(self, reqs):
        self.calls += 1
        out = []
        for r in reqs:
            q = r.seed % 97
            if self.fail:
                out.append(Completion("", error="connection refused"))
            elif q % 5 == 0:
                out.append(Completion("I don't know?", completion_tokens=4))  # invalid (ALMoST BAD)
            else:
                out.append(Completion(f"Candidate of quality {q} gives a complete and careful answer here.",
                                      completion_tokens=12))
            self.seen.append((len(r.messages), out[-1].text))
        return out


class Simulator:
    def generate(self, reqs):
        return [Completion(f"User: Could you say more about point {r.seed % 13}?\nAssistant: sure")
                for r in reqs]


def reward(convs):
    return [float(re.search(r"quality (\d+)", c[-1]["content"]).group(1)) for c in convs]


def fb(**kw):
    return dataclasses.replace(FeedbackConfig(), sp_candidates=4, sp_turns=3, sp_threshold=0.0,
                               max_new_tokens=64, min_chars=20, **kw)


def test_best_candidate_is_the_first_argmax_and_skips_invalid():
    assert best_candidate([1.0, None, 3.0, 3.0]) == 2
    assert best_candidate([None, None]) is None


def test_user_turn_strips_labels_and_the_next_assistant_turn():
    assert user_turn("User: Tell me more.\nAssistant: ok") == "Tell me more."
    assert user_turn("  Human: ok") is None  # too short to be a turn


def test_keeps_the_argmax_candidate_at_every_turn():
    a = Assistant()
    state = play_leaf(LEAF, ["Write a haiku about rain.", "Write a haiku about snow."], a, Simulator(),
                      reward, fb(), CONF, {}, checkpoint=lambda s: None)
    assert state["turn"] == 3
    for conv in state["convs"]:
        turns = [m for m in conv["messages"] if m["role"] == "assistant"]
        assert len(turns) == 3 == len(conv["rewards"])
        assert [m["role"] for m in conv["messages"]] == ["user", "assistant"] * 3
        for t, (msg, r) in enumerate(zip(turns, conv["rewards"])):
            # the candidates offered for this conversation at this turn (same history length)
            n_hist = 2 * t + 1
            offered = [txt for hist, txt in a.seen if hist == n_hist and "quality" in txt]
            qualities = [float(re.search(r"quality (\d+)", x).group(1)) for x in offered]
            assert r == float(re.search(r"quality (\d+)", msg["content"]).group(1))
            assert "don't know" not in msg["content"]
            assert r >= 0 and r in qualities
    # per turn, each kept reward is the max of its own four candidates
    by_turn = {}
    for hist, txt in a.seen:
        by_turn.setdefault(hist, []).append(txt)
    for t in range(3):
        offered = by_turn[2 * t + 1]
        for c, conv in enumerate(state["convs"]):
            group = offered[4 * c:4 * c + 4]
            valid = [float(re.search(r"quality (\d+)", x).group(1)) for x in group if "quality" in x]
            assert conv["rewards"][t] == max(valid)


def test_threshold_drops_conversations_whose_worst_turn_is_below():
    convs = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                           {"role": "user", "content": "more?"}], "rewards": [5.0], "done": False, "why": None},
             {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
              "rewards": [5.0, -1.0], "done": False, "why": None},
             {"messages": [{"role": "user", "content": "q"}], "rewards": [], "done": True,
              "why": "no valid candidate"}]
    samples, dropped = kept_samples(LEAF, convs, fb(), "scripted")
    assert len(samples) == 1 and samples[0]["messages"][-1]["role"] == "assistant"
    assert samples[0]["metadata"]["source"] == "rmsp" and samples[0]["metadata"]["turn_rewards"] == [5.0]
    assert dropped == {"below reward threshold": 1, "no valid candidate": 1}


def test_a_crash_resumes_from_the_last_turn_to_the_same_result():
    prompts = ["Write a haiku about rain."]
    full = play_leaf(LEAF, prompts, Assistant(), Simulator(), reward, fb(), CONF, {}, checkpoint=lambda s: None)
    saved = []

    def crash_after_first(state):
        saved.append(__import__("copy").deepcopy(state))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        play_leaf(LEAF, prompts, Assistant(), Simulator(), reward, fb(), CONF, {}, checkpoint=crash_after_first)
    assert saved[0]["turn"] == 1
    second = Assistant()
    resumed = play_leaf(LEAF, prompts, second, Simulator(), reward, fb(), CONF, saved[0], checkpoint=lambda s: None)
    assert resumed == full
    assert second.calls == 2  # turns 2 and 3 only


def test_a_failing_assistant_fails_the_leaf():
    with pytest.raises(LabError, match="connection refused"):
        play_leaf(LEAF, ["Write a haiku."], Assistant(fail=True), Simulator(), reward, fb(), CONF, {},
                  checkpoint=lambda s: None)


def test_leaves_played_in_one_batch_match_leaf_by_leaf_and_resume_at_their_own_turn():
    """play_leaves sends every leaf's candidates of a turn in one request batch; each leaf's
    conversations are the same as when it is played alone, and a leaf resumed at turn 2 joins
    the batch from there (its checkpoint is called for its own turns only)."""
    other = SimpleNamespace(**{**vars(LEAF), "path": "compositional_skills/writing/limerick", "content_hash": "k" * 64})
    p1, p2 = ["Write a haiku about rain.", "Write a haiku about snow."], ["Write a limerick."]
    alone = [play_leaf(LEAF, p1, Assistant(), Simulator(), reward, fb(), CONF, {}, checkpoint=lambda s: None),
             play_leaf(other, p2, Assistant(), Simulator(), reward, fb(), CONF, {}, checkpoint=lambda s: None)]
    a, cks = Assistant(), {LEAF.path: [], other.path: []}
    jobs = [PlayJob(LEAF, p1, {}, lambda s: cks[LEAF.path].append(s["turn"])),
            PlayJob(other, p2, {}, lambda s: cks[other.path].append(s["turn"]))]
    together = play_leaves(jobs, a, Simulator(), reward, fb(), CONF)
    assert together == alone
    assert a.calls == 3  # one assistant batch per turn for both leaves (3 turns)
    assert cks == {LEAF.path: [1, 2, 3], other.path: [1, 2, 3]}

    saved = []
    play_leaf(other, p2, Assistant(), Simulator(), reward, fb(), CONF, {},
              checkpoint=lambda s: saved.append(__import__("copy").deepcopy(s)))
    b, late = Assistant(), []
    again = play_leaves([PlayJob(LEAF, p1, {}, lambda s: None),
                         PlayJob(other, p2, saved[1], lambda s: late.append(s["turn"]))], b, Simulator(), reward, fb(), CONF)
    assert again == alone and late == [3] and b.calls == 3
