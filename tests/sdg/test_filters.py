"""Rule-based quality filters (lab_tools/sdg/filters.py): real degenerate teacher outputs are
rejected with their reason, human-written seed answers are kept, kept samples are ranked by a
score and the dataset card / bot comment show a per-leaf quality report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab_tools.bot.render import LeafView, render_leaf
from lab_tools.config_sections import FiltersConfig
from lab_tools.jsonl import read_jsonl
from lab_tools.sdg import filters
from lab_tools.sdg.fake import ScriptedTeacher
from lab_tools.sdg.phases import leaf_quality, quality_line
from lab_tools.sdg.pipeline import generate_dataset

CFG = FiltersConfig()

# Two degenerate outputs that a `make build` with the embedded teacher kept, rebuilt from the
# issue that asked for these filters (it quotes their openings): a haiku looping "a life, " to the
# token limit, and an extraction answer that apologises and leaks a role label. (Its third example,
# a museum guide inventing "a colossal shark named Hades", is a made-up fact in a freeform answer:
# no rule without a judge can see that; test_grounded_and_extraction_rules shows the same text
# rejected where a context exists.)
HAIKU_LOOP = ("Autumn leaves descend,\nwhispers of a fleeting life,\n" + "a life, " * 40).strip()
SORRY_LEAK = ("I'm sorry for the confusion. A: You're currently working on a project that involves "
              "organizing an event, and you need the details in a structured format.")
# Real outputs of the embedded teacher (SmolLM2-135M-Instruct) for this repository's haiku leaf
# (`lab generate taxonomy --teacher transformers:embedded --leaves .../poetry/haiku`, before these
# filters existed): the first two were KEPT in st.jsonl then, the third was rejected by the old
# trigram rule (its raw text, cut at 500 characters, from rejected.jsonl).
REAL = {
    'celestial_loop': "In the dawn's early light, the moon\nFalls, a gentle beauty,\nA fleeting sight to me, a fleeting sight,\nTo me, in twilight's haste,\nA sunset of endless light,\nA celestial sight,\nA fleeting sight,\nA celestial sight,\nA celestial sight,\nA celestial sight,\nA celestial sight,\nA celestial sight,\nA celestial sight,\nA celestial sight,\nA celestial sight,",
    'repeated_sentence': "In the stillness of the dawn, a forest's silent flame is a beacon of promise.\n\nIn the stillness of the dawn, a forest's silent flame is a beacon of promise.\n\nThe sunrise over a forest brings a new dawn, a promise of life and light.",
    'quiet_bed_loop': "A soft moonlight stirs the cat's dreams, a quiet bed, a bed filled with silence, a cat's peaceful sleep, and a quiet bed, a cat's quiet bed, a quiet bed, a quiet bed, a cat's quiet bed, a quiet bed, a cat's quiet bed, a quiet bed, a quiet bed, a cat's quiet bed, a quiet bed, a cat's quiet bed, a quiet bed, a cat's quiet bed,",
}
REAL_GOOD = "In the forest, a tree stands tall, its branches reaching towards the sky, a testament to the resilience of the natural world."  # kept then and now


def verdict(answer, question="Write a haiku about autumn.", **kw):
    return filters.check(question, answer, CFG, **kw)


@pytest.mark.parametrize("answer,hit_limit,reason", [
    (HAIKU_LOOP, True, "degenerate repetition"),
    (HAIKU_LOOP, False, "degenerate repetition"),
    (SORRY_LEAK, False, "role or template leakage"),
    ("User: Write a haiku about autumn.\nAssistant: Leaves fall slowly down.", False, "role or template leakage"),
    ("<|im_start|>assistant\nLeaves fall slowly down.", False, "role or template leakage"),
    ("Leaves fall slowly down, the wind carries them away. How can I help you today?", False,
     "role or template leakage"),
    ("I'm sorry, but I can't write poems about that topic.", False, "refusal"),
    ("As an AI language model, I do not experience the seasons.", False, "refusal"),
    ("The sea is calm tonight.\nThe sea is calm tonight.\nThe sea is calm tonight.\nThe moon is high.",
     False, "degenerate repetition"),
    ("Leaves of red and gold drift down onto the quiet path while the old oak tree slowly lets go of",
     True, "cut at the token limit"),
    ("Write a haiku about autumn.", False, "restates the question"),
])
def test_degenerate_outputs_are_rejected_with_their_reason(answer, hit_limit, reason):
    assert verdict(answer, hit_limit=hit_limit).reason == reason


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_embedded_teacher_loops_are_rejected(name):
    assert verdict(REAL[name], question="Write a haiku about the sunset and the moon.").reason == "degenerate repetition"


def test_real_embedded_teacher_answer_is_kept():
    assert verdict(REAL_GOOD, question="Write a haiku about a tree in the forest.").reason is None


def test_each_rule_sees_its_own_fault():
    """The rule functions one by one, on the issue's outputs: the loop is a loop and cut, the
    apology is both a refusal and a role leak."""
    rep = filters.gopher_repetition(HAIKU_LOOP)
    assert rep["top_2_gram"] > max(CFG.max_top_ngram_frac) and rep["dup_5_gram"] > max(CFG.max_dup_ngram_frac)
    assert filters.compression_ratio(HAIKU_LOOP) < CFG.min_compression_ratio
    assert filters.truncated_mid_sentence(HAIKU_LOOP.rsplit(",", 1)[0] + ", a", hit_limit=True)
    assert filters.refusal(SORRY_LEAK) and filters.leakage(SORRY_LEAK) == "A:"


@pytest.mark.parametrize("answer", [
    "Crisp leaves on the path,\nthe maple lets its red go,\nwind hums a slow song.",
    # the same answer ending a sentence exactly at the token bound is not cut
    "Leaves of red and gold drift down onto the quiet path.",
    "Plan A: start early. Plan B: start late.",   # "A:" inside a sentence is no role label
    "1. Tiger: up to 300 kg.\n4. Human: about 62 kg on average.",   # a list item, not a chat role
])
def test_good_outputs_are_kept(answer):
    assert verdict(answer, hit_limit=True).reason is None


def test_grounded_and_extraction_rules():
    ctx = ("Join us for the Spring Plant Swap on Saturday, April 12, 2025! Doors open at 10:00 am in the "
           "community hall on Elm Street.")
    q = "Extract the event details as JSON."
    good = '{"event": "Spring Plant Swap", "date": "2025-04-12", "time": "10:00", "location": "community hall on Elm Street"}'
    assert filters.check(q, good, CFG, context=ctx, grounded=True, extraction=True).reason is None
    invented = ("The museum will host a colossal shark named Hades next winter, and tickets for the "
                "underwater dinner gala can be bought online from tomorrow morning.")
    assert filters.check(q, invented, CFG, context=ctx, grounded=True).reason == "answer not grounded in its context"
    assert filters.check(q, '{"event": "Gala", "date": null}', CFG, context=ctx, grounded=True,
                         extraction=True).reason == "extraction names nothing from the context"


def _corpus_seed_answers(root: Path):
    from lab_tools.errors import LabError
    from lab_tools.taxonomy.leaf import iter_leaf_paths, load_leaf

    for case in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in iter_leaf_paths(case):
            try:
                leaf = load_leaf(case, path)
            except LabError:
                continue
            for s in leaf.seed_examples:
                for q, a in (s.qna if leaf.kind == "knowledge" else [(s.question, s.answer)]):
                    if q and a:
                        yield leaf, q, a, s.context


def _seed_verdict(leaf, q, a, ctx):
    return filters.check(q, a, CFG, context=ctx, grounded=leaf.grounded, knowledge=leaf.kind == "knowledge",
                         extraction=filters.is_extraction(leaf))


def test_corpus_seed_answers_are_kept(corpus_dir):
    """Seed answers are human-written good outputs: the defaults keep all but a handful, and
    each of those is a seed that is itself broken (an answer that is an empty table, receipts
    whose context lacks the items the answer lists, an answer identical to its question)."""
    seeds = list(_corpus_seed_answers(corpus_dir / "cases"))
    bad = [(leaf.path, v.reason) for leaf, q, a, c in seeds for v in [_seed_verdict(leaf, q, a, c)] if v.reason]
    assert len(seeds) > 400 and len(bad) <= 0.02 * len(seeds), bad
    assert {p for p, _ in bad} <= {"compositional_skills/general/tables/empty",
                                   "compositional_skills/extraction/receipt/plain_text",
                                   "compositional_skills/extraction/receipt/bullet_points",
                                   "compositional_skills/extraction/inference/qualitative/tone_and_style"}, bad


def test_own_taxonomy_seed_answers_are_all_kept(repo_root):
    seeds = list(_corpus_seed_answers(repo_root))  # the repository root holds taxonomy/ as one case
    assert seeds and all(_seed_verdict(*x).reason is None for x in seeds)


def test_rule_score_ranks_a_clean_answer_above_a_borderline_one():
    clean = verdict("Crisp leaves on the path, the maple lets its red go, wind hums a slow song.")
    borderline = verdict("Autumn, autumn leaves. Write a haiku about autumn leaves and the autumn wind.")
    assert clean.reason is None and borderline.reason is None
    assert 0 <= filters.rule_score(borderline.margins) < filters.rule_score(clean.margins) <= 1


def _cands(n):
    return [{"id": i, "question": f"q{i}", "answer": f"answer {i}", "scores": {"rules": 0.5 + i / 100, "pair": p}}
            for i, p in zip(range(n), [3, 2, 3, 3, 2][:n])]


def test_select_top_prefers_judge_then_reward_then_rules():
    kept, name = filters.select_top(_cands(5), 2, judge_key="pair")
    assert name == "judge" and [c["id"] for c in kept] == [3, 2]  # pair 3 first, ties by rule score
    scorer = lambda prompts, answers: [-int(a.split()[1]) for a in answers]  # noqa: E731  (prefers id 0)
    scorer.name = "rm-test"
    for c in (cands := _cands(5)):
        c["scores"]["pair"] = None  # judges off
    kept, name = filters.select_top(cands, 2, judge_key="pair", scorer=scorer)
    assert name == "reward:rm-test" and [c["id"] for c in kept] == [0, 1]
    kept, name = filters.select_top(cands, 2, judge_key="pair")
    assert name == "rules" and [c["id"] for c in kept] == [4, 3] and kept[0]["score"] == 0.54
    with pytest.raises(ValueError):
        filters.select_top(cands, 2, scorer=lambda p, a: [1.0])


def _script(tmp_path, data) -> ScriptedTeacher:
    p = tmp_path / "script.json"
    p.write_text(json.dumps(data))
    return ScriptedTeacher(str(p))


def test_generate_rejects_degenerate_answers_and_reports_quality(taxonomy, fake_documents, cfg, tmp_path):
    """Through generate_dataset: the haiku leaf's answers are the issue's loop, a role leak or a
    good haiku; only good ones reach st.jsonl, each rejection is in rejected.jsonl with its reason
    and the dataset card's quality report counts them."""
    good = ["Crisp leaves on the path,\nthe maple lets its red go,\nwind hums a slow song.",
            "Cold rain on tin roofs,\na heron folds its grey wings,\nthe pond holds the sky."]
    asked = ["Compose a haiku about the endless sea.", "Describe the harbor festival in a haiku.",
             "Compose a haiku about winter pines.", "Compose a haiku about a quiet station at night."]
    t = _script(tmp_path, {"skill_question": [{"reply": "\n".join(f"{k + 1}. {q}" for k, q in enumerate(asked))}],
                           "response": [{"match": "endless sea", "reply": HAIKU_LOOP},
                                        {"match": "harbor festival", "reply": SORRY_LEAK}, {"reply": good}]})
    out = tmp_path / "out"
    cfg.generate.model_judges = False
    generate_dataset(taxonomy, ["compositional_skills/writing/poetry/haiku"], out, cfg, teacher=t, progress=False)
    answers = [m["content"] for s in read_jsonl(out / "st.jsonl") for m in s["messages"] if m["role"] == "assistant"]
    assert answers and set(answers) <= set(good)
    reasons = {r["reason"] for r in read_jsonl(out / "rejected.jsonl") if r["stage"] == "filters"}
    assert reasons == {"degenerate repetition", "role or template leakage"}
    card = json.loads((out / "dataset_card.json").read_text())
    q = card["quality"]["compositional_skills/writing/poetry/haiku"]
    assert q["kept"] == len(answers) and q["rejected"]["degenerate repetition"] >= 1
    assert q["scorer"] == "rules" and card["scorers"] == ["rules"]
    assert len(q["kept_examples"]) == min(3, len(answers)) and len(q["rejected_examples"]) == 2
    md = (out / "README.md").read_text()
    assert "## Quality report" in md and quality_line(q) in md


