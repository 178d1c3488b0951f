"""Skills-SDG and knowledge-SDG through generate_dataset with the scripted fake teacher."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lab_tools.jsonl import read_jsonl
from lab_tools.sdg.datacard import scores_of
from lab_tools.sdg.fake import ScriptedTeacher
from lab_tools.sdg.pipeline import generate_dataset
from lab_tools.sdg.skills import persona
from lab_tools.taxonomy.leaf import load_leaf

from sdg_taxonomy import LEAVES, write_leaf

SKILLS = [p for p in LEAVES if not p.startswith("knowledge")]


def script(tmp_path: Path, data: dict) -> ScriptedTeacher:
    p = tmp_path / f"script{len(list(tmp_path.glob('script*.json')))}.json"
    p.write_text(json.dumps(data))
    return ScriptedTeacher(str(p))


def all_samples(out: Path) -> list[dict]:
    return [s for p in ("kt1", "kt2", "st") for s in read_jsonl(out / f"{p}.jsonl")]


def test_every_stage_and_phase(taxonomy, fake_documents, cfg, tmp_path):
    out = tmp_path / "out"
    rep = generate_dataset(taxonomy, None, out, cfg, teacher=ScriptedTeacher(), progress=False)
    by_leaf = {s.leaf: s for s in rep.leaves}
    assert set(by_leaf) == set(LEAVES) and not any(s.error for s in rep.leaves)
    kt1, kt2, st = (read_jsonl(out / f"{p}.jsonl") for p in ("kt1", "kt2", "st"))
    assert kt1 and kt2 and st
    # LAB table 1: knowledge short -> kt1, knowledge long + foundational -> kt2, compositional -> st
    assert {s["metadata"]["kind"] for s in kt1} == {"knowledge"}
    assert {s["metadata"]["kind"] for s in kt2} == {"knowledge", "foundational_skills"}
    assert {s["metadata"]["kind"] for s in st} == {"compositional_skills"}
    assert all(s["metadata"]["response_tokens"] < 30 for s in kt1)
    assert all(s["metadata"]["response_tokens"] >= 30 for s in kt2 if s["metadata"]["kind"] == "knowledge")
    for s in kt1 + kt2 + st:
        md = s["metadata"]
        assert [m["role"] for m in s["messages"]] == ["user", "assistant"]
        assert md["leaf_hash"] == load_leaf(taxonomy, md["leaf"]).content_hash
        assert md["teacher"] == "scripted" and md["prompt_version"] and md["phase"] in ("kt1", "kt2", "st")
    # skills samples carry their scores; knowledge ones their source chunk at the pinned commit
    assert all(scores_of(s["metadata"])["pair"] == 3 for s in st)
    assert all(s["metadata"]["source"]["commit"] == "a" * 40 for s in kt1)
    # grounded skill: the generated context travels with the question
    grounded = [s for s in st if s["metadata"]["leaf"].endswith("dates")]
    assert grounded and all("\n\n" in s["messages"][0]["content"] for s in grounded)
    # samples per skill leaf bounded by `samples`; samples * question_factor = 8 instructions asked
    # for in lists of questions_per_request = 5 (2 requests, 10 listed); a grounded leaf's questions
    # share one new context per request, so only (max_new_tokens - context_tokens) // question_tokens
    # = 3 questions fit beside it (3 requests, 9)
    assert by_leaf["compositional_skills/writing/poetry/haiku"].generated == 10
    dates = next(leaf for path, leaf in by_leaf.items() if path.endswith("dates"))
    assert dates.generated == 9
    assert all(s.kept <= 4 for s in rep.leaves)
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["phases"] == {"kt1": len(kt1), "kt2": len(kt2), "st": len(st)}
    assert sum(leaf["kept"] for leaf in card["leaves"]) == len(kt1 + kt2 + st)
    assert "| kt1 |" in (out / "README.md").read_text()
    assert (out / "heldout_mc.jsonl").is_file() and read_jsonl(out / "heldout_prompts.jsonl")


def test_seed_examples_never_become_samples(taxonomy, fake_documents, cfg, tmp_path):
    # a teacher that copies a seed question: dedup must reject it (seeds are the held-out set)
    t = script(tmp_path, {"skill_question": [{"match": "haiku", "reply": "Write a haiku about rain."}],
                          "knowledge_qa": [{"reply": "Question: Which planet is closest to the Sun? (1)\nAnswer: Mercury."}]})
    out = tmp_path / "out"
    generate_dataset(taxonomy, None, out, cfg, teacher=t, progress=False)
    seeds = {ex["question"] for path, d in LEAVES.items() for ex in d["seed_examples"] if "question" in ex}
    seeds |= {qa["question"] for ex in LEAVES["knowledge/science/planets"]["seed_examples"]
              for qa in ex["questions_and_answers"]}
    assert not {s["messages"][0]["content"] for s in all_samples(out)} & seeds
    rejected = read_jsonl(out / "rejected.jsonl")
    assert any(r["reason"] == "near-duplicate of a seed example" and r["leaf"].endswith("haiku") for r in rejected)
    assert any(r["reason"] == "near-duplicate of a seed example" and r["leaf"].startswith("knowledge") for r in rejected)


def test_grounded_dedup_compares_context_and_question(taxonomy, fake_documents, cfg, tmp_path):
    """Grounded seed examples share one question over different contexts: a new context with that
    question is a new sample, but a copy of a seed's context and question is rejected."""
    seed = LEAVES["compositional_skills/grounded/extraction/dates"]["seed_examples"][0]
    fresh = ("Context: The workshop on river ecology was held on 9 October in the east wing.\n"
             f"Question: {seed['question']}")
    copy = f"Context: {seed['context']}\nQuestion: {seed['question']}"
    for reply, kept in ((fresh, True), (copy, False)):
        out = tmp_path / f"out-{kept}"
        t = script(tmp_path, {"skill_question": [{"match": "Extract the date", "reply": reply}]})
        generate_dataset(taxonomy, ["compositional_skills/grounded/extraction/dates"], out, cfg,
                         teacher=t, progress=False)
        samples = [s for s in all_samples(out) if s["metadata"]["leaf"].endswith("dates")]
        rejected = [r for r in read_jsonl(out / "rejected.jsonl") if r["leaf"].endswith("dates")]
        seed_dups = [r for r in rejected if r["reason"] == "near-duplicate of a seed example"]
        if kept:
            assert len(samples) == 1 and not seed_dups  # the rest repeat the first: other dedup
            assert "river ecology" in samples[0]["messages"][0]["content"]
        else:
            assert not samples and seed_dups


