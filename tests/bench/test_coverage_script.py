"""benchmarks/rare_coverage.py's summary: which repeats cover the reference, on a synthetic
ledger whose counts are known, and its binomial test."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import rare_coverage as coverage  # noqa: E402


def _repeat(seed, p, lo, hi, reliable=True):
    return {
        "seed": seed,
        "p": p,
        "p_lo": lo,
        "p_hi": hi,
        "log_p_lo": math.log(lo) if lo else None,
        "log_p_hi": math.log(hi) if hi else None,
        "reliable": reliable,
        "seconds": 1.0,
    }


LEDGER = {
    "level": 0.95,
    "steps": 100,
    "reference": {"p": 0.01, "ci": [0.009, 0.011], "entered": 100, "n": 10000, "cell": [1, 1]},
    "repeats": [
        _repeat(1, 0.010, 0.008, 0.012),  # covers the reference and both its ends
        _repeat(2, 0.012, 0.0095, 0.015),  # covers it and its upper end only
        _repeat(3, 0.020, 0.015, 0.025),  # misses
        _repeat(4, 0.0, 0.0, None, reliable=False),  # no upper end: covers nothing
    ],
}


def test_coverage_counts_each_interval_against_the_reference_and_its_ends():
    s = coverage.summary(LEDGER)
    c = s["coverage"]
    assert (c["t, all"]["covered"], c["t, all"]["of"]) == (2, 4)
    assert c["t, all"]["at_reference_ends"] == [1, 2]
    assert (c["t, reliable"]["covered"], c["t, reliable"]["of"]) == (2, 3)
    assert c["log, all"]["covered"] == 2  # the same ends, as logarithms
    want = stats.binomtest(2, 4, 0.95, alternative="less").pvalue
    assert c["t, all"]["p_value_below_nominal"] == pytest.approx(want)
    assert s["estimates"]["ratio_to_reference"] == pytest.approx((0.01 + 0.012 + 0.02) / 4 / 0.01)
    assert "2/4" in coverage.show(LEDGER)
