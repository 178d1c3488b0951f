"""Intervals (lab_tools/eval/stats.py) against reference computations done another way."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab_tools.eval.stats import Estimate, bootstrap_mean, format_estimate, paired_bootstrap, wilson


def test_wilson_matches_the_hand_computation_for_7_of_8():
    # p = 7/8, n = 8, z = 1.959964: z^2 = 3.841459, z^2/n = 0.480182
    # centre = (0.875 + 3.841459/16) / 1.480182 = 1.115091 / 1.480182 = 0.753348
    # half   = (1.959964 / 1.480182) * sqrt(0.875 * 0.125 / 8 + 3.841459 / 256)
    #        = 1.324137 * sqrt(0.013672 + 0.015006) = 1.324137 * 0.169344 = 0.224236
    est = wilson(7, 8)
    assert est.value == 0.875 and est.n == 8
    assert est.low == pytest.approx(0.753348 - 0.224236, abs=2e-6)
    assert est.high == pytest.approx(0.753348 + 0.224236, abs=2e-6)
    assert (round(est.low, 4), round(est.high, 4)) == (0.5291, 0.9776)  # the published Wilson interval
    assert est.half_width > 0.15 and est.too_small  # 8 items cannot decide
    assert not wilson(300, 400).too_small


def test_wilson_edges_and_errors():
    assert (wilson(0, 10).low, wilson(10, 10).high) == (0.0, 1.0)
    assert wilson(0, 0).value is None and wilson(0, 0).too_small
    assert 0 < wilson(2.5, 4).low < 0.625 < wilson(2.5, 4).high < 1  # a tie counted half
    with pytest.raises(ValueError):
        wilson(5, 4)


def test_paired_bootstrap_matches_a_direct_numpy_computation():
    a = [0, 1, 1, 0, 1, 0, 0, 1, 1, 0, None, 1]
    b = [1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, None]
    est = paired_bootstrap(a, b, resamples=2000, seed=0)
    d = np.array([y - x for x, y in zip(a, b) if x is not None and y is not None], dtype=float)
    rng = np.random.default_rng(0)
    means = d[rng.integers(0, len(d), size=(2000, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    assert est.n == 10 and est.value == pytest.approx(d.mean())
    assert (est.low, est.high) == (pytest.approx(lo), pytest.approx(hi))
    assert est.low < est.value < est.high
    # deterministic, and another seed gives another (close) interval
    assert paired_bootstrap(a, b) == est
    with pytest.raises(ValueError):
        paired_bootstrap([1, 2], [1])


def test_bootstrap_of_identical_scores_is_exactly_zero_and_one_item_has_no_interval():
    same = paired_bootstrap([0.5] * 6, [0.5] * 6)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0) and not same.above(0)
    one = bootstrap_mean([3.0])
    assert one.value == 3.0 and one.low is None and one.too_small
    assert bootstrap_mean([]).value is None


def test_format_estimate_shows_n_interval_and_too_small():
    text = format_estimate(wilson(7, 8), percent=True)
    assert text == "87.5% [52.9% to 97.8%] (n 8), too small to decide"
    assert format_estimate(Estimate(-1.25, 4, -1.5, -1.0, "bootstrap")) == "-1.250 [-1.500 to -1.000] (n 4)"
    assert format_estimate(None) == "–" and format_estimate(0.5, percent=True) == "50.0%"
    assert format_estimate(math.nan) == "–"
    assert format_estimate({"win_rate": 0.5, "n": 4, "interval": [0.15, 0.85], "too_small": True},
                           percent=True).startswith("50.0% [15.0% to 85.0%] (n 4)")
