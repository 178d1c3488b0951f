"""Cross-fitted post-validation of the synthetic comparisons (ALMoST, arXiv 2305.13735, section 3.1
"Reward Modeling", the "as-is RM" post-validation; ``feedback.rm_post_validation``).

ALMoST filters its rule-of-thumb comparisons with a reward model: a pair that the RM ranks the
wrong way is taken as mislabelled and dropped before the final RM is trained. An RM scoring the
pairs it trained on cannot do that: it has fitted (often memorized) their labels, a swapped pair
included, so an in-sample filter keeps what it should drop. Here every pair is scored by an RM
that did **not** train on it (cross-fitting): the training comparisons' leaves are dealt into
``k`` folds (``feedback.rm_post_validation_folds``); for each fold an RM is trained on the other
``k - 1`` folds and scores the fold's pairs; a pair is dropped when ``r(chosen) - r(rejected) <= 0``
(the RM does not prefer the chosen response). The final RM is then trained on the kept pairs by
the caller (:func:`lab_tools.feedback.rm.train_reward_model`).

Folds are by leaf, like the held-out split (:func:`lab_tools.feedback.rm.split_by_leaf`), so a fold's
RM never saw a prompt of the pairs it scores. Training and scoring are a function parameter
(``fit_score``), so the rule is testable with a stand-in scorer and without a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from lab_tools.errors import LabError

RULE = "dropped when r(chosen) - r(rejected) <= 0 under an RM trained on the other folds (by leaf)"

#: ``fit_score(train_rows, score_rows) -> margins``: train an RM on ``train_rows`` and return
#: ``r(chosen) - r(rejected)`` for each of ``score_rows``
FitScore = Callable[[list[dict], list[dict]], Sequence[float]]


def _leaf(row: dict) -> str:
    return str((row.get("metadata") or {}).get("leaf", ""))


def fold_leaves(leaves: Sequence[str], k: int, seed: int = 0) -> list[list[str]]:
    """``min(k, len(leaves))`` folds of leaves: the leaves ordered by sha256 of ``seed:fold:leaf``
    (stable when leaves are added) and dealt round-robin, so fold sizes differ by at most one leaf;
    each fold sorted."""
    ranked = sorted(set(leaves), key=lambda lf: hashlib.sha256(f"{seed}:fold:{lf}".encode()).hexdigest())
    k = min(k, len(ranked))
    return [sorted(ranked[i::k]) for i in range(k)]


def cross_fit(rows: list[dict], k: int, fit_score: FitScore, *, seed: int = 0,
              heldout: Sequence[dict] = ()) -> tuple[list[dict], dict]:
    """Cross-fitted post-validation of the training comparisons ``rows`` (module doc). Returns
    ``(kept, record)``: the pairs no out-of-fold RM ranked the wrong way (in their order in
    ``rows``) and ``{"method": "cross-fitted", "rule", "folds_requested", "pairs_before",
    "dropped", "first_heldout_accuracy", "folds": [{"fold", "leaves", "train_pairs",
    "pairs_scored", "dropped", "heldout_accuracy"}]}``. ``heldout``: the comparisons held out from
    RM training altogether (the RM's held-out leaves); each fold's RM also scores them, and
    ``first_heldout_accuracy`` is the fold RMs' pooled accuracy there (the RMs before filtering;
    None without held-out pairs).

    Raises:
        LabError: ``k`` < 2, fewer than two leaves to fold, or every pair dropped.
    """
    if k < 2:
        raise LabError(f"post-validation needs at least 2 folds, got {k}", field="feedback.rm_post_validation_folds")
    folds = fold_leaves([_leaf(r) for r in rows], k, seed)
    if len(folds) < 2:
        raise LabError("post-validation cross-fits over leaves and the training comparisons come from one leaf: "
                       "add leaves or set feedback.rm_post_validation: false", field="feedback.rm_post_validation")
    heldout = list(heldout)
    keep = [True] * len(rows)
    record = {"method": "cross-fitted", "rule": RULE, "folds_requested": k, "pairs_before": len(rows), "folds": []}
    right = scored = 0
    for i, leaves in enumerate(folds):
        inside = set(leaves)
        idx = [j for j, r in enumerate(rows) if _leaf(r) in inside]
        train = [r for r in rows if _leaf(r) not in inside]
        margins = list(fit_score(train, [rows[j] for j in idx] + heldout))
        if len(margins) != len(idx) + len(heldout):
            raise ValueError(f"fit_score returned {len(margins)} margins for {len(idx) + len(heldout)} pairs")
        dropped = 0
        for j, m in zip(idx, margins):
            if m <= 0:
                keep[j], dropped = False, dropped + 1
        held = margins[len(idx):]
        right, scored = right + sum(m > 0 for m in held), scored + len(held)
        record["folds"].append({"fold": i, "leaves": leaves, "train_pairs": len(train), "pairs_scored": len(idx),
                                "dropped": dropped, "heldout_accuracy": sum(m > 0 for m in held) / len(held)
                                if held else None})
    kept = [r for r, ok in zip(rows, keep) if ok]
    record["dropped"] = len(rows) - len(kept)
    record["first_heldout_accuracy"] = right / scored if scored else None
    if not kept:
        raise LabError("post-validation: the out-of-fold reward models ranked every training pair the wrong way")
    return kept, record
