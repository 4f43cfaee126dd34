"""Jump statistics of a result Dataset: transitions, rank sets reached, first passage, upward check.

Every (lam, eta) cell is analysed on its own, from the recorded `rank` (the file's rank rule,
default "all_layers") or under another rank rule recomputed from `layer_rank` and `end_rank`
(`on = "all_layers" | "any_layer" | "end_to_end"`; "layer_rank" is "all_layers"). The rules,
shared by all statistics:

- Divergence. Trajectories flagged `diverged` are excluded from every statistic and counted.
- Censoring. A checkpoint is observed when its rank is a number >= 0 (not the -1 the simulator
  writes after divergence, not the NaN a merge of uneven runs leaves) and, if a mask is given, the
  mask is True there. A trajectory's record is its run of observed checkpoints from checkpoint 0 up
  to the first unobserved one; anything after such a gap is ignored. A non-diverged trajectory whose
  record stops early (uneven horizon of a merged or resumed run) is censored at its last observed
  checkpoint; one not observed at checkpoint 0 is counted as `unobserved` and otherwise ignored.
- Binomial quantities at a checkpoint (the final-rank distribution, B_r reached, the reached curve)
  use the trajectories observed through that checkpoint. First passage into B_r = {rank <= r} is
  the step of the first checkpoint in B_r (step 0 if the start is in it), resolved to the record
  stride; its survival curve is Kaplan-Meier, a trajectory at risk at every checkpoint it is
  observed at and has not entered before, and the median is the first step where survival <= 1/2.
- Transitions are pairs of consecutive observed checkpoints; upward ones raise the rank. Pairs
  "after entry" start at or after the first checkpoint where the trajectory's rank is below its
  own starting rank or, when `after` is given, at a checkpoint whose step is >= `after`.
- Ranks r for the rank sets run below the cell's start rank: the most common rank at checkpoint 0
  (the smallest on a tie), or the one asked for. The rank-set statistics (B_r reached, the reached
  curve, first passage) condition on it: they use only the trajectories that start at that rank
  (starts vary with per-trajectory GD minima). Transitions, final ranks and the upward check use
  every analysed trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from rankjump.config import loads_config
from rankjump.intervals import binomial_ci, upper_bound
from rankjump.network import layer_shapes
from rankjump.ranks import network_rank

__all__ = [
    "ON_CHOICES",
    "CellReport",
    "Proportion",
    "RankSet",
    "Report",
    "UpwardCheck",
    "UpwardEvent",
    "analyze",
]

ON_CHOICES = ("rank", "all_layers", "any_layer", "end_to_end", "layer_rank")
_DIMS = ("lam", "eta", "traj", "checkpoint")


def _num(x: float) -> float | None:
    """JSON-safe float: NaN becomes None."""
    return None if np.isnan(x) else float(x)


def _ratio(count: np.ndarray, total: np.ndarray) -> np.ndarray:
    """count / total as floats, NaN where total is 0."""
    return np.divide(count, total, out=np.full(count.shape, np.nan), where=total > 0)


@dataclass(frozen=True)
class Proportion:
    """A binomial proportion with its two-sided confidence interval (NaN when n = 0)."""

    count: int
    n: int
    p: float
    ci: tuple[float, float]

    @classmethod
    def of(cls, count: int, n: int, method: str, level: float) -> Proportion:
        """Builds the proportion count / n with a `method` interval at `level`."""
        low, high = binomial_ci(count, n, method, level)
        return cls(count, n, count / n if n else float("nan"), (low, high))

    def to_dict(self) -> dict:
        """{"count", "n", "p", "ci": [low, high]}, NaN as None."""
        return {
            "count": self.count,
            "n": self.n,
            "p": _num(self.p),
            "ci": [_num(c) for c in self.ci],
        }


@dataclass(frozen=True)
class UpwardCheck:
    """Upward transitions, all and after entry, with one-sided Clopper-Pearson upper bounds.

    A bound is on the per-transition probability of an upward move; with a zero count it is the
    exact 1 - (1 - level)^(1/transitions), see `rankjump.intervals.upper_bound`.
    """

    count: int
    transitions: int
    upper_bound: float
    after_entry_count: int
    after_entry_transitions: int
    after_entry_upper_bound: float

    @classmethod
    def of(
        cls, count: int, transitions: int, late_count: int, late_transitions: int, level: float
    ) -> UpwardCheck:
        """Builds the check from the counts (all, then after entry) and the bounds' level."""
        return cls(
            count,
            transitions,
            upper_bound(count, transitions, level),
            late_count,
            late_transitions,
            upper_bound(late_count, late_transitions, level),
        )

    def to_dict(self) -> dict:
        """The six fields by name, NaN bounds (no transitions) as None."""
        return {
            "count": self.count,
            "transitions": self.transitions,
            "upper_bound": _num(self.upper_bound),
            "after_entry_count": self.after_entry_count,
            "after_entry_transitions": self.after_entry_transitions,
            "after_entry_upper_bound": _num(self.after_entry_upper_bound),
        }