def test_stage_filters_and_malformed_output(taxonomy, fake_documents, cfg, tmp_path):
    t = script(tmp_path, {
        # requests whose example turn lists the first seed example first get malformed output
        "skill_question": [{"match": "task.\n1. What is 2 plus 3", "reply": "??"},
                           {"match": "arithmetic", "reply": [f"Arithmetic drill: what is {n} times {n + 13}?"
                                                             for n in range(8)]}],
        "question_eval": [{"match": "haiku", "reply": "No."}],                         # all rejected
        "pair_eval": [{"match": "visitors walk", "reply": "2"}, {"match": "Arithmetic drill", "reply": "banana"}],
        "faithfulness": [{"match": "Jupiter", "reply": "no"}],
        "self_contained": [{"reply": "yes"}],
    })
    out = tmp_path / "out"
    rep = generate_dataset(taxonomy, None, out, cfg, teacher=t, progress=False)
    by = {s.leaf.split("/")[-1]: s for s in rep.leaves}
    rejected = read_jsonl(out / "rejected.jsonl")
    assert by["haiku"].kept == 0 and by["haiku"].rejected["question_eval"] >= 1
    assert by["arithmetic"].malformed.get("questions", 0) >= 1
    assert by["arithmetic"].malformed.get("pair_eval", 0) >= 1 and by["arithmetic"].kept == 0
    assert by["dates"].kept == 0 and by["dates"].rejected["pair_eval"] >= 1  # 2 < default threshold 3
    assert any(r["reason"] == "pair score 2 < threshold 3" for r in rejected)
    assert all({"leaf", "stage", "reason"} <= set(r) for r in rejected)
    for s in rep.leaves:  # every candidate is accounted for
        assert s.generated == s.kept + sum(s.rejected.values()) + s.unused
    # threshold 2 keeps the pairs graded 2 (LAB: keep 3 by default; 2 allowed)
    cfg.generate.pair_threshold = 2
    rep2 = generate_dataset(taxonomy, ["compositional_skills/grounded/extraction/dates"], tmp_path / "o2",
                            cfg, teacher=t, progress=False)
    assert rep2.leaves[0].kept > 0 and not rep2.leaves[0].cached


