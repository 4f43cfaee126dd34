"""What the flux method returns for a cell (:class:`FluxResult`), how it is stored as a rare
result (:func:`flux_as_cell`, :func:`flux_variables`), and results of batches of runs joined into
one (:func:`combine`, for ``rare.runs = "auto"``). How a cell is computed is
:mod:`rankjump.rare_events.flux`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from rankjump.rare_events.network import NetworkProcess
from rankjump.rare_events.types import AMSResult, no_reactive
from rankjump.stats.intervals import summarize

__all__ = [
    "FLUX_RUN_VARIABLES",
    "FLUX_VARIABLES",
    "FluxResult",
    "combine",
    "flux_as_cell",
    "flux_variables",
]

# The names :func:`flux_variables` writes per cell (and over checkpoints), and per run.
FLUX_VARIABLES = ("kicks", "committor", "p_plain", "plain_entered", "p_curve", "p_curve_stderr")
FLUX_RUN_VARIABLES = ("run_kicks",)


class FluxResult(NamedTuple):
    """One cell by the flux method, M runs of ``rare.paths`` plain paths."""

    estimate: np.ndarray  # (M,) a run's mean of Y over its paths, at T = run.steps
    curve: np.ndarray  # (M, K) the same at every checkpoint T' = record_every * (1..K)
    kicks: np.ndarray  # (M,) kicks found by the run's paths
    h_sum: np.ndarray  # (M,) their estimated committors, summed (at T)
    plain: np.ndarray  # (M,) the run's plain paths that entered B_target by T
    cost: np.ndarray  # (M,) trajectory-steps: paths and continuations
    diverged: np.ndarray  # (M,) plain paths and continuations that diverged
    paths: int  # plain paths per run
    network: NetworkProcess
    kick_run: np.ndarray  # (J,) every kick: its run,
    kick_step: np.ndarray  # (J,) its step,
    kick_depth: np.ndarray  # (J,) its lowest layer value over the start's,
    kick_h: np.ndarray  # (J,) the fraction of its continuations entering by run.steps


def flux_as_cell(result: FluxResult, level: float = 0.95) -> AMSResult:
    """The result in the shape ``rankjump rare`` stores for every method: a run's estimate is the
    mean of Y over its paths; no splitting iterations and no reactive paths."""
    runs = len(result.estimate)
    none = np.zeros(runs, bool)
    return AMSResult(
        estimate=result.estimate,
        finished=np.ones(runs, bool),
        extinct=none,
        floored=none,
        iterations=np.zeros(runs, np.int64),
        killed=np.zeros((runs, 0), np.int64),
        levels=np.zeros((runs, 0)),
        cost=result.cost,
        diverged=result.diverged,
        summary=summarize(result.estimate, level),
        reactive=no_reactive(),
    )


def combine(parts) -> FluxResult:
    """Flux results of consecutive batches of runs as one."""
    if len(parts) == 1:
        return parts[0]

    def cat(field):
        return np.concatenate([getattr(p, field) for p in parts])

    fields = ("estimate", "curve", "kicks", "h_sum", "plain", "cost", "diverged")
    kicks = ("kick_run", "kick_step", "kick_depth", "kick_h")
    first = parts[0]
    return FluxResult(
        *(cat(f) for f in fields), first.paths, first.network, *(cat(f) for f in kicks)
    )


def flux_variables(result: FluxResult) -> dict:
    """The method's own numbers: name -> (value, long name[, dims]) per cell, per run ((M,)
    arrays) and per checkpoint ((K,) arrays, dims ("checkpoint",))."""
    kicks = int(result.kicks.sum())
    n = len(result.estimate) * result.paths
    curve = np.concatenate([np.zeros((len(result.estimate), 1)), result.curve], axis=1)
    return {
        "kicks": (float(kicks), "kicks out of the basin found by the plain paths (by run.steps)"),
        "committor": (
            float(result.h_sum.sum() / kicks) if kicks else math.nan,
            "mean over kicks of the fraction of their continuations entering B_target by run.steps",
        ),
        "p_plain": (
            float(result.plain.sum() / n),
            "plain Monte Carlo's P(enter by run.steps) from the same paths",
        ),
        "plain_entered": (float(result.plain.sum()), "plain paths that entered by run.steps"),
        "p_curve": (
            curve.mean(axis=0),
            "P(enter by step), the same estimator at every checkpoint",
            ("checkpoint",),
        ),
        "p_curve_stderr": (
            curve.std(axis=0, ddof=1) / math.sqrt(len(curve))
            if len(curve) > 1
            else curve[0] * np.nan,
            "standard error of p_curve over the runs",
            ("checkpoint",),
        ),
        "run_kicks": (result.kicks.astype(float), "kicks found by the run's paths"),
    }
