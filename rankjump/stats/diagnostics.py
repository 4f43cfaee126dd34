"""Diagnostics of independent nonnegative run estimates of a small probability, and whether an
interval made from them can be trusted.

Splitting gives M independent runs whose estimates r_1..r_M are unbiased for p. When the score
misses the route of the rare event, a few runs carry the mean: the estimates are heavy-tailed,
the t interval undercovers and the mean itself reads low more often than not. These numbers say
how far a cell is from that regime (docs/theory.md, section 6, "Small probabilities you can
trust"):

- ``effective_runs``: (sum r)^2 / sum r^2, the number of equal runs that would give the same
  spread; M when all runs agree, 1 when one run carries everything;
- ``top_share``: the largest run's share of the sum;
- ``tail_index``: Hill's estimate of the upper tail index alpha of the runs' estimates from their
  largest order statistics (below 2 the variance is not finite and no t interval holds);
- ``relvar_n``: the relative variance of one run times its replicas N, beside ``log_inv_p`` =
  ln(1/p), which an ideal score reaches (Cérou & Guyader; Bréhier et al.).

A cell is reliable when ``effective_runs >= MIN_EFFECTIVE_RUNS`` and ``top_share <=
MAX_TOP_SHARE``. On a random walk whose runs have the same tails as the network's, 95% t
intervals of reliable cells cover p as they claim while those of unreliable ones do not
(``tests/stats/test_diagnostics.py`` measures both); an unreliable cell keeps only the lower end
that holds for any law (:func:`rankjump.stats.intervals.markov_lower`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "MAX_TOP_SHARE",
    "MIN_EFFECTIVE_RUNS",
    "RunDiagnostics",
    "diagnose",
    "VARIABLES",
    "hill_tail_index",
    "result_diagnostics",
]

MIN_EFFECTIVE_RUNS = 20.0  # (sum r)^2 / sum r^2 at least this
MAX_TOP_SHARE = 0.2  # and no run carrying more of the sum than this


class RunDiagnostics(NamedTuple):
    """How many runs carry a cell's mean, and whether its interval can be trusted.

    Attributes:
        runs: M, the finished runs.
        positive: runs with an estimate above 0.
        effective_runs: (sum r)^2 / sum r^2 (NaN when every run is 0).
        top_share: max r / sum r (NaN when every run is 0).
        tail_index: Hill's alpha of the upper tail (NaN with fewer than 5 positive runs).
        relvar_n: N * var(r) / mean(r)^2, the relative variance of a run of N replicas times N.
        log_inv_p: ln(1 / mean(r)), what ``relvar_n`` is for an ideal score.
        reliable: effective_runs >= MIN_EFFECTIVE_RUNS and top_share <= MAX_TOP_SHARE.
    """

    runs: int
    positive: int
    effective_runs: float
    top_share: float
    tail_index: float
    relvar_n: float
    log_inv_p: float
    reliable: bool

    def why(self) -> str:
        """Why the cell is unreliable, in words ("" when it is reliable)."""
        if self.reliable:
            return ""
        if self.positive == 0:
            return "every run estimated 0"
        parts = []
        if not self.effective_runs >= MIN_EFFECTIVE_RUNS:
            parts.append(f"{self.effective_runs:.3g} effective runs (< {MIN_EFFECTIVE_RUNS:g})")
        if not self.top_share <= MAX_TOP_SHARE:
            parts.append(f"the top run carries {self.top_share:.0%} (> {MAX_TOP_SHARE:.0%})")
        return ", ".join(parts)


def hill_tail_index(values: ArrayLike, k: int | None = None) -> float:
    """Hill's estimate of the tail index alpha of positive ``values`` from their k + 1 largest:
    k / sum_{i <= k} ln(x_(i) / x_(k+1)), x_(1) the largest. Default k: the integer part of the
    square root of the number of positive values (at least 4). NaN with fewer than k + 1
    positive values, infinite when the k largest are equal to the next one."""
    x = np.sort(np.asarray(values, np.float64).ravel())[::-1]
    x = x[x > 0]
    if k is None:
        k = max(4, math.isqrt(x.size))
    if x.size < k + 1:
        return math.nan
    logs = np.log(x[:k] / x[k])
    total = float(logs.sum())
    return math.inf if total == 0 else k / total


def diagnose(estimates: ArrayLike, replicas: int) -> RunDiagnostics:
    """The diagnostics of a cell's finished run estimates (M,), each from ``replicas`` replicas
    (NaN estimates, unfinished runs, are left out)."""
    r = np.asarray(estimates, np.float64).ravel()
    r = r[~np.isnan(r)]
    m, total = r.size, float(r.sum())
    nan = math.nan
    if m == 0 or total <= 0:
        return RunDiagnostics(m, 0, nan, nan, nan, nan, nan, False)
    mean = total / m
    effective = total**2 / float(np.sum(r**2))
    top = float(r.max()) / total
    relvar = float(r.var(ddof=1)) / mean**2 if m > 1 else nan
    reliable = effective >= MIN_EFFECTIVE_RUNS and top <= MAX_TOP_SHARE
    return RunDiagnostics(
        runs=m,
        positive=int(np.count_nonzero(r > 0)),
        effective_runs=effective,
        top_share=top,
        tail_index=hill_tail_index(r),
        relvar_n=replicas * relvar,
        log_inv_p=-math.log(mean),
        reliable=bool(reliable),
    )


# The diagnostics a rare result holds per cell: variable name -> (field, long name).
VARIABLES = {
    "runs_effective": ("effective_runs", "(sum r)^2 / sum r^2 over the runs' estimates r"),
    "top_share": ("top_share", "the largest run estimate's share of their sum"),
    "tail_index": ("tail_index", "Hill's tail index of the runs' estimates (< 2: no variance)"),
    "relvar_n": ("relvar_n", "relative variance of a run x its replicas (ideal: ln 1/p)"),
    "reliable": (
        "reliable",
        f"runs_effective >= {MIN_EFFECTIVE_RUNS:g} and top_share <= {MAX_TOP_SHARE:g}: without it"
        " no two-sided interval holds; with it the t interval is a first-order one",
    ),
}


def result_diagnostics(ds, replicas: int | None = None) -> dict:
    """The diagnostics of every cell of a rare result (variables over its cells, named as
    :data:`VARIABLES`), from its runs' estimates ``run_estimate`` and ``run_finished`` over
    ``run``: those the file holds, or computed (a file written before they were), with
    ``replicas`` or its configuration's ``rare.replicas``."""
    import tomllib

    import xarray as xr

    if all(name in ds for name in VARIABLES):
        return {name: ds[name] for name in VARIABLES}
    if replicas is None:
        replicas = tomllib.loads(ds.attrs["config"])["rare"]["replicas"]
    estimates = ds["run_estimate"].where(ds["run_finished"].astype(bool))
    cells = estimates.isel(run=0, drop=True)
    found = [diagnose(row, replicas) for row in estimates.values.reshape(-1, ds.sizes["run"])]
    return {
        name: xr.DataArray(
            np.asarray([getattr(d, field) for d in found]).reshape(cells.shape),
            coords=cells.coords,
            dims=cells.dims,
            attrs={"long_name": text},
        )
        for name, (field, text) in VARIABLES.items()
    }