def test_teacher_errors_fail_only_that_leaf_apart_from_rejections(taxonomy, fake_documents, cfg, tmp_path):
    """Every response request of one leaf fails: that leaf fails (counted as request errors, not
    as quality rejections), nothing of it is cached as finished; the other leaves go on."""
    t = script(tmp_path, {"response": [{"match": "creative writer", "reply": "__error__"}]})
    rep = generate_dataset(taxonomy, None, tmp_path / "out", cfg, teacher=t, progress=False)
    haiku = next(s for s in rep.leaves if s.leaf.endswith("haiku"))
    assert haiku.kept == 0 and haiku.teacher_error and "responses" not in haiku.rejected
    assert haiku.errors["responses"] == haiku.requests_by_stage["responses"] > 0
    assert "teacher scripted" in haiku.error and "scripted error" in haiku.error
    assert rep.failure().startswith(haiku.leaf)
    shards = [json.loads(f.read_text())["leaf"] for f in (tmp_path / "cache" / "sdg").rglob("shard.json")]
    assert haiku.leaf not in shards and len(shards) == len(rep.leaves) - 1
    assert sum(s.kept for s in rep.leaves if s is not haiku) > 0


def test_knowledge_rule_rejects_questions_pointing_at_the_document(taxonomy, fake_documents, cfg, tmp_path):
    t = script(tmp_path, {"knowledge_qa": [{"match": "Saturn has", "reply": "Question: According to the passage, what has rings?\nAnswer: Saturn."}]})
    out = tmp_path / "out"
    rep = generate_dataset(taxonomy, ["knowledge/science/planets"], out, cfg, teacher=t, progress=False)
    rej = [r for r in read_jsonl(out / "rejected.jsonl") if r["stage"] == "self_contained"]
    assert rej and all("passage" in r["question"] for r in rej)
    assert all("passage" not in s["messages"][0]["content"] for s in all_samples(out))
    assert rep.leaves[0].kept > 0


def test_missing_documents_fail_only_that_leaf(taxonomy, cfg, tmp_path, monkeypatch):
    from lab_tools.errors import LabError
    from lab_tools.taxonomy import documents

    def refuse(leaf, **kw):
        raise LabError("pattern matched nothing", file=str(leaf.qna_path), field="document.patterns")

    monkeypatch.setattr(documents, "resolve_documents", refuse)
    rep = generate_dataset(taxonomy, None, tmp_path / "out", cfg, teacher=ScriptedTeacher(), progress=False)
    k = next(s for s in rep.leaves if s.kind == "knowledge")
    assert "pattern matched nothing" in k.error
    assert all(s.kept > 0 for s in rep.leaves if s.kind != "knowledge")


def test_persona_choice(tmp_path):
    cases = {"compositional_skills/writing/poetry/haiku": "creative",
             "compositional_skills/roleplay/pirate": "creative",
             "foundational_skills/reasoning/arithmetic": "precise",
             "compositional_skills/grounded/extraction/dates": "precise",
             "compositional_skills/writing/grounded/summarization": "precise",  # precise words win
             "compositional_skills/misc/thing": "precise"}
    for path, expected in cases.items():
        write_leaf(tmp_path, path, {"version": 3, "task_description": "x", "seed_examples": []})
        assert persona(load_leaf(tmp_path, path)) == expected, path
    write_leaf(tmp_path, "compositional_skills/misc/other", {"version": 3, "seed_examples": [],
                                                             "task_description": "Tell a short story."})
    assert persona(load_leaf(tmp_path, "compositional_skills/misc/other")) == "creative"


def test_persona_reaches_the_response_prompt(taxonomy, fake_documents, cfg, tmp_path):
    seen = []

    class Spy(ScriptedTeacher):
        def generate(self, requests):
            seen.extend((r.tag, r.messages[0]["content"]) for r in requests)
            return super().generate(requests)

    generate_dataset(taxonomy, SKILLS, tmp_path / "out", cfg, teacher=Spy(), progress=False)
    systems = {s for tag, s in seen if tag == "response"}
    assert any("creative writer" in s for s in systems) and any("precise assistant" in s for s in systems)


