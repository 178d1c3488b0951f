"""Everything a model writes that trains passes the SDG filters and the seed-copy rule (DESIGN.md,
Decisions): both sides of a synthetic comparison and every self-play turn, the simulated user's
included; drops carry a reason in comparisons_rejected.jsonl / selfplay_rejected.jsonl. A teacher
that copies the seed examples it is shown as demonstrations (``leaf`` demonstrations are the
held-out evaluation set) gets no copy into comparisons.jsonl, selfplay.jsonl or a phase file."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from lab_tools.config import Config
from lab_tools.config_sections import FeedbackConfig, FiltersConfig
from lab_tools.feedback.comparisons import generate_comparisons
from lab_tools.feedback.pairing import Response, make_pairs
from lab_tools.feedback.play import play_leaf
from lab_tools.feedback.rubric import Configuration
from lab_tools.feedback.selfplay import generate_self_play, kept_samples
from lab_tools.jsonl import read_jsonl
from lab_tools.sdg import filters, quality
from lab_tools.sdg.backends import Completion
from lab_tools.sdg.fake import ScriptedTeacher
from lab_tools.sdg.pipeline import generate_dataset
from lab_tools.taxonomy.leaf import SeedExample
from tests.sdg.sdg_taxonomy import write_leaf

SEED_Q = "Write a haiku about the first snow of winter."
SEED_A = "White flakes drift slowly, the quiet garden sleeps now, and winter breathes soft."
LEAF = SimpleNamespace(path="compositional_skills/writing/haiku", content_hash="h" * 64, kind="compositional_skill",
                       seed_examples=[SeedExample(question=SEED_Q, answer=SEED_A)])
CONF = Configuration("leaf-3shot", "scripted:", demonstrations="leaf", shots=3)
RIVERS = "\n".join(["river's"] * 9)  # the user turn a fresh build's selfplay.jsonl held
GOOD = "The harbor lights shine over the calm water while the boats rest at their moorings."


def fb(**kw):
    return dataclasses.replace(FeedbackConfig(), sp_candidates=3, sp_turns=2, sp_threshold=0.0,
                               max_new_tokens=64, min_chars=20, **kw)


class Assistant:
    """Candidate k of each turn: 0 copies the seed answer shown in the demonstrations (re-cased,
    so only the normalized rule catches it), 1 is a word repeated on separate lines, 2 is fine."""

    def generate(self, reqs):
        out = []
        for k, r in enumerate(reqs):
            demo = next(m["content"] for m in r.messages if m["role"] == "assistant")
            out.append(Completion([demo.upper(), RIVERS + ".", f"{GOOD} Turn {len(r.messages)}."][k % 3],
                                  completion_tokens=16))
        return out


class Simulator:
    def __init__(self, replies):
        self.replies = replies

    def generate(self, reqs):
        return [Completion(self.replies[0], completion_tokens=9) for _ in reqs]


def reward(convs):
    """The copy would win every turn, the loop next: only the filters keep them out."""
    last = convs and [c[-1]["content"] for c in convs]
    return [10.0 if t.isupper() else 5.0 if "river's" in t else 1.0 for t in last]


@pytest.mark.parametrize("user_reply,reason", [
    (RIVERS, "degenerate repetition"),
    (f"User: {SEED_Q.lower()}", filters.SEED_COPY),  # the simulated user asks a held-out seed question
])
def test_self_play_drops_looping_and_seed_copying_turns_with_reasons(user_reply, reason):
    state = play_leaf(LEAF, ["Write a haiku about a red kite."], Assistant(), Simulator([user_reply]), reward, fb(),
                      CONF, {}, checkpoint=lambda s: None)
    conv = state["convs"][0]
    texts = [m["content"] for m in conv["messages"]]
    # the kept assistant turn is the fine candidate: the copy and the loop were never scored
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant"] and texts[1].startswith(GOOD)
    assert not any(quality.seed_copy(t, [SEED_Q, SEED_A], 0.75) for t in texts)
    assert not any("river's" in t for t in texts)
    rejected = {(r["role"], r["reason"]) for r in conv["rejected"]}
    assert ("assistant", filters.SEED_COPY) in rejected
    assert ("user", reason) in rejected  # the simulated user's turn was screened too
    assert conv["done"] and reason in conv["why"]
    rows = []
    samples, _ = kept_samples(LEAF, state["convs"], fb(), "scripted", rejected=rows)
    assert len(samples) == 1 and samples[0]["messages"] == conv["messages"]
    assert all(r["stage"] == "self_play" and r["reason"] for r in rows)
    assert {("user turn", reason), ("assistant turn", filters.SEED_COPY)} <= {(r["step"], r["reason"]) for r in rows}


def test_kept_samples_drops_a_conversation_that_copies_a_seed():
    convs = [{"messages": [{"role": "user", "content": "Write a haiku about a kite."},
                           {"role": "assistant", "content": SEED_A.replace("soft", "softly")}],
              "rewards": [3.0], "done": False, "why": None, "rejected": []}]
    rows = []
    samples, dropped = kept_samples(LEAF, convs, fb(), "scripted", rejected=rows)
    assert not samples and dropped == {filters.SEED_COPY: 1}
    assert rows[0]["step"] == "conversation" and rows[0]["reason"] == filters.SEED_COPY


def test_comparison_responses_pass_the_sdg_filters_on_both_sides():
    prompt = "Describe the harbor at night."
    screen = lambda r: filters.screen_turn(prompt, r.text, FiltersConfig(),  # noqa: E731
                                           seeds=[SEED_Q, SEED_A], hit_limit=r.truncated)
    resp = [Response("best", 0, SEED_A.upper()),                                 # a held-out seed answer
            Response("good", 1, GOOD),
            Response("loop", 2, " ".join(["the boats rest"] * 12) + "."),        # degenerate repetition
            Response("sorry", 3, "I'm sorry, but I cannot describe the harbor at night for you."),
            Response("leak", 4, "The harbor is calm tonight.\nUser: and the boats? They rest quietly.")]
    res = make_pairs(resp, min_chars=20, screen=screen)
    assert {r.config: r.bad for r in res.invalid} == {
        "best": filters.SEED_COPY, "loop": "degenerate repetition", "sorry": "refusal",
        "leak": "role leakage"}  # ALMoST's own leakage rule fires first
    assert all(r.detail for r in res.invalid if r.config != "leak")
    assert not res.pairs  # one valid response left: nothing to pair, no garbage "rejected" side


# ---- end to end: a teacher that copies its demonstrations -------------------------------------

HAIKU = {"version": 3, "created_by": "tester", "task_description": "Write a haiku about a topic.",
         "seed_examples": [{"question": f"Write a haiku about {t}.",
                            "answer": f"Over the {t} a pale light is falling, and the evening hums along the {w}."}
                           for t, w in (("rain", "hills"), ("snow", "roofs"), ("the sea", "shore"),
                                        ("autumn leaves", "lanes"), ("a cat", "stairs"))]}
FABLE = {"version": 3, "created_by": "tester", "task_description": "Write a two-sentence fable.",
         "seed_examples": [{"question": f"Write a fable about a {a} and a {b}.",
                            "answer": f"A {a} mocked a slow {b} all summer long. When winter came, the {b} "
                                      f"had stored food and the {a} had only its pride."}
                           for a, b in (("fox", "tortoise"), ("crow", "ant"), ("lion", "mouse"),
                                        ("hare", "snail"), ("wolf", "beaver"))]}
LEAVES = {"compositional_skills/writing/poetry/haiku": HAIKU, "compositional_skills/writing/fables": FABLE}
CONFIGS = [{"name": "leaf-2shot", "model": "teacher", "demonstrations": "leaf", "shots": 2},
           {"name": "hhh-1shot", "model": "teacher", "demonstrations": "hhh", "shots": 1},
           {"name": "plain-0shot", "model": "teacher", "demonstrations": "none"}]


class CopyingTeacher(ScriptedTeacher):
    """The scripted teacher, except that half of its instruction lists, comparison responses and
    self-play candidates are a demonstration it was shown (an assistant turn of the request:
    the leaf's seed questions or answers), re-cased and re-punctuated."""

    def _one(self, req):
        demos = [m["content"] for m in req.messages[:-1] if m["role"] == "assistant"]
        if req.tag in ("skill_question", "feedback", "rmsp") and demos and req.seed % 2 == 0:
            text = demos[(req.seed // 2) % len(demos)]
            text = text if req.tag == "skill_question" else text.upper().replace(", ", " -- ")
            return Completion(text, completion_tokens=len(text.split()))
        return super()._one(req)


def _copy_reward(convs):
    return [10.0 if c[-1]["content"].isupper() else 1.0 for c in convs]


def test_a_teacher_copying_its_demonstrations_gets_no_seed_into_training_files(tmp_path):
    root, out = tmp_path / "taxonomy", tmp_path / "out"
    for path, data in LEAVES.items():
        write_leaf(root, path, data)
    cfg = Config(cache_dir=str(tmp_path / "cache"))
    cfg.generate.teacher, cfg.generate.samples = "scripted:", 4
    cfg.feedback = dataclasses.replace(cfg.feedback, configurations=CONFIGS, prompts_per_leaf=4, min_chars=20,
                                       batch_size=2, sp_turns=2, sp_candidates=4, sp_prompts_per_leaf=3,
                                       sp_threshold=-1e9)
    teacher = CopyingTeacher()
    generate_dataset(root, None, out, cfg, teacher=teacher, progress=False)
    rep = generate_comparisons(root, out, cfg, backends={"scripted:": teacher}, progress=False)
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "config.json").write_text("{}")
    sp = generate_self_play(root, out, cfg, rm, backends={"scripted:": teacher}, reward=_copy_reward,
                            progress=False)
    assert rep.pairs and sp.kept  # the filters drop copies, not everything

    seeds = {p: [t for e in d["seed_examples"] for t in (e["question"], e["answer"])] for p, d in LEAVES.items()}
    threshold = cfg.generate.filters.seed_threshold

    def copies(leaf, texts):
        return [t for t in texts if quality.seed_copy(t, seeds[leaf], threshold)]

    for r in read_jsonl(out / "comparisons.jsonl"):
        assert not copies(r["metadata"]["leaf"], [m["content"] for k in ("prompt", "chosen", "rejected")
                                                  for m in r[k]])
    selfplay = read_jsonl(out / "selfplay.jsonl")
    assert selfplay
    for s in selfplay:
        assert not copies(s["metadata"]["leaf"], [m["content"] for m in s["messages"]])
    for phase in ("kt1", "kt2", "st"):
        for s in read_jsonl(out / f"{phase}.jsonl"):
            assert not copies(s["metadata"]["leaf"], [m["content"] for m in s["messages"]])
    # the copies were made, and dropped with their reason
    dropped = [r for r in read_jsonl(out / "comparisons_rejected.jsonl") if r["reason"] == filters.SEED_COPY]
    assert dropped and all(r["stage"] == "comparisons" and r["config"] == "leaf-2shot" for r in dropped)
    turns = [r for r in read_jsonl(out / "selfplay_rejected.jsonl") if r["reason"] == filters.SEED_COPY]
    assert turns and all(r["stage"] == "self_play" and r["role"] == "assistant" for r in turns)
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["feedback"]["dropped"][filters.SEED_COPY] == len(dropped)
    assert sum(lf["turns_rejected"].get(filters.SEED_COPY, 0) for lf in card["self_play"]["leaves"]) == len(turns)