@dataclass(frozen=True)
class UpwardEvent:
    """One upward move: rank from_rank at step from_step, to_rank at the next checkpoint, step."""

    lam: float
    eta: float
    traj: int
    step: int
    from_step: int
    from_rank: int
    to_rank: int
    after_entry: bool

    def to_dict(self) -> dict:
        """The fields by name."""
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class RankSet:
    """Statistics of B_r = {rank <= r} in one cell; arrays run over checkpoints.

    Attributes:
        r: The rank bound.
        reached: Trajectories in B_r at some checkpoint up to the last, among those observed
            through the last checkpoint.
        curve_count: Per checkpoint, trajectories observed through it that have entered B_r.
        curve_n: Per checkpoint, trajectories observed through it.
        curve_ci: (2, checkpoint) two-sided interval of curve_count / curve_n.
        survival: Kaplan-Meier probability of not having entered B_r by each checkpoint.
        median_first_passage: First step where survival <= 1/2, None if it never gets there.
    """

    r: int
    reached: Proportion
    curve_count: np.ndarray
    curve_n: np.ndarray
    curve_ci: np.ndarray
    survival: np.ndarray
    median_first_passage: float | None

    @property
    def curve(self) -> np.ndarray:
        """Probability of having reached B_r by each checkpoint (NaN where nobody is observed)."""
        return _ratio(self.curve_count, self.curve_n)


@dataclass(frozen=True, eq=False)
class CellReport:
    """Statistics of one (lam, eta) cell.

    Attributes:
        lam, eta: The cell's coordinates.
        n: Trajectories analysed (not diverged, observed at checkpoint 0).
        diverged: Trajectories excluded as diverged.
        unobserved: Non-diverged trajectories without a record at checkpoint 0 (ignored).
        incomplete: Analysed trajectories censored before the last checkpoint.
        start_rank: Most common rank at checkpoint 0 (None when n = 0).
        start_ranks: Count of each rank at checkpoint 0 (the spread).
        conditioned: Trajectories starting at start_rank: the rank-set statistics use only them.
        ranks: The ranks seen in the cell, ascending; they label `transitions`.
        transitions: (from, to) counts between consecutive observed checkpoints.
        final_rank: Rank at the last checkpoint among trajectories observed through it, per rank.
        rank_sets: Per r below start_rank, the B_r statistics.
        steps: SGD step of each checkpoint.
        upward: The upward-transition check.
        events: Every upward move, in trajectory then step order.
    """

    lam: float
    eta: float
    n: int
    diverged: int
    unobserved: int
    incomplete: int
    start_rank: int | None
    start_ranks: dict[int, int]
    conditioned: int
    ranks: tuple[int, ...]
    transitions: np.ndarray
    final_rank: dict[int, Proportion]
    rank_sets: dict[int, RankSet]
    steps: np.ndarray
    upward: UpwardCheck
    events: tuple[UpwardEvent, ...]

    def to_dict(self) -> dict:
        """JSON-ready dictionary; rank keys are strings."""
        matrix = {
            str(a): {str(b): int(c) for b, c in zip(self.ranks, row, strict=True) if c}
            for a, row in zip(self.ranks, self.transitions, strict=True)
            if row.any()
        }
        sets = self.rank_sets.items()
        return {
            "lam": self.lam,
            "eta": self.eta,
            "n": self.n,
            "diverged": self.diverged,
            "unobserved": self.unobserved,
            "incomplete": self.incomplete,
            "start_rank": self.start_rank,
            "start_ranks": {str(r): c for r, c in self.start_ranks.items()},
            "conditioned": self.conditioned,
            "transitions": matrix,
            "final_rank": {str(r): p.to_dict() for r, p in self.final_rank.items()},
            "reached": {str(r): s.reached.to_dict() for r, s in sets},
            "median_first_passage": {str(r): s.median_first_passage for r, s in sets},
            "upward": self.upward.to_dict(),
            "upward_events": [e.to_dict() for e in self.events],
            "steps": self.steps.tolist(),
            "reached_curve": {str(r): [_num(p) for p in s.curve] for r, s in sets},
            "survival": {str(r): s.survival.tolist() for r, s in sets},
        }