def test_cache_reuse_and_one_changed_leaf(taxonomy, fake_documents, cfg, tmp_path):
    t1 = ScriptedTeacher()
    out1, out2, out3 = tmp_path / "o1", tmp_path / "o2", tmp_path / "o3"
    generate_dataset(taxonomy, None, out1, cfg, teacher=t1, progress=False)
    assert t1.calls > 0
    t2 = ScriptedTeacher()
    rep = generate_dataset(taxonomy, None, out2, cfg, teacher=t2, progress=False)
    assert t2.calls == 0 and all(s.cached for s in rep.leaves)
    for p in ("kt1", "kt2", "st"):
        assert (out1 / f"{p}.jsonl").read_bytes() == (out2 / f"{p}.jsonl").read_bytes()
    # change one leaf: only it is regenerated
    changed = "compositional_skills/writing/poetry/haiku"
    data = dict(LEAVES[changed], task_description="Write a haiku about nature.")
    write_leaf(taxonomy, changed, data)
    t3 = ScriptedTeacher()
    rep = generate_dataset(taxonomy, None, out3, cfg, teacher=t3, progress=False)
    assert [s.leaf for s in rep.leaves if not s.cached] == [changed]
    solo = ScriptedTeacher()
    generate_dataset(taxonomy, [changed], tmp_path / "o4", cfg, teacher=solo, progress=False)
    assert t3.calls > 0 and solo.calls == 0  # the changed leaf is now cached too
    unchanged = [s for s in all_samples(out3) if s["metadata"]["leaf"] != changed]
    assert unchanged == [s for s in all_samples(out1) if s["metadata"]["leaf"] != changed]


def test_unrequested_leaves_come_from_the_cache(taxonomy, fake_documents, cfg, tmp_path):
    generate_dataset(taxonomy, None, tmp_path / "o1", cfg, teacher=ScriptedTeacher(), progress=False)
    t = ScriptedTeacher()
    rep = generate_dataset(taxonomy, [SKILLS[0]], tmp_path / "o2", cfg, teacher=t, progress=False)
    assert t.calls == 0 and {s.leaf for s in rep.leaves} == set(LEAVES)
    assert all_samples(tmp_path / "o1") == all_samples(tmp_path / "o2")


def test_unknown_leaf_is_an_error(taxonomy, cfg, tmp_path):
    from lab_tools.errors import LabError

    with pytest.raises(LabError, match="no leaf"):
        generate_dataset(taxonomy, ["compositional_skills/nope"], tmp_path / "o", cfg,
                         teacher=ScriptedTeacher(), progress=False)


