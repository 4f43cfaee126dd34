"""The commitment stage of the rate method (:mod:`rankjump.rare_events.rate`, ``rare.commit``).

The kicked states of the window runs (the reactive paths of the kick splitting, at the first
checkpoint past the kick) are continued to see whether they enter B_{target} before falling back
into the basin. The network process scores a fall back -inf (``NetworkProcess(basin=...)``): a
kick that falls back and kicks again is a new kick, already counted by the rate.

Both ways return run m's r_m, an unbiased estimate of P(kick within a window, and it commits):

- ``"continue"``: every kicked state j continued ``commit_reps`` times; r_m = sum_j w_j c_j,
  c_j the fraction of its continuations that enter;
- ``"split"``: one AMS run per window run that found kicks, its replicas drawn from that run's
  kicked states in proportion to their weights; r_m = (sum_j w_j) c_m, c_m the run's AMS
  estimate of their weighted mean committor, however small. A run whose weight falls below
  ``rare.commit_floor`` stops at 0 (a bias below the floor).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rankjump.rare_events.network import NetworkProcess
from rankjump.rare_events.settings import run_splitting
from rankjump.rare_events.types import Reactive

__all__ = ["Commitment", "commit_continue", "commit_split"]


class Commitment(NamedTuple):
    """The commitment of M window runs' kicked states."""

    committed: np.ndarray  # (M,) r_m
    delays: np.ndarray  # (D,) steps from a kick to entry into B_target
    weights: np.ndarray  # (D,) their weights (summing over a run to its r_m)
    cost: np.ndarray  # (M,) trajectory-steps
    diverged: np.ndarray  # (M,) continuations (or splitting paths) that diverged
    floored: int = 0  # commitment runs stopped at rare.commit_floor


def commit_continue(
    network: NetworkProcess, react: Reactive, states, key, steps: int, reps: int, runs: int
) -> Commitment:
    """Continues every kicked state ``reps`` times for ``steps`` steps (a multiple of the
    network's checkpoint stride); a continuation commits at its first checkpoint in B_target,
    unless it fell back into the basin (or diverged) before."""
    n = len(states.scale)
    if n == 0:  # no kick to continue
        nothing = np.zeros(runs, np.int64)
        return Commitment(np.zeros(runs), np.zeros(0), np.zeros(0), nothing, nothing)
    states = jax.tree.map(lambda x: np.repeat(np.asarray(x), reps, axis=0), states)
    keys = jax.random.split(key, n * reps)
    entry = np.full(n * reps, -1)
    back, failed = np.zeros(n * reps, bool), np.zeros(n * reps, bool)
    every = network.structure.record_every
    if steps % every:
        raise ValueError(f"steps = {steps}: must be a multiple of the stride {every}")
    for k in range(steps // every):
        states = network.advance(keys, states, 0, every)
        score = np.asarray(network.score(states))
        failed |= ~back & np.isnan(score)  # diverged before it fell back or stopped
        back |= np.isnan(score) | (score == -np.inf)
        entry[(entry < 0) & ~back & (score >= 1.0)] = (k + 1) * every
    ok = entry.reshape(n, reps) >= 0
    committed = np.bincount(react.run, react.weight * ok.mean(axis=1), minlength=runs)
    weights = np.repeat(react.weight[:, None], reps, axis=1)[ok] / reps
    cost = np.bincount(react.run, minlength=runs) * reps * steps
    diverged = np.bincount(np.repeat(react.run, reps), failed, minlength=runs).astype(np.int64)
    return Commitment(committed, entry[ok.ravel()].astype(float), weights, cost, diverged)


def commit_split(
    network: NetworkProcess, react: Reactive, states, key, steps: int, rare, on_iteration=None
) -> Commitment:
    """One AMS run (``rare.replicas``, ``rare.kill``) per window run that found kicks, over
    ``steps`` steps scored by ``network`` every its checkpoint stride; ``on_iteration`` counts
    finished runs out of ``rare.runs`` (window runs without kicks are done from the start)."""
    runs = rare.runs
    kicked = np.bincount(react.run, react.weight, minlength=runs)  # P(kick in a window), per run
    have = np.nonzero(kicked > 0)[0]
    committed, cost = np.zeros(runs), np.zeros(runs, np.int64)
    if not len(have):
        return Commitment(committed, np.zeros(0), np.zeros(0), cost, np.zeros(runs, np.int64))

    def starts(i, key, n):
        own = np.nonzero(react.run == have[i])[0]
        p = react.weight[own] / react.weight[own].sum()
        pick = own[np.asarray(jax.random.choice(key, len(own), (n,), p=jnp.asarray(p)))]
        return jax.tree.map(lambda x: np.asarray(x)[pick], states)

    every = network.structure.record_every
    idle = runs - len(have)  # runs without kicks have nothing to commit: done from the start

    def tick(q, finished, z):
        on_iteration(q, finished + idle, z)

    out = run_splitting(
        network,
        key,
        rare,
        steps,
        every,
        None if on_iteration is None else tick,
        runs=len(have),
        starts=starts,
        floor=rare.commit_floor,
    )
    committed[have] = kicked[have] * out.estimate
    cost[have] = out.cost
    diverged = np.zeros(runs, np.int64)
    diverged[have] = out.diverged
    first = np.argmax(out.reactive.scores >= 1.0, axis=1)  # checkpoint of entry into B_target
    weights = kicked[have][out.reactive.run] * out.reactive.weight
    floored = int(out.floored.sum())
    return Commitment(committed, first.astype(float) * every, weights, cost, diverged, floored)