def test_top_samples_by_reward_hook(taxonomy, fake_documents, cfg, tmp_path):
    """``generate.samples`` keeps the best samples by score, not the first: with a reward-model
    hook that prefers short answers, the kept ones are the shortest of those answered."""
    seen: dict[str, float] = {}

    def scorer(prompts, answers):
        seen.update({a: -len(a) for a in answers})
        return [-len(a) for a in answers]

    scorer.name = "shortest"
    cfg.generate.model_judges, cfg.generate.samples, cfg.generate.filters.oversample = False, 2, 3.0
    out = tmp_path / "out"
    generate_dataset(taxonomy, ["compositional_skills/writing/poetry/haiku"], out, cfg, teacher=ScriptedTeacher(),
                     progress=False, scorer=scorer)
    kept = read_jsonl(out / "st.jsonl")
    answers = [m["content"] for s in kept for m in s["messages"] if m["role"] == "assistant"]
    assert len(seen) > 2 and len(kept) == 2  # more answered than kept
    assert sorted(answers, key=len) == sorted(seen, key=len)[:2]  # the two shortest answered, not the first two
    assert {s["metadata"]["scorer"] for s in kept} == {"reward:shortest"}
    assert all(s["metadata"]["score"] == -len(a) for s, a in zip(kept, answers))
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["leaves"][0]["unused"] >= len(seen) - 2 and card["scorers"] == ["reward:shortest"]


def test_bot_comment_shows_the_quality_line_escaped():
    samples = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a b c"}],
                "metadata": {"score": 0.9, "scorer": "rules"}}]
    rejected = [{"stage": "pair_eval", "reason": "pair score 1 < threshold 3 <img src=x>", "question": "q"}]
    md = render_leaf(LeafView(path="compositional_skills/x", stats={"generated": 2, "kept": 1},
                              samples=samples, rejected=rejected))
    line = next(ln for ln in md.splitlines() if ln.startswith("Quality: "))
    assert "kept 1 · rejected: pair score 1 &#60; threshold 3 &#60;img" in line and "<img" not in md
    assert line == "Quality: " + quality_line(leaf_quality(samples, rejected),
                                              esc=lambda t: __import__("lab_tools.bot.render", fromlist=["x"]).inline(t, 80))
