"""The reward baseline of RM-guided self-play and the SDG scorer (lab_tools.feedback.scorer): the
mean RM reward of rejected responses of comparisons held out from RM training (the RM's held-out
leaves), else of a sample spread over every leaf, never the head of the leaf-sorted
comparisons.jsonl; the self-play card records n, the source and the rows."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lab_tools.feedback.scorer import BASELINE_ROWS, baseline_record, baseline_sample, relative_reward


def _comparisons(path, n_leaves: int = 10, per_leaf: int = 20):
    """A leaf-sorted comparisons.jsonl, as the comparison stage writes it."""
    rows = [{"prompt": [{"role": "user", "content": f"Question {leaf}.{k}?"}],
             "chosen": [{"role": "assistant", "content": f"A careful answer {leaf}.{k}."}],
             "rejected": [{"role": "assistant", "content": f"no {leaf}.{k}"}],
             "metadata": {"leaf": f"compositional_skills/leaf{leaf:02d}"}}
            for leaf in range(n_leaves) for k in range(per_leaf)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _leaves(rows, idx):
    return {rows[i]["metadata"]["leaf"] for i in idx}


def test_without_held_out_leaves_the_baseline_spans_every_leaf_not_the_head_of_the_file(tmp_path):
    rows = _comparisons(tmp_path / "comparisons.jsonl")
    assert len(_leaves(rows, range(BASELINE_ROWS))) == 4  # the head of the file: 4 of 10 leaves
    s = baseline_sample(tmp_path / "comparisons.jsonl")
    assert s["source"] == "all leaves" and s["n"] == BASELINE_ROWS == len(s["rows"]) == len(set(s["rows"]))
    assert _leaves(rows, s["rows"]) == {r["metadata"]["leaf"] for r in rows}  # every leaf
    per_leaf = [sum(rows[i]["metadata"]["leaf"] == lf for i in s["rows"]) for lf in sorted(_leaves(rows, s["rows"]))]
    assert max(per_leaf) - min(per_leaf) <= 1  # an even share
    assert s["conversations"] == [rows[i]["prompt"] + rows[i]["rejected"] for i in s["rows"]]
    # more leaves than rows: evenly spaced leaves, one row each
    rows = _comparisons(tmp_path / "many.jsonl", n_leaves=100, per_leaf=2)
    s = baseline_sample(tmp_path / "many.jsonl")
    assert len(_leaves(rows, s["rows"])) == BASELINE_ROWS
    assert max(rows[i]["metadata"]["leaf"] for i in s["rows"]) >= "compositional_skills/leaf95"


def test_held_out_leaves_set_the_baseline_when_there_are_any(tmp_path):
    rows = _comparisons(tmp_path / "comparisons.jsonl")
    held = ["compositional_skills/leaf03", "compositional_skills/leaf08"]
    s = baseline_sample(tmp_path / "comparisons.jsonl", held)
    assert s["source"] == "heldout leaves" and s["n"] == 40 and _leaves(rows, s["rows"]) == set(held)
    # held-out leaves with no comparison: all leaves again
    assert baseline_sample(tmp_path / "comparisons.jsonl", ["nowhere"])["source"] == "all leaves"
    assert baseline_sample(tmp_path / "absent.jsonl")["n"] == 0


def test_relative_reward_uses_the_rms_held_out_leaves(tiny_model, tmp_path):
    from lab_tools.feedback.evaluate import load_rm, rewards
    from lab_tools.tiny import make_tiny_reward_model

    rows = _comparisons(tmp_path / "comparisons.jsonl", n_leaves=4, per_leaf=3)
    rm = make_tiny_reward_model(tiny_model, tmp_path / "rm")
    (rm / "heldout_leaves.json").write_text(json.dumps(["compositional_skills/leaf02"]))
    _, baseline = relative_reward(rm, tmp_path / "comparisons.jsonl", max_length=64)
    model, tok = load_rm(rm)
    held = [r["prompt"] + r["rejected"] for r in rows if r["metadata"]["leaf"] == "compositional_skills/leaf02"]
    assert baseline == pytest.approx(sum(rewards(model, tok, held, max_length=64)) / 3, abs=1e-5)
    rec = baseline_record(rm, tmp_path / "comparisons.jsonl")
    assert rec == {"source": "heldout leaves", "n": 3, "rows": [6, 7, 8], "leaves": ["compositional_skills/leaf02"]}


def test_the_self_play_card_records_the_baseline_rows(tiny_model, tmp_path):
    from lab_tools.config import Config
    from lab_tools.feedback.selfplay import generate_self_play
    from lab_tools.sdg.fake import ScriptedTeacher
    from lab_tools.tiny import make_tiny_reward_model
    from tests.sdg.sdg_taxonomy import write_leaf

    root, out = tmp_path / "taxonomy", tmp_path / "out"
    leaf = "compositional_skills/writing/fables"
    write_leaf(root, leaf, {"version": 3, "created_by": "tester", "task_description": "Write a fable.",
                            "seed_examples": [{"question": f"Write a fable about a {a}.",
                                               "answer": f"A {a} boasted all summer; winter taught it to store food."}
                                              for a in ("fox", "crow", "lion", "hare", "wolf")]})
    out.mkdir()
    (out / "st.jsonl").write_text(json.dumps({"messages": [
        {"role": "user", "content": "Write a short fable about a patient heron and a hasty frog."},
        {"role": "assistant", "content": "x"}], "metadata": {"leaf": leaf}}) + "\n")
    rows = _comparisons(out / "comparisons.jsonl", n_leaves=6, per_leaf=15)
    rm = make_tiny_reward_model(tiny_model, tmp_path / "rm")  # no heldout_leaves.json: every leaf
    cfg = Config(cache_dir=str(tmp_path / "cache"))
    cfg.generate.teacher = "scripted:"
    cfg.feedback = dataclasses.replace(cfg.feedback, min_chars=20, sp_turns=1, sp_candidates=2,
                                       sp_prompts_per_leaf=1, sp_threshold=-1e9, rm_max_length=64)
    teacher = ScriptedTeacher()
    generate_self_play(root, out, cfg, rm, backends={"scripted:": teacher}, progress=False)
    card = json.loads((out / "dataset_card.json").read_text())["self_play"]
    sample = card["reward_baseline_sample"]
    assert sample["source"] == "all leaves" and sample["n"] == BASELINE_ROWS
    assert _leaves(rows, sample["rows"]) == {r["metadata"]["leaf"] for r in rows}
    assert card["reward_baseline"] != 0.0
    md = (out / "README.md").read_text()
    assert f"rejected responses of {BASELINE_ROWS} comparisons (all leaves, 6 leaves" in md
