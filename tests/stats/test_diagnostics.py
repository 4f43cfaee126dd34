"""Diagnostics of run estimates (rankjump.stats.diagnostics): exact values on small cases, Hill's
tail index on Pareto samples, and the coverage of the t interval with and without the flag, on
laws of run estimates like the network's (fixed keys; each statistical claim states its test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from rankjump.stats import summarize
from rankjump.stats.diagnostics import (
    MAX_TOP_SHARE,
    MIN_EFFECTIVE_RUNS,
    diagnose,
    hill_tail_index,
)


def test_diagnose_small_cases_by_hand():
    d = diagnose([0.0, 1e-5, 1e-5, 2e-5], replicas=100)
    assert d.runs == 4 and d.positive == 3
    assert d.effective_runs == pytest.approx(16 / 6)  # (1 + 1 + 2)^2 / (1 + 1 + 4)
    assert d.top_share == pytest.approx(0.5)
    mean, var = 1e-5, np.var([0, 1, 1, 2], ddof=1) * 1e-10
    assert d.relvar_n == pytest.approx(100 * var / mean**2)
    assert d.log_inv_p == pytest.approx(math.log(1e5))
    assert not d.reliable and "effective runs" in d.why() and "top run" in d.why()
    equal = diagnose(np.full(40, 3e-4), replicas=100)
    assert equal.effective_runs == pytest.approx(40) and equal.top_share == pytest.approx(1 / 40)
    assert equal.reliable and equal.why() == "" and equal.relvar_n == 0


def test_zeros_and_unfinished_runs():
    zero = diagnose(np.zeros(10), replicas=50)
    assert zero.positive == 0 and not zero.reliable and zero.why() == "every run estimated 0"
    assert math.isnan(zero.effective_runs) and math.isnan(zero.top_share)
    nan = diagnose([1e-3, np.nan, 1e-3], replicas=50)  # an unfinished run is left out
    assert nan.runs == 2 and nan.effective_runs == pytest.approx(2)


def test_the_flag_follows_its_two_thresholds():
    # 25 equal runs: 25 effective runs, top share 0.04: reliable.
    assert diagnose(np.ones(25), 10).reliable
    # 19 equal runs: too few effective runs, although no run dominates.
    few = diagnose(np.ones(19), 10)
    assert few.effective_runs < MIN_EFFECTIVE_RUNS and few.top_share <= MAX_TOP_SHARE
    assert not few.reliable
    # 2,001 runs, one of them 571 times the others: 20.2 effective runs but a top share of 0.22.
    heavy = diagnose(np.r_[np.ones(2000), 571.0], 10)
    assert heavy.effective_runs >= MIN_EFFECTIVE_RUNS and heavy.top_share > MAX_TOP_SHARE
    assert not heavy.reliable


@pytest.mark.parametrize("alpha", [1.5, 3.0])
def test_hill_recovers_a_pareto_tail_index(alpha):
    x = np.random.default_rng(7).pareto(alpha, 20_000) + 1.0  # P(X > x) = x^-alpha, x >= 1
    # k = 141 order statistics: the estimate's standard error is alpha / sqrt(k), 8.4%; within
    # 25% is more than 2.9 standard errors (a chance below 0.004 for the fixed key).
    assert hill_tail_index(x) == pytest.approx(alpha, rel=0.25)
    assert math.isnan(hill_tail_index([1.0, 2.0, 3.0]))  # too few values


def _lognormal(rng, relvar, shape):
    """Nonnegative, unbiased for 1, with relative variance ``relvar`` per run."""
    s2 = math.log1p(relvar)
    return rng.lognormal(-s2 / 2, math.sqrt(s2), shape)


def _coverage(runs: np.ndarray):
    """For each row of run estimates of p = 1: is it flagged reliable, and does its 95% t
    interval cover 1?"""
    flagged, covered = [], []
    for row in runs:
        s = summarize(row)
        flagged.append(diagnose(row, 100).reliable)
        covered.append(s.ci[0] <= 1.0 <= s.ci[1])
    return np.array(flagged), np.array(covered)


def test_well_behaved_runs_pass_and_their_intervals_cover():
    """Runs with relative variance 0.5 (a score near the route; 40 runs, 2,000 cells): the flag
    passes nearly every cell and the t interval of flagged cells covers p. A one-sided binomial
    test at significance 0.01 rejects a coverage of 0.90 or less (observed about 0.93)."""
    rng = np.random.default_rng(1)
    flagged, covered = _coverage(_lognormal(rng, 0.5, (2000, 40)))
    assert flagged.mean() > 0.95
    hits, n = int(covered[flagged].sum()), int(flagged.sum())
    assert stats.binomtest(hits, n, 0.90, alternative="greater").pvalue < 0.01


def test_runs_carried_by_a_few_are_flagged():
    """Runs of which about one in twenty finds the route (each then worth 20 p: relative
    variance 19, as in the network's deep cells): the flag marks every such cell (2,000 cells of
    40 runs), although their t intervals claim 95% and cover about 87%."""
    rng = np.random.default_rng(2)
    runs = (rng.random((2000, 40)) < 0.05) / 0.05
    flagged, covered = _coverage(runs)
    assert not flagged.any()
    assert stats.binomtest(int(covered.sum()), covered.size, 0.95).pvalue < 0.01


def test_the_flag_is_necessary_not_sufficient():
    """Runs with relative variance 2 (40 runs, 2,000 cells): the flag passes a minority of
    cells, and those are the ones whose sample missed the tail: their t intervals cover less
    than all cells' do. No flag read from the runs alone can vouch for a heavy-tailed law; a
    binomial test at 0.01 rejects coverage 0.90 among the flagged cells (observed about
    0.75)."""
    rng = np.random.default_rng(3)
    flagged, covered = _coverage(_lognormal(rng, 2.0, (2000, 40)))
    assert 0.1 < flagged.mean() < 0.5
    hits, n = int(covered[flagged].sum()), int(flagged.sum())
    assert stats.binomtest(hits, n, 0.90, alternative="less").pvalue < 0.01
    assert covered[flagged].mean() < covered.mean()