def test_model_judges_off_skips_judges_openly(taxonomy, fake_documents, cfg, tmp_path):
    # the script would reject everything if the judges ran
    t = script(tmp_path, {"question_eval": [{"reply": "no"}], "pair_eval": [{"reply": "1"}],
                          "faithfulness": [{"reply": "no"}]})
    cfg.generate.model_judges = False
    out = tmp_path / "out"
    rep = generate_dataset(taxonomy, None, out, cfg, teacher=t, progress=False)
    samples = all_samples(out)
    assert samples and all(s.kept > 0 for s in rep.leaves)
    g = cfg.generate
    for s in rep.leaves:  # no judge request was sent: only questions (+ responses for skills)
        if s.kind == "knowledge":
            assert s.requests == s.generated
        else:  # question lists (3 per context for the grounded leaf), then one response each
            per_request = 3 if s.leaf.endswith("dates") else g.questions_per_request
            asked = -(-g.samples * g.question_factor // per_request)
            # responses for the best ceil(samples * oversample) instructions left after dedup
            left = s.generated - s.rejected.get("dedup", 0) - s.rejected.get("questions", 0)
            answered = min(math.ceil(g.samples * g.filters.oversample), left)
            assert s.requests == asked + answered
            assert s.kept == min(g.samples, answered - s.rejected.get("filters", 0) - s.rejected.get("responses", 0))
    tags = set()
    for s in samples:
        tags |= {k for k, v in scores_of(s["metadata"]).items() if v is not None}
    assert tags == {"rules"}  # no invented judge score: the rule-based score ranks
    assert {s["metadata"]["scorer"] for s in samples} == {"rules"}
    assert "Model judges were off" in (out / "README.md").read_text()


def test_listed_instructions_are_deduplicated_and_loops_rejected(taxonomy, fake_documents, cfg, tmp_path):
    """One question request lists several instructions (LAB 3.2.1): each becomes a candidate; a
    repeat within the list and a looping item are rejected with their reasons, not kept."""
    reply = ("1. Write a haiku about a lighthouse in winter.\n"
             "2. write a haiku about a lighthouse in winter.\n"
             "3. Write a haiku, a haiku, a haiku, a haiku, a haiku, a haiku, a haiku, a haiku.\n"
             "4. Write a haiku about the first snow on a city roof.\n"
             "5. Write a haiku about a heron waiting at the river")
    t = script(tmp_path, {"skill_question": [{"match": "haiku", "reply": reply}]})
    out = tmp_path / "out"
    cfg.generate.samples, cfg.generate.question_factor = 2, 2  # 4 asked for: one request of 5
    cfg.generate.filters.oversample = 1.0  # responses for the first two good instructions only
    rep = generate_dataset(taxonomy, ["compositional_skills/writing/poetry/haiku"], out, cfg, teacher=t,
                           progress=False)
    [leaf] = rep.leaves
    reasons = sorted(r["reason"] for r in read_jsonl(out / "rejected.jsonl") if r["stage"] in ("dedup", "questions"))
    assert reasons == ["degenerate repetition", "near-duplicate of another generated question"]
    questions = [s["messages"][0]["content"] for s in all_samples(out)]
    assert sorted(questions) == ["Write a haiku about a lighthouse in winter.",
                                 "Write a haiku about the first snow on a city roof."]
    # 5 listed: 2 rejected, 2 kept (samples = 2), the 5th good one unused. Requests: 1 question
    # list, 3 instruction evaluations, 2 responses, 2 pair evaluations
    assert (leaf.generated, leaf.kept, leaf.unused) == (5, 2, 1) and leaf.requests == 1 + 3 + 2 + 2


def _content(out: Path) -> list[str]:
    """Samples without the teacher name and ids (which differ between two scripted teachers)."""
    return sorted(json.dumps([s["messages"], s["metadata"]["scores"], s["metadata"]["leaf"]])
                  for s in all_samples(out))


def test_leaf_runner_gives_the_samples_of_the_round_runner(taxonomy, fake_documents, cfg, tmp_path):
    """A server backend (``concurrent``) runs each leaf on its own thread; what each leaf generates
    and keeps does not depend on which runner ran it."""
    rounds = generate_dataset(taxonomy, None, tmp_path / "rounds", cfg, teacher=ScriptedTeacher(), progress=False)
    threaded = script(tmp_path, {"concurrent": True})
    leaves = generate_dataset(taxonomy, None, tmp_path / "leaves", cfg, teacher=threaded, progress=False)
    assert _content(tmp_path / "rounds") == _content(tmp_path / "leaves") != []
    assert [(s.leaf, s.generated, s.kept, s.rejected, s.requests) for s in rounds.leaves] == \
           [(s.leaf, s.generated, s.kept, s.rejected, s.requests) for s in leaves.leaves]


class _SlowLeafTeacher(ScriptedTeacher):
    """Answers one leaf's instruction requests only after ``release`` is set, and records the
    order of the requests it answers (stage tag, leaf task)."""

    def __init__(self, slow: str, concurrent: bool):
        import threading

        super().__init__()
        self.slow, self.concurrent, self.log = slow, concurrent, []
        self.release = threading.Event()

    def generate(self, requests):
        text = " ".join(m["content"] for r in requests for m in r.messages)
        if self.slow in text and requests[0].tag == "skill_question":
            self.release.wait(timeout=10)
        out = super().generate(requests)
        self.log += [(r.tag, self.slow in " ".join(m["content"] for m in r.messages)) for r in requests]
        if requests[0].tag == "response":
            self.release.set()  # another leaf got to its responses: let the slow leaf go on
        return out


def test_leaf_runner_has_no_barrier_between_leaves(taxonomy, fake_documents, cfg, tmp_path):
    """With a server backend a leaf's responses go out while another leaf still waits for its
    instructions (no round barrier); the round runner, for in-process batching, waits for all."""
    skills = [p for p in SKILLS if "dates" not in p]
    t = _SlowLeafTeacher("haiku", concurrent=True)
    rep = generate_dataset(taxonomy, skills, tmp_path / "a", cfg, teacher=t, progress=False)
    assert all(s.kept > 0 for s in rep.leaves)
    first_response = next(i for i, (tag, _) in enumerate(t.log) if tag == "response")
    slow_questions = max(i for i, (tag, slow) in enumerate(t.log) if tag == "skill_question" and slow)
    assert first_response < slow_questions  # the other leaf answered before haiku had instructions

    t = _SlowLeafTeacher("haiku", concurrent=False)
    t.release.set()
    cfg.cache_dir = str(tmp_path / "cache-b")  # not the shards of the first run
    generate_dataset(taxonomy, skills, tmp_path / "b", cfg, teacher=t, progress=False)
    first_response = next(i for i, (tag, _) in enumerate(t.log) if tag == "response")
    assert all(tag != "skill_question" for tag, _ in t.log[first_response:])
