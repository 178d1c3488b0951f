"""Reward-model training (TRL RewardTrainer) on a tiny random-weight model: a separable synthetic
task (the chosen response carries a marker word) is learned on unseen leaves; the saved directory
is a one-label sequence-classification model; post-validation drops the mislabeled pairs."""

from __future__ import annotations

import json
import random

import pytest

from lab_tools.config import Config
from lab_tools.feedback.evaluate import load_rm, score_pairs
from lab_tools.feedback.rm import split_by_leaf, train_reward_model

FILLER = "the answer is correct and complete knowledge documents are chunked into passages".split()


def _rows(n_leaves: int = 6, per_leaf: int = 12, flip: float = 0.0, seed: int = 0) -> list[dict]:
    """Pairs whose chosen response ends with "yes." and whose rejected one ends with "no.";
    filler lengths are random, so "longer wins" is near chance. ``flip``: share of training-leaf
    pairs (leaves 0..n-3) with chosen and rejected swapped (label noise)."""
    rng = random.Random(seed)
    rows = []
    for leaf in range(n_leaves):
        for k in range(per_leaf):
            def text(word):
                return " ".join(rng.choice(FILLER) for _ in range(rng.randint(3, 9))) + f" {word}."
            chosen, rejected = text("yes"), text("no")
            flipped = leaf < n_leaves - 2 and rng.random() < flip
            if flipped:
                chosen, rejected = rejected, chosen
            rows.append({"prompt": [{"role": "user", "content": f"Question {k}: what is the score?"}],
                         "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rejected}],
                         "metadata": {"leaf": f"compositional_skills/leaf{leaf}", "flipped": flipped}})
    return rows


def _cfg(tmp_path, tiny_model, **fb) -> Config:
    cfg = Config(cache_dir=str(tmp_path / "cache"))
    cfg.train.student = str(tiny_model)
    cfg.feedback.rm_learning_rate = 3e-3
    cfg.feedback.rm_epochs = 2.0
    cfg.feedback.rm_batch_size = 8
    cfg.feedback.rm_max_length = 64
    cfg.feedback.rm_heldout_leaves = 0.34  # 2 of 6 leaves
    for k, v in fb.items():
        setattr(cfg.feedback, k, v)
    return cfg


def test_split_by_leaf_is_by_leaf_and_stable():
    rows = _rows(n_leaves=6, per_leaf=2)
    train, held, leaves = split_by_leaf(rows, 0.34)
    assert len(leaves) == 2 and len(held) == 4 and len(train) == 8
    assert not {r["metadata"]["leaf"] for r in train} & set(leaves)
    assert split_by_leaf(rows, 0.34)[2] == leaves  # deterministic
    assert split_by_leaf(rows[:2], 0.5)[1] == []  # one leaf: nothing held out, never all
    assert split_by_leaf(rows, 0.0)[1] == []


def test_rm_learns_a_separable_task_on_unseen_leaves(tmp_path, tiny_model, run_lab):
    from transformers import AutoModelForSequenceClassification

    rows = _rows()
    path = tmp_path / "comparisons.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg(tmp_path, tiny_model)
    _, held, _ = split_by_leaf(rows, cfg.feedback.rm_heldout_leaves)
    base_model, base_tok = load_rm(tiny_model)  # the untrained head on the same base
    before = sum(m > 0 for m in score_pairs(base_model, base_tok, held)) / len(held)

    out = tmp_path / "rm"
    manifest = train_reward_model(path, out, cfg, progress=False)
    assert manifest["heldout_pairs"] == len(held) == 24 and manifest["train_pairs"] == 48
    assert manifest["heldout_accuracy"] >= 0.85, manifest
    assert manifest["heldout_accuracy"] >= before + 0.2, (before, manifest["heldout_accuracy"])

    loaded = AutoModelForSequenceClassification.from_pretrained(out)
    assert loaded.config.num_labels == 1 and loaded.config.pad_token_id is not None
    model, tok = load_rm(out)
    after = sum(m > 0 for m in score_pairs(model, tok, held)) / len(held)
    assert after == pytest.approx(manifest["heldout_accuracy"])  # the saved model is the trained one
    assert (out / "rm_manifest.json").is_file() and not (tmp_path / "rm.work").exists()

    # `lab evaluate --reward-model`: the same held-out accuracy, the baseline on the same pairs, Static HHH
    code, cap = run_lab(["evaluate", "--reward-model", str(out), "--data", str(tmp_path), "--out", str(tmp_path / "ev")])
    assert code == 0, cap.err
    res = json.loads((tmp_path / "ev" / "rm_eval.json").read_text())
    assert res["heldout"]["accuracy"] == pytest.approx(manifest["heldout_accuracy"])
    longer = sum(len(r["chosen"][0]["content"]) > len(r["rejected"][0]["content"]) for r in held) / len(held)
    assert res["heldout"]["length_baseline"] == pytest.approx(longer)
    assert set(res["heldout"]["per_leaf"]) == set(manifest["heldout_leaves"])
    assert res["static_hhh"]["n"] == 221 and set(res["static_hhh"]["per_type"]) == {  # the shipped file
        "honest", "helpful", "harmless", "other"}
    assert "Reward model" in cap.out and "longer answer wins" in cap.out


def test_post_validation_drops_the_pairs_the_first_rm_ranks_wrong(tmp_path, tiny_model, run_lab):
    """Through `lab train --phase rm` (settings from a config file), cross-fitted over 3 folds of
    the 4 training leaves (tests/feedback/test_postval.py: why not in-sample). With 2 folds each
    fold RM trains on half the leaves and, on this tiny model, also drops a few clean pairs."""
    import yaml

    rows = _rows(flip=0.2, seed=1)
    (tmp_path / "comparisons.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fb = {k: getattr(_cfg(tmp_path, tiny_model).feedback, k) for k in
          ("rm_learning_rate", "rm_epochs", "rm_batch_size", "rm_max_length", "rm_heldout_leaves")}
    conf = tmp_path / "lab-rm.yaml"
    conf.write_text(yaml.safe_dump({"cache_dir": str(tmp_path / "cache"),
                                    "feedback": dict(fb, rm_post_validation=True, rm_post_validation_folds=3)}))
    code, cap = run_lab(["train", "--phase", "rm", "--data", str(tmp_path), "--model", str(tiny_model),
                         "--out", str(tmp_path / "rm"), "--config", str(conf), "--quiet"])
    assert code == 0, cap.err
    manifest = json.loads((tmp_path / "rm" / "rm_manifest.json").read_text())
    pv = manifest["post_validation"]
    n_flipped = sum(r["metadata"]["flipped"] for r in rows)
    assert n_flipped >= 4
    assert pv["pairs_before"] == 48 and 1 <= pv["dropped"] <= n_flipped + 5
    assert pv["method"] == "cross-fitted" and len(pv["folds"]) == 3
    assert sum(f["pairs_scored"] for f in pv["folds"]) == 48 and sum(f["dropped"] for f in pv["folds"]) == pv["dropped"]
    assert manifest["train_pairs"] == 48 - pv["dropped"]
    assert pv["first_heldout_accuracy"] is not None and manifest["heldout_accuracy"] >= 0.8
    assert "post-validation: dropped" in cap.out and "longer answer wins" in cap.out
