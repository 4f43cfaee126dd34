"""Runs added in batches until a cell is reliable (``rare.runs = "auto"``).

A cell's runs are independent, so more of them can be added to a cell that fails the diagnostics
(:mod:`rankjump.stats.diagnostics`): batch b holds runs ``b * rare.auto_batch`` onwards, with the
keys those runs would have in one call, and the batches are joined as one result
(:func:`concat_results`). The loop stops at the first of: the cell passes the diagnostics, it
holds ``rare.max_runs`` runs, or its runs have cost ``rare.budget`` trajectory-steps; the result
says which (:data:`STOPS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

from rankjump.rare_events.types import AMSResult, Reactive
from rankjump.stats.diagnostics import diagnose
from rankjump.stats.intervals import summarize

__all__ = ["STOPS", "concat_results", "in_batches"]

# Why a cell's runs stopped, as its result records it (``runs_stop``).
STOPS = ("fixed", "reliable", "max_runs", "budget")


def _pad(blocks: Sequence[np.ndarray], fill) -> np.ndarray:
    """(M_b, Q_b) blocks stacked into (sum M_b, max Q_b), padded with ``fill``."""
    width = max(b.shape[1] for b in blocks)
    return np.concatenate(
        [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=fill) for b in blocks]
    )


def concat_results(parts: Sequence[AMSResult], level: float) -> AMSResult:
    """AMS results of consecutive runs (part k's runs follow part k - 1's) as one result: per-run
    records joined, reactive paths renumbered, the summary made anew over every run."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [len(p.estimate) for p in parts[:-1]])

    def joined(field):
        return np.concatenate([getattr(p, field) for p in parts])

    reactive = [p.reactive for p in parts]
    paths = [r.states for r in reactive if len(r.run)]
    states = jax.tree.map(lambda *xs: np.concatenate(xs), *paths) if paths else reactive[0].states
    react = Reactive(
        run=np.concatenate([r.run + off for r, off in zip(reactive, offsets, strict=True)]),
        replica=np.concatenate([r.replica for r in reactive]),
        weight=np.concatenate([r.weight for r in reactive]),
        scores=np.concatenate([r.scores for r in reactive]),
        states=states,
    )
    estimate = joined("estimate")
    return AMSResult(
        estimate=estimate,
        finished=joined("finished"),
        extinct=joined("extinct"),
        floored=joined("floored"),
        iterations=joined("iterations"),
        killed=_pad([p.killed for p in parts], 0),
        levels=_pad([p.levels for p in parts], np.nan),
        cost=joined("cost"),
        diverged=joined("diverged"),
        summary=summarize(estimate, level),
        reactive=react,
    )


def in_batches(
    run: Callable[[int, int, int], object], runs_of: Callable[[object], AMSResult], rare
) -> tuple[list, str]:
    """Calls ``run(batch, first_run, count)`` for batches of ``rare.auto_batch`` runs until the
    runs so far (``runs_of(parts)``, one AMSResult) pass the diagnostics, reach
    ``rare.max_runs`` or cost ``rare.budget``; returns the parts and why it stopped
    (:data:`STOPS`). With a number of runs (not "auto"), one call of all of them: ("fixed")."""
    if rare.runs != "auto":
        return [run(0, 0, rare.runs)], "fixed"
    parts, done = [], 0
    while True:
        count = min(rare.auto_batch, rare.max_runs - done)
        parts.append(run(len(parts), done, count))
        done += count
        so_far = runs_of(parts)
        if diagnose(so_far.estimate[so_far.finished], rare.replicas).reliable:
            return parts, "reliable"
        if done >= rare.max_runs:
            return parts, "max_runs"
        if rare.budget is not None and so_far.cost.sum() >= rare.budget:
            return parts, "budget"