@dataclass(frozen=True, eq=False)
class Report:
    """The analysis of a whole result Dataset: settings, one CellReport per cell, pooled check."""

    on: str
    ci_method: str
    level: float
    after: int | None
    cells: tuple[CellReport, ...]
    pooled: UpwardCheck
    rule: str | None = None  # the rank rule behind the ranks (None: a file that does not say)

    def to_dict(self) -> dict:
        """The JSON shape of `rankjump stats --json`."""
        return {
            "on": self.on,
            "rule": self.rule,
            "ci_method": self.ci_method,
            "level": self.level,
            "after": self.after,
            "cells": [c.to_dict() for c in self.cells],
            "pooled": {"upward": self.pooled.to_dict()},
        }


def _rank_values(ds: xr.Dataset, on: str) -> np.ndarray:
    """(lam, eta, traj, checkpoint) ranks as float64, NaN or negative where unrecorded."""
    if on not in ON_CHOICES:
        raise ValueError(f"on must be one of {', '.join(ON_CHOICES)}, got {on!r}")
    var = {"rank": "rank", "end_to_end": "end_rank"}.get(on, "layer_rank")
    missing = [v for v in (var, "diverged", "step") if v not in ds.variables]
    if missing:
        raise ValueError(f"not a rankjump result: missing variable {missing[0]!r}")
    if ds["step"].dims != ("checkpoint",) or set(ds["diverged"].dims) != set(_DIMS[:3]):
        raise ValueError("not a rankjump result: 'step' or 'diverged' has the wrong dimensions")
    dims = _DIMS + (("layer",) if var == "layer_rank" else ())
    if set(ds[var].dims) != set(dims) or ds[var].dtype.kind not in "iuf":
        raise ValueError(f"not a rankjump result: {var!r} must be numeric over {', '.join(dims)}")
    values = ds[var].transpose(*dims).values.astype(np.float64)
    if var == "layer_rank":
        # The rule over layers, recorded only where every layer is (NaN >= 0 is False).
        rule = "any_layer" if on == "any_layer" else "all_layers"
        values = np.where(np.all(values >= 0, axis=-1), network_rank(values, None, rule), -1.0)
    return values


def _check_start_rank(ds: xr.Dataset, start_rank: int) -> None:
    """A start rank must be a rank the network can have: 1 .. its largest layer's rank."""
    try:
        cfg = loads_config(ds.attrs["config"])
        top = max(
            min(shape)
            for shape in layer_shapes(
                cfg.task.d_out, cfg.task.d_in, cfg.network.width, cfg.network.depth
            )
        )
    except (KeyError, TypeError, ValueError):  # a file without a readable configuration
        top = None
    if start_rank < 1 or (top is not None and start_rank > top):
        span = f"between 1 and {top}" if top is not None else ">= 1"
        raise ValueError(f"--start-rank {start_rank}: must be {span} (the network's ranks)")


