"""n and a 95% interval for every figure a decision or a card uses.

Two tools, both deterministic:

**Wilson score interval** for a proportion ``p = k / n`` (accuracy, win rate; a tie counted
half makes ``k`` a multiple of 0.5, which the formula accepts). With ``z = 1.959964`` (the 97.5%
quantile of the standard normal distribution)::

    centre = (p + z^2 / (2n)) / (1 + z^2 / n)
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
    interval = [centre - half, centre + half]      (always inside [0, 1])

Sources: E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
JASA 22 (1927) 209-212; recommended over the normal ("Wald") interval for small n by L. D. Brown,
T. T. Cai, A. DasGupta, "Interval estimation for a binomial proportion", Statistical Science 16
(2001) 101-133. Example: 7/8 -> [0.529, 0.978].

**Paired bootstrap** for the difference between two models scored on the same items (Efron &
Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13, percentile interval; paired
resampling of test items as in P. Koehn, "Statistical significance tests for machine translation
evaluation", EMNLP 2004). With per-item differences ``d_i = b_i - a_i`` (i = 1..n)::

    rng = numpy.random.default_rng(seed)
    idx = rng.integers(0, n, size=(R, n))          # R resamples of n items, with replacement
    means = d[idx].mean(axis=1)
    interval = numpy.percentile(means, [2.5, 97.5])   # numpy's default linear interpolation

``R`` = :data:`RESAMPLES` (2000) and ``seed`` = :data:`SEED` (0) unless given. The same resampling
of one model's values gives :func:`bootstrap_mean` (an interval for a mean that is not a
proportion: reference log-likelihood in nats/token, a 1-10 rating).

A proportion whose interval is wider than +-:data:`TOO_WIDE` (15 points) is "too small to decide"
(:attr:`Estimate.too_small`). An interval with fewer than 2 values is undefined (None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975)
RESAMPLES = 2000
SEED = 0
TOO_WIDE = 0.15  # half-width of a proportion's interval above which a set is too small to decide


@dataclass(frozen=True)
class Estimate:
    """A figure with its sample size and 95% interval.

    ``value``: the point estimate (None without data); ``n``: items it rests on; ``low``/``high``:
    the interval (None when undefined); ``method``: how the interval was computed;
    ``proportion``: a 0..1 share (then :attr:`too_small` applies)."""
    value: float | None
    n: int
    low: float | None
    high: float | None
    method: str
    proportion: bool = False

    @property
    def half_width(self) -> float | None:
        """Half the interval's width, or None when it is undefined."""
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2

    @property
    def too_small(self) -> bool:
        """True when the interval is undefined, or (proportions) wider than +-``TOO_WIDE``."""
        hw = self.half_width
        return hw is None or (self.proportion and hw > TOO_WIDE)

    def above(self, x: float = 0.0) -> bool:
        """The whole interval lies strictly above ``x``."""
        return self.low is not None and self.low > x

    def below(self, x: float = 0.0) -> bool:
        """The whole interval lies strictly below ``x``."""
        return self.high is not None and self.high < x

    def to_dict(self) -> dict:
        """``{"value", "n", "interval": [low, high] | None, "method"}`` (+ ``too_small`` for a
        proportion), rounded to 6 digits for JSON files."""
        r = (lambda v: None if v is None else round(float(v), 6))  # noqa: E731
        out = {"value": r(self.value), "n": self.n,
               "interval": None if self.low is None else [r(self.low), r(self.high)], "method": self.method}
        if self.proportion:
            out["too_small"] = self.too_small
        return out


def wilson(k: float, n: int, z: float = Z95) -> Estimate:
    """The Wilson score interval of ``k`` successes in ``n`` trials (module doc).

    ``k`` may be fractional (ties counted half). ``n`` 0 gives value None and no interval.

    Raises:
        ValueError: ``k`` outside ``0..n`` or ``n`` negative.
    """
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Estimate(None, 0, None, None, "wilson", proportion=True)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the edges (rounding aside)
    high = 1.0 if k == n else min(1.0, centre + half)
    return Estimate(p, n, low, high, "wilson", proportion=True)


def proportion(values: list[float]) -> Estimate:
    """:func:`wilson` of per-item scores in 0..1 (1 right / won, 0.5 tie, 0 wrong / lost);
    None entries are left out."""
    vals = [float(v) for v in values if v is not None]
    return wilson(sum(vals), len(vals))


def _resample_means(values, resamples: int, seed: int):
    import numpy as np

    d = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(resamples, len(d)))
    return d[idx].mean(axis=1)


def bootstrap_mean(values: list[float], *, resamples: int = RESAMPLES, seed: int = SEED,
                   proportion: bool = False) -> Estimate:
    """Mean of ``values`` (None entries left out) with a percentile bootstrap 95% interval
    (module doc); undefined interval for fewer than 2 values."""
    import numpy as np

    vals = [float(v) for v in values if v is not None]
    if not vals:
        return Estimate(None, 0, None, None, f"bootstrap {resamples}", proportion)
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return Estimate(mean, 1, None, None, f"bootstrap {resamples}", proportion)
    low, high = np.percentile(_resample_means(vals, resamples, seed), [2.5, 97.5])
    return Estimate(mean, len(vals), float(low), float(high), f"bootstrap {resamples}", proportion)


def paired_bootstrap(a: list[float | None], b: list[float | None], *, resamples: int = RESAMPLES,
                     seed: int = SEED) -> Estimate:
    """Mean of the per-item differences ``b_i - a_i`` over the items both models were scored on
    (an item where either is None is left out), with its paired percentile-bootstrap 95% interval
    (module doc). ``a`` and ``b``: per-item scores on the same items, in the same order.

    Raises:
        ValueError: ``a`` and ``b`` differ in length (not the same items).
    """
    if len(a) != len(b):
        raise ValueError(f"paired_bootstrap: {len(a)} vs {len(b)} scores (not the same items)")
    diffs = [float(y) - float(x) for x, y in zip(a, b) if x is not None and y is not None]
    est = bootstrap_mean(diffs, resamples=resamples, seed=seed)
    return Estimate(est.value, est.n, est.low, est.high, f"paired bootstrap {resamples}, seed {seed}")


def format_estimate(est: dict | Estimate | None, *, percent: bool = False, digits: int = 3) -> str:
    """``"62.5% [30.6–86.3%] (n 8)"`` (percent) or ``"-1.234 [-1.5–-1.0] (n 8)"``; "–" without a
    value; the interval is left out when undefined; "too small to decide" is appended for a
    proportion whose interval is wider than +-15 points. Accepts an :class:`Estimate`, its
    :meth:`~Estimate.to_dict`, a figure dict keyed ``accuracy`` or ``win_rate`` with ``n`` and
    ``interval``, or a bare number."""
    f = ((lambda v: f"{100 * v:.1f}%") if percent else (lambda v: f"{v:.{digits}f}"))
    if isinstance(est, (int, float)) and not isinstance(est, bool):  # a bare figure (older files)
        return "–" if math.isnan(est) else f(est)
    if est is None:
        return "–"
    d = est.to_dict() if isinstance(est, Estimate) else est
    value = next((d[k] for k in ("value", "accuracy", "win_rate") if k in d), None)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f(value)
    if d.get("interval"):
        lo, hi = d["interval"]
        text += f" [{f(lo)} to {f(hi)}]"
    text += f" (n {d.get('n', 0)})"
    if d.get("too_small"):
        text += ", too small to decide"
    return text
