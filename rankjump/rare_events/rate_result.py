"""What the rate method returns for a cell (:class:`RateResult`), how it is stored as a rare
result (:func:`as_cell`, :func:`rate_variables`), and results of batches of runs joined into one
(:func:`combine`, for ``rare.runs = "auto"``). How a cell is computed is
:mod:`rankjump.rare_events.rate`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from rankjump.rare_events.batches import concat_results
from rankjump.rare_events.types import AMSResult, no_reactive
from rankjump.stats.intervals import Summary, summarize

if TYPE_CHECKING:
    from rankjump.rare_events.network import NetworkProcess

__all__ = [
    "RATE_RUN_VARIABLES",
    "RATE_VARIABLES",
    "RateResult",
    "as_cell",
    "combine",
    "no_basin",
    "probability",
    "rate_variables",
]

# The names :func:`rate_variables` writes, in order (`rankjump stats` reads them by this tuple).
RATE_VARIABLES = (
    "rate",
    "rate_lo",
    "rate_hi",
    "kick_p",
    "committor",
    "commit_floored",
    "delay",
    "basin_kept",
    "basin_diverged",
)
# ... and its per-run ones (over the result's `run` dimension): where a run's estimate comes from.
RATE_RUN_VARIABLES = ("run_kick_p", "run_committor")


class RateResult(NamedTuple):
    """One cell by the rate method (probabilities per run over M runs)."""

    kicks: AMSResult  # the window splitting (estimates: P(kick within a window))
    committed: np.ndarray  # (M,) r_m: P(kick within a window and it commits), per run
    rate: Summary  # of committed kicks per step, over the runs (interval at the level)
    delays: np.ndarray  # (D,) steps from kick to entry into B_target, of committed continuations
    delay_weights: np.ndarray  # (D,) their weights
    p: float  # P(enter B_target within run.steps)
    p_ci: tuple[float, float]  # its interval, from the rate's
    committor: float  # mean committor of kicked states, weighted
    exposure: float  # steps of a window open to kicks that complete in it (window - mean lag)
    cost: np.ndarray  # (3,) trajectory-steps of the basin, the windows and the commitment
    commit_cost: np.ndarray  # (M,) trajectory-steps of the commitment of each run's kicks
    floored: int  # commitment runs stopped at rare.commit_floor (estimate 0)
    network: NetworkProcess  # the windows' process: the start, its rank and eta_edge
    basin_kept: int  # basin replicas kept in the pool (0: no basin, p undefined)
    basin_diverged: int  # basin replicas that diverged during rare.burn_in
    commit_diverged: np.ndarray  # (M,) continuations of each run's kicked states that diverged


def no_basin(
    network: NetworkProcess, runs: int, window: int, cost: np.ndarray, diverged: int
) -> RateResult:
    """The result of a cell whose basin walk kept no replica (every one of them kicked or
    diverged during ``rare.burn_in``): no window can start, so every run's estimate and p are
    undefined (NaN); ``basin_kept`` = 0 and ``basin_diverged`` say why."""
    nan, none = np.full(runs, np.nan), np.zeros(runs, bool)
    kicks = AMSResult(
        estimate=nan,
        finished=none,
        extinct=none,
        floored=none,
        iterations=np.zeros(runs, np.int64),
        killed=np.zeros((runs, 0), np.int64),
        levels=np.zeros((runs, 0)),
        cost=np.zeros(runs, np.int64),
        diverged=np.zeros(runs, np.int64),
        summary=summarize(nan),
        reactive=no_reactive(),
    )
    return RateResult(
        kicks=kicks,
        committed=nan,
        rate=summarize(nan, upper=math.inf),
        delays=np.zeros(0),
        delay_weights=np.zeros(0),
        p=math.nan,
        p_ci=(math.nan, math.nan),
        committor=math.nan,
        exposure=float(window),
        cost=np.asarray(cost),
        commit_cost=np.zeros(runs, np.int64),
        floored=0,
        network=network,
        basin_kept=0,
        basin_diverged=diverged,
        commit_diverged=np.zeros(runs, np.int64),
    )


def probability(k: float, delays: np.ndarray, weights: np.ndarray, steps: int) -> float:
    """P(enter B_target within ``steps``) = 1 - exp(-k E[(T - D)^+]) for committed kicks at rate
    ``k`` per step from the start and delays D from kick to entry (``delays``, weighted)."""
    if not np.isfinite(k) or not len(delays):
        return 0.0 if k == 0 else math.nan
    open_steps = np.average(np.maximum(steps - delays, 0.0), weights=weights)
    return float(-np.expm1(-k * open_steps))  # E[(T - D)^+] steps open to a kick


def combine(parts: Sequence[RateResult], steps: int) -> RateResult:
    """Rate results of consecutive batches of runs (each with its own basin pool) as one: their
    runs side by side, the rate over every run's committed kicks per step of its own batch's
    exposure, and P(``steps``) from it with every batch's delays."""
    if len(parts) == 1:
        return parts[0]
    level = parts[0].rate.level
    committed = np.concatenate([p.committed for p in parts])
    per_step = np.concatenate([p.committed / p.exposure for p in parts])
    runs = np.array([len(p.committed) for p in parts])
    rate = summarize(per_step, level, upper=math.inf)  # a rate per step, not a probability
    delays = np.concatenate([p.delays for p in parts])
    weights = np.concatenate([p.delay_weights for p in parts])
    kicks = concat_results([p.kicks for p in parts], level)
    kicked = float(np.sum(kicks.reactive.weight))
    return RateResult(
        kicks=kicks,
        committed=committed,
        rate=rate,
        delays=delays,
        delay_weights=weights,
        p=probability(rate.mean, delays, weights, steps),
        p_ci=tuple(probability(k, delays, weights, steps) for k in rate.ci),
        committor=float(np.nansum(committed) / max(kicked, 1e-300)),
        exposure=float(np.average([p.exposure for p in parts], weights=runs)),
        cost=np.sum([p.cost for p in parts], axis=0),
        commit_cost=np.concatenate([p.commit_cost for p in parts]),
        floored=int(sum(p.floored for p in parts)),
        network=parts[0].network,
        basin_kept=int(sum(p.basin_kept for p in parts)),
        basin_diverged=int(sum(p.basin_diverged for p in parts)),
        commit_diverged=np.concatenate([p.commit_diverged for p in parts]),
    )


