"""Decisions on measured gains: which checkpoint, whether a later model replaces an earlier one.

The rule (LAB 3.3, "avoid overtraining"; DESIGN.md Decisions): candidates are compared in
training order. The earliest is the incumbent; a later candidate replaces it only when its gain
on the same items is measurable: the paired-bootstrap 95% interval of the mean per-item
difference (:func:`lab_tools.eval.stats.paired_bootstrap`) lies entirely above 0. Otherwise the
incumbent stays, ties included, and the record says "no measurable gain". A comparison is
"too small to decide" (the incumbent stays) when fewer than :data:`MIN_ITEMS` items are scored
by both, or, for proportions, when either side's Wilson interval is wider than +-15 points
(:data:`lab_tools.eval.stats.TOO_WIDE`). The rule is conservative in one direction: a gain needs
a set large enough to show it, while a measurable loss (the interval entirely below 0, at least
:data:`MIN_ITEMS` items) is reported as a loss even on a set that would be too small for a gain.

:data:`MIN_ITEMS` is our rule: below 5 items a percentile bootstrap has so few distinct
resamples that one item sets its bounds (3 of 4 items better would already look "measurable").
"""

from __future__ import annotations

from lab_tools.eval.stats import Estimate, bootstrap_mean, paired_bootstrap, proportion

MIN_ITEMS = 5
GAIN, LOSS, SAME, TOO_SMALL = "measurable gain", "measurable loss", "no measurable gain", "too small to decide"


def score(values: list[float | None], *, is_proportion: bool) -> Estimate:
    """One model's figure over per-item ``values``: Wilson for a proportion (values in 0..1),
    else the bootstrap mean; None entries left out."""
    return proportion(values) if is_proportion else bootstrap_mean(values)


def compare(a: list[float | None], b: list[float | None], *, is_proportion: bool, fixed_a: bool = False) -> dict:
    """``b`` against ``a`` on the same items (per-item scores, same order; an item where either is
    None is left out). Returns ``{"gain": Estimate.to_dict() of mean(b - a), "n", "verdict"}``
    where verdict is "measurable gain", "measurable loss", "no measurable gain" or "too small to
    decide" (module doc). ``fixed_a``: ``a`` is a fixed reference, not a measurement (0.5 per
    item: a win rate against the incumbent itself), so only ``b``'s interval counts as too wide.

    Raises:
        ValueError: ``a`` and ``b`` differ in length.
    """
    gain = paired_bootstrap(a, b)
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    sides = [score([p[i] for p in pairs], is_proportion=True) for i in ((1,) if fixed_a else (0, 1))] \
        if is_proportion else []
    if gain.n < MIN_ITEMS or gain.half_width is None:
        verdict = TOO_SMALL
    elif gain.below(0):  # a measurable loss counts even on a set too small to show a gain
        verdict = LOSS
    elif any(s.too_small for s in sides):
        verdict = TOO_SMALL
    elif gain.above(0):
        verdict = GAIN
    else:
        verdict = SAME
    return {"gain": gain.to_dict(), "n": gain.n, "verdict": verdict}


def choose(names: list[str], per_item: dict[str, list[float | None]], *, metric: str, is_proportion: bool,
           items: list[dict] | None = None) -> dict:
    """Pick among ``names`` (candidates in training order) by the rule of the module doc.

    ``per_item``: each candidate's scores on the same items (higher is better); ``metric``: what
    they are (named in the record); ``items``: ``[{"id", "leaf"}]`` of the set
    (:func:`lab_tools.eval.sets.describe`).

    Returns the decision record ``{"metric", "items", "n", "candidates": {name: Estimate dict},
    "comparisons": [{"incumbent", "challenger", "gain", "n", "verdict", "replaced"}], "chosen",
    "verdict"}``; ``verdict`` is that of the comparison that decided (the last one that replaced
    the incumbent, else the last one made), or "only candidate".

    Raises:
        ValueError: no candidates, or per-item lists of different lengths.
    """
    if not names:
        raise ValueError("choose: no candidates")
    record = {"metric": metric, "items": list(items or []), "n": len(per_item[names[0]]),
              "candidates": {c: score(per_item[c], is_proportion=is_proportion).to_dict() for c in names},
              "comparisons": [], "chosen": names[0], "verdict": "only candidate"}
    incumbent, decided = names[0], None
    for challenger in names[1:]:
        cmp = compare(per_item[incumbent], per_item[challenger], is_proportion=is_proportion)
        replaced = cmp["verdict"] == GAIN
        record["comparisons"].append({"incumbent": incumbent, "challenger": challenger, **cmp, "replaced": replaced})
        if replaced:
            incumbent, decided = challenger, cmp["verdict"]
    record["chosen"] = incumbent
    if record["comparisons"]:
        record["verdict"] = decided or record["comparisons"][-1]["verdict"]
    return record


def win_rate(verdicts: list[float]) -> dict:
    """A win-rate figure from per-item verdicts (1 win, 0.5 tie, 0 loss): ``{"win_rate", "n",
    "wins", "ties", "losses", "interval", "too_small"}`` (Wilson, ties half)."""
    est = proportion(verdicts)
    return {"win_rate": est.value, "n": est.n, "wins": sum(v == 1.0 for v in verdicts),
            "ties": sum(v == 0.5 for v in verdicts), "losses": sum(v == 0.0 for v in verdicts),
            "interval": est.to_dict()["interval"], "too_small": est.too_small}
