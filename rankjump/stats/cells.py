"""Jump statistics of one (lam, eta) cell from its rank arrays (rules: `rankjump.stats.analysis`).

`analyze_cell` counts transitions, final ranks, upward moves and, through `rank_set_stats`, the rank
sets B_r = {rank <= r}: reached, the reached curve with intervals, and Kaplan-Meier first passage.
Both work on plain NumPy arrays; `rankjump.stats.analysis.analyze` reads them from a result.
"""

from __future__ import annotations

import numpy as np

from rankjump.stats.intervals import binomial_ci
from rankjump.stats.reports import CellReport, Proportion, RankSet, UpwardCheck, UpwardEvent

__all__ = ["analyze_cell", "rank_set_stats"]


def analyze_cell(
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
    """The statistics of one cell.

    Args:
        rank: (traj, checkpoint) integer ranks; any value where `recorded` is False.
        recorded: (traj, checkpoint) True where a checkpoint is observed.
        diverged: (traj,) True for trajectories excluded as diverged.
        steps: (checkpoint,) SGD step of each checkpoint.
        traj: (traj,) trajectory labels, as the events report them.
        lam, eta: The cell's coordinates.
        ci, level: Interval method and confidence level (`rankjump.stats.intervals.binomial_ci`).
        after: Step from which upward moves count as "after entry" (None: the entry rule).
        start_rank: The start rank the rank-set statistics condition on (None: the most common).

    Returns:
        The cell's CellReport.
    """
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
    rank_sets = rank_set_stats(rank[same], obs[same], start_rank or 0, steps, ci, level)

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
    dropped = obs & same[:, None] & (rank < (start_rank or 0))
    went = np.flatnonzero(dropped.any(axis=1))
    jumped = tuple(
        (int(traj[t]), int(steps[c]))
        for t, c in zip(went, dropped[went].argmax(axis=1), strict=True)
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
        jumped=jumped,
    )


def rank_set_stats(
    rank: np.ndarray, obs: np.ndarray, top: int, steps: np.ndarray, ci: str, level: float
) -> dict[int, RankSet]:
    """B_r statistics for r = 0 .. top - 1 of the trajectories given.

    A trajectory has entered B_r by checkpoint c when its running minimum rank there is <= r, so
    one histogram of the running minimum per checkpoint gives every r at once.

    Args:
        rank: (traj, checkpoint) integer ranks.
        obs: (traj, checkpoint) observed mask, a prefix along checkpoints for every trajectory.
        top: The start rank: sets B_0 .. B_{top - 1} are reported.
        steps: (checkpoint,) SGD step of each checkpoint.
        ci, level: Interval method and confidence level.

    Returns:
        {r: RankSet} for r = 0 .. top - 1.
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
