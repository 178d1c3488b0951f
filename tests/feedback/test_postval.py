"""Cross-fitted post-validation (lab_tools.feedback.postval, ALMoST section 3.1): every pair is
scored by a reward model that did not train on it, so planted mislabelled pairs that an RM
memorizes (and an in-sample filter therefore keeps) are dropped; the RM manifest records each
fold's leaves, pairs scored and dropped."""

from __future__ import annotations

import json

import pytest

from lab_tools.errors import LabError
from lab_tools.feedback.postval import cross_fit, fold_leaves


def _pair(leaf: int, k: int, swapped: bool) -> dict:
    good, bad = f"Answer {leaf}-{k}: here it is, yes.", f"Answer {leaf}-{k}: no."
    chosen, rejected = (bad, good) if swapped else (good, bad)
    return {"prompt": [{"role": "user", "content": f"Q{leaf}-{k}?"}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "metadata": {"leaf": f"skills/leaf{leaf}", "swapped": swapped}}


def _rows(n_leaves: int = 6, per_leaf: int = 6) -> list[dict]:
    """Every leaf has mislabelled pairs (chosen and rejected swapped): pairs k = 0 and 3."""
    return [_pair(leaf, k, swapped=k % 3 == 0) for leaf in range(n_leaves) for k in range(per_leaf)]


class MemorizingRM:
    """A deterministic stand-in for an RM trained to convergence: it reproduces the label of every
    pair it trained on (a swapped pair included) and, on a pair it never saw, prefers the answer
    that says "yes." (the true rule). Records which pairs each fit trained on and scored."""

    def __init__(self):
        self.calls: list[tuple[list[dict], list[dict]]] = []

    def __call__(self, train: list[dict], scored: list[dict]) -> list[float]:
        self.calls.append((train, scored))
        seen = {(r["prompt"][0]["content"], r["chosen"][0]["content"]) for r in train}

        def reward_gap(r):
            if (r["prompt"][0]["content"], r["chosen"][0]["content"]) in seen:
                return 2.0  # memorized: the label as given
            return 1.0 if r["chosen"][0]["content"].endswith("yes.") else -1.0
        return [reward_gap(r) for r in scored]


def test_cross_fitting_drops_the_planted_mislabelled_pairs_that_the_in_sample_filter_keeps():
    rows, heldout = _rows(), [_pair(9, k, swapped=False) for k in range(4)]
    swapped = [r for r in rows if r["metadata"]["swapped"]]
    assert len(swapped) == 12

    # today's in-sample filter (train on all, drop the pairs the same RM ranks wrong) keeps them all
    in_sample = [r for r, m in zip(rows, MemorizingRM()(rows, rows)) if m >= 0]
    assert all(r in in_sample for r in swapped)

    rm = MemorizingRM()
    kept, record = cross_fit(rows, 3, rm, seed=0, heldout=heldout)
    assert not any(r["metadata"]["swapped"] for r in kept)  # every planted pair dropped
    assert kept == [r for r in rows if not r["metadata"]["swapped"]]  # and nothing else, in order
    assert record["dropped"] == 12 and record["pairs_before"] == 36 and record["method"] == "cross-fitted"
    # no fold's RM scored a pair it trained on; the folds partition the leaves
    for train, scored in rm.calls:
        assert not {r["metadata"]["leaf"] for r in train} & {r["metadata"]["leaf"] for r in scored[:-len(heldout)]}
    folds = record["folds"]
    assert len(folds) == 3 and sorted(lf for f in folds for lf in f["leaves"]) == sorted(
        {r["metadata"]["leaf"] for r in rows})
    assert [f["pairs_scored"] for f in folds] == [12, 12, 12] and sum(f["dropped"] for f in folds) == 12
    assert all(f["train_pairs"] == 24 and f["heldout_accuracy"] == 1.0 for f in folds)
    assert record["first_heldout_accuracy"] == 1.0


def test_folds_are_stable_balanced_and_by_leaf():
    leaves = [f"l{i}" for i in range(7)]
    folds = fold_leaves(leaves, 3, seed=0)
    assert sorted(len(f) for f in folds) == [2, 2, 3] and sorted(sum(folds, [])) == leaves
    assert fold_leaves(list(reversed(leaves)), 3, seed=0) == folds  # order of the rows does not matter
    assert len(fold_leaves(leaves[:2], 5)) == 2  # never more folds than leaves


def test_cross_fitting_refuses_what_it_cannot_do():
    rows = _rows(n_leaves=1)
    with pytest.raises(LabError, match="one leaf"):
        cross_fit(rows, 2, MemorizingRM())
    with pytest.raises(LabError, match="at least 2 folds"):
        cross_fit(_rows(), 1, MemorizingRM())
    with pytest.raises(LabError, match="every training pair"):
        cross_fit(_rows(), 2, lambda train, scored: [-1.0] * len(scored))


def test_folds_setting_is_checked():
    from lab_tools.config import Config
    from lab_tools.errors import ConfigError

    cfg = Config()
    assert cfg.feedback.rm_post_validation_folds == 2
    for bad in (0, 1):
        with pytest.raises(ConfigError, match="rm_post_validation_folds"):
            cfg.override("feedback.rm_post_validation_folds", bad)


def test_rm_training_cross_fits_and_records_each_fold(tmp_path, tiny_model):
    """The code path of `lab train --phase rm` with post-validation on a tiny random model."""
    from lab_tools.config import Config
    from lab_tools.feedback.report import rm_markdown
    from lab_tools.feedback.rm import evaluate_saved, split_by_leaf, train_reward_model

    rows = _rows(n_leaves=5, per_leaf=6)
    path = tmp_path / "comparisons.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = Config(cache_dir=str(tmp_path / "cache"))
    cfg.train.student = str(tiny_model)
    for k, v in {"rm_learning_rate": 3e-3, "rm_epochs": 2.0, "rm_batch_size": 8, "rm_max_length": 64,
                 "rm_heldout_leaves": 0.2, "rm_post_validation": True, "rm_post_validation_folds": 2}.items():
        setattr(cfg.feedback, k, v)
    train, held, _ = split_by_leaf(rows, 0.2)
    manifest = train_reward_model(path, tmp_path / "rm", cfg, progress=False)
    pv = manifest["post_validation"]
    assert pv["method"] == "cross-fitted" and pv["pairs_before"] == len(train) == 24
    assert len(pv["folds"]) == 2
    assert sorted(lf for f in pv["folds"] for lf in f["leaves"]) == sorted({r["metadata"]["leaf"] for r in train})
    assert sum(f["pairs_scored"] for f in pv["folds"]) == 24
    assert pv["dropped"] == sum(f["dropped"] for f in pv["folds"])
    assert manifest["train_pairs"] == 24 - pv["dropped"] - manifest["length_dropped"]["count"]
    assert all(f["heldout_accuracy"] is not None for f in pv["folds"]) and pv["first_heldout_accuracy"] is not None
    md = rm_markdown(evaluate_saved(tmp_path / "rm", path))
    assert "cross-fitted over 2 folds" in md and "pairs scored" in md
