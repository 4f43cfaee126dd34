"""Binomial confidence intervals and one-sided upper bounds, vectorized over counts; t intervals
on the mean of independent run estimates (:func:`summarize`, for splitting) and a lower end for
that mean that holds whatever their distribution (:func:`markov_lower`).

The intervals are the ones `scipy.stats.binomtest(k, n).proportion_ci` gives (Wilson score,
Clopper-Pearson `exact`), plus Jeffreys, written in closed form with `scipy.stats` quantiles so a
whole curve of counts costs one call: Clopper-Pearson through beta quantiles (binomtest finds the
same bounds by root finding), Wilson through the normal quantile (Newcombe's formula, as in scipy),
Jeffreys as the equal-tailed Beta(k + 1/2, n - k + 1/2) posterior interval. At k = 0 the lower end
is exactly 0 and at k = n the upper end is exactly 1, as in scipy (Brown, Cai and DasGupta's
convention for Jeffreys); the other end keeps its two-sided tail. A count with n = 0 has no interval
and gives NaN.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = ["CI_METHODS", "Summary", "binomial_ci", "markov_lower", "summarize", "upper_bound"]

CI_METHODS = ("wilson", "exact", "jeffreys")


def _counts(k: ArrayLike, n: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Broadcasts and checks counts: integers with 0 <= k <= n."""
    k_arr, n_arr = np.broadcast_arrays(np.asarray(k), np.asarray(n))
    if k_arr.dtype.kind not in "iub" or n_arr.dtype.kind not in "iub":
        raise ValueError("k and n must be integers")
    if np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValueError("counts must satisfy 0 <= k <= n")
    return k_arr.astype(np.float64), n_arr.astype(np.float64)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def _finish(value: np.ndarray) -> np.ndarray | float:
    """Returns a Python float for a scalar result, the array otherwise."""
    return float(value) if value.ndim == 0 else value