def as_cell(result: RateResult) -> AMSResult:
    """The result in the shape ``rankjump rare`` stores for every method: the summary is that
    of P(run.steps), a run's estimate is its r_m (per window) and its cost counts its windows,
    its share of the basin walk and the continuations of its kicked states."""
    kicks, p, (lo, hi) = result.kicks, result.p, result.p_ci
    rel = result.rate.stderr / result.rate.mean if result.rate.mean > 0 else math.nan
    low = -math.inf if lo == 0 else math.nan  # NaN: no basin, p undefined (no_basin)
    log = (math.log(lo) if lo > 0 else low, math.log(hi) if hi > 0 else math.nan)
    summary = Summary(p, p * rel, (lo, hi), log, result.rate.level)
    runs = len(kicks.estimate)
    cost = kicks.cost + result.cost[0] // runs + result.commit_cost
    diverged = kicks.diverged + result.commit_diverged
    return kicks._replace(
        estimate=result.committed,
        cost=cost,
        summary=summary,
        reactive=no_reactive(),
        diverged=diverged,
    )


def rate_variables(result: RateResult) -> dict[str, tuple[float | np.ndarray, str]]:
    """The method's own numbers: name -> (value, long name), per cell (names as
    :data:`RATE_VARIABLES`) and per run ((M,) arrays, names as :data:`RATE_RUN_VARIABLES`)."""
    rate, kick = result.rate, np.asarray(result.kicks.estimate, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        run_committor = np.where(kick > 0, result.committed / kick, np.nan)
    return {
        "rate": (rate.mean, "committed kicks per step (mean over runs)"),
        "rate_lo": (rate.ci[0], f"{rate.level:.0%} t interval on the rate, lower end"),
        "rate_hi": (rate.ci[1], f"{rate.level:.0%} t interval on the rate, upper end"),
        "kick_p": (result.kicks.summary.mean, "P(a kick within one window)"),
        "committor": (result.committor, "fraction of kicked states entering B_target"),
        "commit_floored": (
            float(result.floored),
            "commitment runs stopped at rare.commit_floor (estimate 0, bias below the floor)",
        ),
        "delay": (
            float(np.average(result.delays, weights=result.delay_weights))
            if len(result.delays)
            else math.nan,
            "mean steps from a kick to entry into B_target",
        ),
        "basin_kept": (
            float(result.basin_kept),
            "basin replicas kept after rare.burn_in (0: no basin to kick out of, p undefined)",
        ),
        "basin_diverged": (
            float(result.basin_diverged),
            "basin replicas that diverged during rare.burn_in",
        ),
        "run_kick_p": (kick, "the run's P(a kick within one window)"),
        "run_committor": (
            run_committor,
            "the run's committor: its estimate / its kick probability (NaN without a kick)",
        ),
    }