def analyze(
    ds: xr.Dataset,
    on: str = "rank",
    ci: str = "wilson",
    level: float = 0.95,
    after: int | None = None,
    observed: xr.DataArray | np.ndarray | None = None,
    start_rank: int | None = None,
) -> Report:
    """Analyses every (lam, eta) cell of a result Dataset (rules in the module docstring).

    Args:
        ds: Result Dataset with `rank` (or `layer_rank`), `diverged` and the `step` coordinate.
        on: "rank" (as recorded, under the file's rank rule), or a rank rule recomputed from
            the per-layer and end-to-end ranks: "all_layers" (largest per-layer rank; also
            "layer_rank"), "any_layer" (smallest), "end_to_end" (rank of A_theta).
        ci: Interval method for proportions: "wilson", "exact" or "jeffreys".
        level: Confidence level of the intervals and of the one-sided upward bounds.
        after: If given, "after entry" upward counts use the pairs starting at step >= after
            instead of those after each trajectory first drops below its starting rank.
        observed: Optional boolean mask over (lam, eta, traj, checkpoint) (a DataArray is
            broadcast by name), False where a checkpoint was not recorded; for example
            `ds.loss.notnull()`.
        start_rank: Condition the rank-set statistics on this start rank in every cell (default:
            each cell's most common start rank).

    Returns:
        The Report, cells in (lam, eta) order.

    Raises:
        ValueError: For a Dataset without the result schema or an invalid option.
    """
    binomial_ci(0, 1, ci, level)  # validates ci and level before any work
    if start_rank is not None:
        _check_start_rank(ds, start_rank)
    values = _rank_values(ds, on)
    recorded = values >= 0
    if observed is not None:
        if isinstance(observed, xr.DataArray):
            observed = xr.broadcast(observed, ds["diverged"], ds["step"])[0]
            observed = observed.transpose(*_DIMS).values
        if np.asarray(observed).dtype != bool:
            raise ValueError("observed must be a boolean mask")
        recorded &= np.broadcast_to(observed, recorded.shape)
    ranks = np.where(recorded, values, -1).astype(np.int64)
    diverged = ds["diverged"].fillna(False).astype(bool).transpose(*_DIMS[:3]).values
    steps = ds["step"].values.astype(np.int64)
    traj = ds["traj"].values
    cells = tuple(
        _analyze_cell(
            ranks[i, j],
            recorded[i, j],
            diverged[i, j],
            steps,
            traj,
            float(lam),
            float(eta),
            ci,
            level,
            after,
            start_rank,
        )
        for i, lam in enumerate(ds["lam"].values)
        for j, eta in enumerate(ds["eta"].values)
    )
    fields = ("count", "transitions", "after_entry_count", "after_entry_transitions")
    totals = [sum(getattr(c.upward, f) for c in cells) for f in fields]
    rule = ds.attrs.get("rank_rule") if on == "rank" else {"layer_rank": "all_layers"}.get(on, on)
    return Report(on, ci, level, after, cells, UpwardCheck.of(*totals, level), rule)