def binomial_ci(
    k: ArrayLike, n: ArrayLike, method: str = "wilson", level: float = 0.95
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Two-sided confidence interval for a binomial proportion k / n.

    Args:
        k: Successes, integer scalar or array.
        n: Trials, integer scalar or array broadcastable with `k`.
        method: "wilson" (score interval), "exact" (Clopper-Pearson) or "jeffreys".
        level: Confidence level in (0, 1).

    Returns:
        (low, high): floats for scalar input, arrays of the broadcast shape otherwise; NaN where
        n = 0.

    Raises:
        ValueError: For an unknown method, a level outside (0, 1) or counts outside 0 <= k <= n.
    """
    if method not in CI_METHODS:
        raise ValueError(f"method must be one of {', '.join(CI_METHODS)}, got {method!r}")
    _check_level(level)
    k_f, n_f = _counts(k, n)
    empty = n_f == 0
    n_safe = np.where(empty, 1.0, n_f)
    tail = (1.0 - level) / 2.0
    if method == "wilson":
        z = stats.norm.ppf(0.5 + 0.5 * level)
        p = k_f / n_safe
        denom = 2.0 * (n_safe + z**2)
        center = (2.0 * n_safe * p + z**2) / denom
        delta = z / denom * np.sqrt(4.0 * n_safe * p * (1.0 - p) + z**2)
        low, high = center - delta, center + delta
    else:
        # Exact: Beta(k, n-k+1) and Beta(k+1, n-k) quantiles; Jeffreys: Beta(k+1/2, n-k+1/2).
        # Parameters are kept positive where k = 0 or k = n, whose ends are replaced below.
        s = 0.0 if method == "exact" else 0.5
        low = stats.beta.ppf(tail, np.maximum(k_f, 1.0) + s, n_safe - k_f + 1.0 - s)
        high = stats.beta.ppf(1.0 - tail, k_f + 1.0 - s, np.maximum(n_safe - k_f, 1.0) + s)
    low = np.where(empty, np.nan, np.where(k_f == 0, 0.0, low))
    high = np.where(empty, np.nan, np.where(k_f == n_f, 1.0, high))
    return _finish(low), _finish(high)


def upper_bound(k: ArrayLike, n: ArrayLike, level: float = 0.95) -> np.ndarray | float:
    """One-sided Clopper-Pearson upper confidence bound on a binomial proportion.

    With k = 0 this is the exact bound 1 - (1 - level)^(1/n) (the "rule of three" for level 0.95
    is its approximation 3 / n); with k > 0 it is the beta quantile Beta(level; k + 1, n - k),
    the bound `binomtest(k, n, alternative="less").proportion_ci(level, "exact")` gives.

    Args:
        k: Successes, integer scalar or array.
        n: Trials, integer scalar or array broadcastable with `k`.
        level: Confidence level in (0, 1).

    Returns:
        The bound, a float for scalar input, an array otherwise; NaN where n = 0, 1 where k = n.
    """
    _check_level(level)
    k_f, n_f = _counts(k, n)
    n_safe = np.where(n_f == 0, 1.0, n_f)
    zero = 1.0 - (1.0 - level) ** (1.0 / n_safe)
    positive = stats.beta.ppf(level, k_f + 1.0, np.maximum(n_safe - k_f, 1.0))
    bound = np.where(k_f == 0, zero, np.where(k_f == n_f, 1.0, positive))
    return _finish(np.where(n_f == 0, np.nan, bound))


class Summary(NamedTuple):
    """Mean of independent run estimates with intervals at `level` (NaN if a run is unfinished).

    ``ci`` is the t interval mean +- t_{M-1} * stderr on p, clipped to [0, upper] (``upper`` of
    :func:`summarize`: 1 for a probability, where a few spread runs can put mean + t stderr
    above 1). ``log_ci`` is the delta-method t interval on ln p, ln(mean) +- t_{M-1} * stderr /
    mean, finite whenever mean > 0, its upper end clipped at ln(upper). Both need M >= 2 runs
    (NaN otherwise). When every run estimates 0 (all extinct,
    say) the runs show no spread and give no upper bound: ci = (0, NaN), log_ci = (-inf, NaN).
    Both are first order and undercover a little when run estimates are skewed (relative variance
    0.3 per run, 16 runs: 0.93 on p, 0.94 on ln p); prefer log_ci, with many runs.
    """

    mean: float
    stderr: float
    ci: tuple[float, float]
    log_ci: tuple[float, float]
    level: float


def summarize(estimates: np.ndarray, level: float = 0.95, upper: float = 1.0) -> Summary:
    """Mean, standard error and t intervals on p and ln p of independent run estimates (M,).

    Args:
        estimates: The runs' estimates, (M,).
        level: Confidence level in (0, 1).
        upper: The largest value the mean can take, where the intervals' upper ends stop: 1 for
            estimates of a probability (the default), ``math.inf`` for a mean without a bound.
    """
    x = np.asarray(estimates, np.float64).ravel()
    mean, nan = float(x.mean()) if x.size else math.nan, math.nan
    if x.size < 2 or math.isnan(mean):
        return Summary(mean, nan, (nan, nan), (nan, nan), level)
    stderr = float(x.std(ddof=1) / math.sqrt(x.size))
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1)) * stderr
    if mean == 0.0:  # no spread to measure: a zero, but no upper bound from these runs
        return Summary(0.0, stderr, (0.0, nan), (-math.inf, nan), level)
    log_mean, rel = math.log(mean), half / mean
    ci = (max(mean - half, 0.0), min(mean + half, upper))
    log_hi = min(log_mean + rel, math.log(upper)) if upper > 0 else log_mean + rel
    return Summary(mean, stderr, ci, (log_mean - rel, log_hi), level)


def markov_lower(mean: ArrayLike, level: float = 0.95) -> np.ndarray | float:
    """Lower end, at ``level``, of an interval on p from the mean of independent nonnegative
    estimates of p that are unbiased, whatever their distribution: (1 - level) / 2 * mean.

    Markov's inequality on the sum of the M estimates (mean p M) gives
    P(mean >= p / a) <= a, so a * mean reaches p with probability at most a = (1 - level) / 2,
    the lower tail of a two-sided interval at ``level``. Splitting's run estimates are such
    estimates, and heavy-tailed where the score is poor: a few runs carry the mean and the t
    interval (:func:`summarize`) reaches 0 or undercovers, while this end still holds (at the
    price of being 1 / a = 40 times below the mean at level 0.95). It is only a lower end: no
    upper end holds whatever the distribution.
    """
    _check_level(level)
    return _finish((1.0 - level) / 2.0 * np.asarray(mean, np.float64))
