"""The statistics' report types: proportions with intervals, the upward check, rank sets, cells.

`rankjump.stats.analysis.analyze` fills them (its docstring states the rules); every type has
`to_dict`, the JSON shape of `rankjump stats --json`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rankjump.stats.intervals import binomial_ci, upper_bound

__all__ = [
    "CellReport",
    "Proportion",
    "RankSet",
    "Report",
    "UpwardCheck",
    "UpwardEvent",
]


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
    exact 1 - (1 - level)^(1/transitions), see `rankjump.stats.intervals.upper_bound`.
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
        jumped: (trajectory, step) of every trajectory starting at start_rank that went below
            it, with the first checkpoint's step where it was, in trajectory order.
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
    jumped: tuple[tuple[int, int], ...] = ()

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
            "jumped": [{"traj": t, "step": s} for t, s in self.jumped],
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
            "probabilities": (
                "among the trajectories that did not diverge (each cell's n); the diverged ones"
                " are counted in its 'diverged' and left out"
            ),
            "on": self.on,
            "rule": self.rule,
            "ci_method": self.ci_method,
            "level": self.level,
            "after": self.after,
            "cells": [c.to_dict() for c in self.cells],
            "pooled": {"upward": self.pooled.to_dict()},
        }