def _analyze_cell(
    rank: np.ndarray,
    recorded: np.ndarray,
    diverged: np.ndarray,
    steps: np.ndarray,
    traj: np.ndarray,
    lam: float,
    eta: float,
    ci: str,
    level: float,
    after: int | None,
    start_rank: int | None = None,
) -> CellReport:
    """One cell: rank and recorded are (traj, checkpoint), diverged is (traj,)."""
    keep = ~diverged & recorded[:, 0]
    rank, traj = rank[keep], traj[keep]
    obs = np.logical_and.accumulate(recorded[keep], axis=1)  # the record stops at the first gap
    n, n_ckpt = rank.shape

    size = int(rank.max(initial=-1)) + 1  # ranks are small non-negative integers: count them
    ranks = np.flatnonzero(np.bincount(rank[obs], minlength=size))
    pair = obs[:, 1:]  # both ends observed, since obs is a prefix
    flat = rank[:, :-1][pair] * size + rank[:, 1:][pair]
    transitions = np.bincount(flat, minlength=size * size).reshape(size, size)
    start_counts = np.bincount(rank[:, 0], minlength=size)
    if start_rank is None:
        start_rank = int(np.argmax(start_counts)) if n else None
    same = rank[:, 0] == start_rank
    final_counts = np.bincount(rank[obs[:, -1], -1], minlength=size)
    n_final = int(obs[:, -1].sum())
    final_rank = {int(r): Proportion.of(int(final_counts[r]), n_final, ci, level) for r in ranks}
    rank_sets = _rank_sets(rank[same], obs[same], start_rank or 0, steps, ci, level)

    up = pair & (rank[:, 1:] > rank[:, :-1])
    if after is None:
        below = obs & (rank < rank[:, :1])
        entry = np.where(below.any(axis=1), below.argmax(axis=1), n_ckpt)
        late = pair & (np.arange(n_ckpt - 1) >= entry[:, None])
    else:
        late = pair & (steps[:-1] >= after)
    who, when = np.nonzero(up)
    events = tuple(
        UpwardEvent(
            lam,
            eta,
            int(traj[t]),
            int(steps[c + 1]),
            int(steps[c]),
            int(rank[t, c]),
            int(rank[t, c + 1]),
            bool(late[t, c]),
        )
        for t, c in zip(who, when, strict=True)
    )
    upward = UpwardCheck.of(
        int(up.sum()), int(pair.sum()), int((up & late).sum()), int(late.sum()), level
    )
    return CellReport(
        lam=lam,
        eta=eta,
        n=n,
        diverged=int(diverged.sum()),
        unobserved=int((~diverged & ~recorded[:, 0]).sum()),
        incomplete=n - n_final,
        start_rank=start_rank,
        start_ranks={int(r): int(start_counts[r]) for r in np.flatnonzero(start_counts)},
        conditioned=int(same.sum()),
        ranks=tuple(int(r) for r in ranks),
        transitions=transitions[np.ix_(ranks, ranks)],
        final_rank=final_rank,
        rank_sets=rank_sets,
        steps=steps,
        upward=upward,
        events=events,
    )


def _rank_sets(
    rank: np.ndarray, obs: np.ndarray, top: int, steps: np.ndarray, ci: str, level: float
) -> dict[int, RankSet]:
    """B_r statistics for r = 0 .. top - 1, from (traj, checkpoint) ranks and the prefix mask.

    A trajectory has entered B_r by checkpoint c when its running minimum rank there is <= r, so
    one histogram of the running minimum per checkpoint gives every r at once.
    """
    n, n_ckpt = rank.shape
    lowest = np.minimum.accumulate(np.minimum(rank, top), axis=1)
    before = np.concatenate([np.full((n, 1), top), lowest[:, :-1]], axis=1)
    cells = np.arange(n_ckpt) * (top + 1)

    def at_most(values: np.ndarray) -> np.ndarray:
        """(r, checkpoint) number of observed trajectories with value <= r."""
        hist = np.bincount((cells + values)[obs], minlength=n_ckpt * (top + 1))
        return np.cumsum(hist.reshape(n_ckpt, top + 1), axis=1)[:, :top].T

    count, entered_before = at_most(lowest), at_most(before)
    total = np.broadcast_to(obs.sum(axis=0), count.shape)
    low, high = binomial_ci(count, total, ci, level)
    # Kaplan-Meier: S(c) = prod_{c' <= c} (1 - events_c' / at_risk_c').
    at_risk = total - entered_before
    survival = np.cumprod(1.0 - (count - entered_before) / np.maximum(at_risk, 1), axis=1)
    sets = {}
    for r in range(top):
        below_half = np.flatnonzero(survival[r] <= 0.5)
        sets[r] = RankSet(
            r=r,
            reached=Proportion.of(int(count[r, -1]), int(total[r, -1]), ci, level),
            curve_count=count[r],
            curve_n=total[r],
            curve_ci=np.stack([low[r], high[r]]),
            survival=survival[r],
            median_first_passage=float(steps[below_half[0]]) if below_half.size else None,
        )
    return sets
