"""The numbers behind the rare-event figure (:mod:`rankjump.plots.rare`): what a ``rankjump rare``
result estimates, the weighted fit of its ln p, and the plain Monte Carlo proportions of the same
event in ``rankjump simulate`` results.

A rare result (:mod:`rankjump.rare_events.grid`) holds per (lam, eta) cell the mean ``p`` of the
runs' estimates with a t interval on ln p (``log_p_lo``, ``log_p_hi``), and per run its estimate and
whether it went extinct (estimate 0) or stopped unfinished (no estimate). Its attrs name the start
and target rank of every lam; B_target = {rank <= target}.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import xarray as xr

from rankjump.plots.common import run_config
from rankjump.plots.probability import LogPFit
from rankjump.stats.analysis import analyze
from rankjump.stats.diagnostics import result_diagnostics
from rankjump.stats.reports import Proportion, Report

__all__ = [
    "MonteCarloPoints",
    "RareEvent",
    "check_rare",
    "fit_rare_probability",
    "monte_carlo_points",
    "rare_event",
    "reliable_cells",
    "runs_made",
]

# What the figure reads from a rare result: variables, then attrs.
_REQUIRED = (
    ("p", "p_hi", "log_p_lo", "log_p_hi", "run_estimate", "run_finished"),
    ("target_rank", "start_rank"),
)


def check_rare(ds: xr.Dataset) -> None:
    """Raises a ValueError naming what a `rankjump rare` result Dataset lacks (nothing if whole)."""
    if ds.attrs.get("result_kind") != "rare":
        raise ValueError("not a `rankjump rare` result (attrs result_kind is not 'rare')")
    missing = [v for v in _REQUIRED[0] if v not in ds]
    missing += [a for a in _REQUIRED[1] if a not in ds.attrs]
    if missing:
        raise ValueError(f"a `rankjump rare` result without {', '.join(missing)}")


class RareEvent(NamedTuple):
    """What a rare result estimates: P(enter rank <= target within horizon steps from start).

    Attributes:
        targets: lam -> target rank.
        starts: lam -> start rank.
        horizon: run.steps of the configuration.
        level: Confidence level of the intervals.
    """

    targets: dict[float, int]
    starts: dict[float, int]
    horizon: int
    level: float

    def target(self, lam: float) -> int | None:
        """The target rank at lam (relative tolerance 1e-9); for another lam the target all lam
        share, None if they differ."""
        for at, r in self.targets.items():
            if math.isclose(at, lam, rel_tol=1e-9):
                return r
        return next(iter(self.targets.values())) if len(set(self.targets.values())) == 1 else None

    def start(self) -> int | None:
        """The start rank all lam share, None if they differ."""
        return next(iter(self.starts.values())) if len(set(self.starts.values())) == 1 else None


def rare_event(ds: xr.Dataset) -> RareEvent:
    """The event of a rare result, from its attrs and configuration (checked with check_rare)."""
    check_rare(ds)
    lams = ds["lam"].values.astype(float).tolist()

    def per_lam(name: str) -> dict[float, int]:
        values = np.atleast_1d(ds.attrs[name]).astype(int).tolist()
        values = values * len(lams) if len(values) == 1 else values
        if len(values) != len(lams):
            raise ValueError(f"attrs {name} has {len(values)} values for {len(lams)} lam")
        return dict(zip(lams, values, strict=True))

    steps = run_config(ds).get("run", {}).get("steps", int(ds["step"].values[-1]))
    level = float(ds.attrs.get("level", 0.95))
    return RareEvent(per_lam("target_rank"), per_lam("start_rank"), int(steps), level)


def runs_made(ds: xr.Dataset) -> xr.DataArray:
    """Which runs of each cell were made (over ``run``): cells of ``rare.runs = "auto"`` hold
    different counts, padded to the largest; a result of a fixed count made all of them."""
    if "run_made" in ds:
        return ds["run_made"].astype(bool)
    return xr.ones_like(ds["run_finished"], dtype=bool)


def reliable_cells(ds: xr.Dataset) -> np.ndarray:
    """Whether each cell of (a selection of) a rare result passes the diagnostics of its runs
    (:func:`rankjump.stats.diagnostics.result_diagnostics`: read from the file, or computed from
    its runs' estimates for a file written before they were)."""
    return result_diagnostics(ds)["reliable"].values.astype(bool)


def fit_rare_probability(ds: xr.Dataset) -> dict[float, LogPFit]:
    """Weighted least squares of ln p on 1 / (eta lam), one line per lam.

    Reliable cells (:func:`reliable_cells`) with p > 0, lam > 0 and a finite ln p interval of
    positive width are used, each weighted by the inverse half-width of its interval on ln p.

    Returns:
        lam -> LogPFit, for every lam with at least 2 distinct 1 / (eta lam) among its cells.
    """
    check_rare(ds)
    fits = {}
    for lam in ds["lam"].values:
        if lam <= 0:
            continue
        cell = ds.sel(lam=lam)
        x = 1.0 / (cell["eta"].values * lam)
        p, lo, hi = (cell[v].values.astype(float) for v in ("p", "log_p_lo", "log_p_hi"))
        with np.errstate(invalid="ignore"):  # -inf - -inf where every run is extinct
            half = (hi - lo) / 2
        use = np.isfinite(x) & (p > 0) & np.isfinite(half) & (half > 0) & reliable_cells(cell)
        if len(np.unique(x[use])) >= 2:
            slope, intercept = np.polyfit(x[use], np.log(p[use]), 1, w=1 / half[use])
            fits[float(lam)] = LogPFit(float(slope), float(intercept), int(use.sum()))
    return fits


class MonteCarloPoints(NamedTuple):
    """Plain Monte Carlo estimates of a rare result's event in a simulate result.

    Attributes:
        series: lam -> [(1 / (eta lam), proportion that entered B_target by the last
            checkpoint)], cells in the result's order.
        skipped: Cells without such a proportion (lam <= 0, no target rank for their lam, target
            not below the start rank, nobody observed).
        report: The analysis the proportions come from.
    """

    series: dict[float, list[tuple[float, Proportion]]]
    skipped: int
    report: Report


def monte_carlo_points(mc: xr.Dataset, event: RareEvent) -> MonteCarloPoints:
    """P(B_target reached by the last checkpoint) per cell of a simulate result, with binomial
    intervals at the rare result's level, conditioned on its start rank when all lam share one.

    Raises:
        ValueError: For a Dataset that ``rankjump.stats.analysis.analyze`` refuses.
    """
    report = analyze(mc, level=event.level, start_rank=event.start())
    series: dict[float, list[tuple[float, Proportion]]] = {}
    skipped = 0
    for c in report.cells:
        r = event.target(c.lam)
        s = None if r is None or c.lam <= 0 or c.eta <= 0 else c.rank_sets.get(r)
        if s is None or not s.reached.n:
            skipped += 1
            continue
        series.setdefault(c.lam, []).append((1 / (c.eta * c.lam), s.reached))
    return MonteCarloPoints(series, skipped, report)
