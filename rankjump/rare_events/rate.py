"""Jump probabilities from the rate of kicks out of the basin (``rare.method = "rate"``).

A jump from a rank-r minimum starts with a kick: within a few steps one layer's vanishing
singular value falls by an order of magnitude; the mode then decays with weight decay into
B_{r-1} or grows back (docs/theory.md, section 6). Scores read at coarse checkpoints cannot see a
kick coming, so this method splits the event in three:

1. Basin: ``rare.pool`` replicas run ``rare.burn_in`` steps from the start; those not kicked are
   the basin's stationary states.
2. Kicks: :func:`rankjump.rare_events.splitting.ams` over windows of ``rare.window`` steps
   started from basin states, scored every ``rare.window_every`` steps by the most advanced layer
   ("smallest_layer", :mod:`rankjump.rare_events.network`) and, before a kick, by how far one or
   two draws of the entries that overshoot most would take it (:meth:`KickWindow.score`); the
   event is a layer's value at or below ``rare.kick`` times its start value.
3. Commitment (:mod:`rankjump.rare_events.commit`): the kicked states (the first checkpoint past the
   kick of every reactive path) are continued over ``commit_steps`` steps, looked at every 100
   steps (or the largest divisor of ``run.record_every`` below); entering B_{target} before
   falling back into the basin (every layer's value back above ``rare.basin`` times its start
   value) commits, and the steps it took are the delays D. ``rare.commit = "split"`` (the default)
   splits again, one AMS run per window run scored by ``rare.commit_score``, so that small
   committors are measured; ``"continue"`` continues each kicked state ``rare.commit_reps`` times.

Run m's estimate of P(kick within a window, and the kick commits) is r_m = sum_j w_j c_j over its
reactive paths j (weights w_j), or (sum_j w_j) c_m when the commitment is split: unbiased in both
cases, as the reactive weights are (:class:`rankjump.rare_events.splitting.Reactive`) and c_m is
unbiased for the weighted mean committor of run m's kicked states given them. The rate of committed
kicks is k = mean(r_m) / exposure (the window less the mean lag of a kick), with a t interval over
the runs, and with kicks at a constant rate from the start,

    P(enter B_{target} within T) = 1 - exp(-k * E[(T - D)^+]),

D drawn from the delays weighted like the paths. The approximation (a constant rate, windows long
against the few steps a kick takes and short against 1 / k) is checked against plain Monte Carlo
where both run (tests/rare_events/test_rare_rate.py, benchmarks/rare.py).
"""

from __future__ import annotations

import math

import jax
import numpy as np

from rankjump.config import Config, ConfigError
from rankjump.rare_events.commit import commit_continue, commit_split
from rankjump.rare_events.network import NetworkProcess
from rankjump.rare_events.rate_result import RateResult, no_basin, probability
from rankjump.rare_events.settings import commit_stride, run_splitting
from rankjump.runtime.precision import with_float64
from rankjump.stats.intervals import summarize

# The window score's look-ahead part: a kick is a few draws, within a few dozen steps, of the
# entries that overshoot most (docs/theory.md, section 6). A state from which LOOK_DRAWS such
# draws (among the LOOK_TOP of largest overshoot) would kick counts LOOK_SHARE of the way.
LOOK_DRAWS, LOOK_TOP, LOOK_SHARE = 2, 3, 0.9

__all__ = [
    "KickWindow",
    "basin_pool",
    "check_kick",
    "commit_steps_of",
    "progress_at",
    "rate_cell",
]


def progress_at(network: NetworkProcess, fraction: float) -> float:
    """The progress score of the layer with the shortest way to the threshold when its vanishing
    value is ``fraction`` of its start value (another layer at that fraction scores less)."""
    return float(math.log(1.0 / fraction) / np.log(network.s0 / network.thr).min())


def check_kick(network: NetworkProcess, kick: float) -> None:
    """Refuse a kick that no state can make: below thr / s0 of the layer nearest its threshold
    (s0 its vanishing value at the start), a kick's level lies past the target set's (score 1):
    a layer would have to fall below the threshold first, and the score does not tell that from
    the other layers until all of them are there (in the target set)."""
    level = progress_at(network, kick)
    if level > 1.0:
        ratio = float(np.max(network.thr / network.s0))
        raise ConfigError(
            f"rare.kick = {kick:g}: below the rank threshold's ratio {ratio:.3g} (threshold / "
            f"start value of the layer nearest it, lam {network.lam:g}): no state is kicked "
            "before it enters the target set, so no kick can be found; choose a larger rare.kick"
        )


def commit_steps_of(cfg: Config, network: NetworkProcess, lam: float, eta: float) -> int:
    """The commitment horizon: ``rare.commit_steps``, or by default twice the pure weight-decay
    time log(s0 / thr) / (2 eta lam) of the slowest layer, in whole strides."""
    every = commit_stride(cfg)
    decay = float(np.log(network.s0 / network.thr).max() / (2 * eta * lam))
    return cfg.rare.commit_steps or every * math.ceil(2 * decay / every)


class KickWindow:
    """Windows of the network from basin states (a
    :class:`rankjump.rare_events.splitting.Process`)."""

    def __init__(self, network: NetworkProcess, pool, kick: float):
        self.network, self.pool = network, pool
        self.target = progress_at(network, kick)

    def start(self, key, n: int):
        """n basin states drawn uniformly (with replacement) from the pool."""
        size = len(self.pool.scale)
        index = np.asarray(jax.random.randint(key, (n,), 0, size))
        return jax.tree.map(lambda x: np.asarray(x)[index], self.pool)

    def advance(self, keys, state, step0: int, n_steps: int):
        return self.network.advance(keys, state, step0, n_steps)

    def score(self, state) -> np.ndarray:
        """The most advanced layer's progress u, capped at the kick level K; below it, the progress
        u_d after the best d = 1..LOOK_DRAWS draws
        (:meth:`rankjump.rare_events.network.NetworkProcess.lookahead`) counts LOOK_SHARE of the
        way: max(u, LOOK_SHARE * K * mean_d clip(u_d / K, 0, 1)) (NaN: diverged)."""
        u = np.minimum(self.network.score(state), self.target)
        ahead = self.network.lookahead(state, draws=LOOK_DRAWS, top=LOOK_TOP) / self.target
        ready = LOOK_SHARE * self.target * np.clip(ahead, 0.0, 1.0).mean(axis=1)
        return np.where(np.isnan(u), np.nan, np.maximum(u, ready))


def basin_pool(network: NetworkProcess, key, n: int, burn_in: int, below: float):
    """States of n replicas after ``burn_in`` steps from the start, keeping those whose score
    (the most advanced layer's progress) stays below ``below`` and that did not diverge; and how
    many diverged."""
    state = network.start(key, n)
    if burn_in:
        state = network.advance(jax.random.split(key, n), state, 0, burn_in)
    score = network.score(state)
    keep = ~np.isnan(score) & (score < below)  # -inf: back in the basin
    return jax.tree.map(lambda x: np.asarray(x)[keep], state), int(np.isnan(score).sum())


@with_float64
def rate_cell(cfg: Config, lam: float, eta: float, key, on_iteration=None) -> RateResult:
    """The rate method on cell (lam, eta) of ``cfg`` (module docstring).

    ``on_iteration(iteration, finished, level, stage)`` is called after every splitting
    iteration: iterations count on through both stages, ``finished`` counts the stage's runs
    done out of ``rare.runs`` and ``stage`` is "kicks" or "commitment"."""
    r, run = cfg.rare, cfg.run
    window_net = NetworkProcess(
        cfg.replace(run={"record_every": r.window_every, "steps": r.window}),
        lam,
        eta,
        score="smallest_layer",
    )
    # The basin walk and the continuations look every `every` steps (at most 100, so a delay is
    # known to within 100 steps); score >= 1 exactly in B_target whatever the score.
    check_kick(window_net, r.kick)
    every = commit_stride(cfg)
    commit_net = NetworkProcess(
        cfg.replace(run={"record_every": every}), lam, eta, score=r.commit_score, basin=r.basin
    )
    commit_steps = commit_steps_of(cfg, window_net, lam, eta)
    key_pool, key_kicks, key_commit = jax.random.split(key, 3)
    burn_in = every * math.ceil(r.burn_in / every)
    kick_level, basin = progress_at(window_net, r.kick), progress_at(window_net, r.basin)
    pool, pool_diverged = basin_pool(
        commit_net, key_pool, r.pool, burn_in, min(basin, 0.5 * kick_level)
    )
    basin_cost = np.array([r.pool * burn_in, 0, 0])
    if len(pool.scale) == 0:  # no basin to kick out of: p is undefined (the result says why)
        return no_basin(window_net, r.runs, r.window, basin_cost, pool_diverged)
    process = KickWindow(window_net, pool, r.kick)
    tick = None if on_iteration is None else lambda q, f, z: on_iteration(q, f, z, "kicks")
    kicks = run_splitting(process, key_kicks, r, r.window, r.window_every, tick)
    react = kicks.reactive
    first = np.argmax(react.scores >= process.target, axis=1)  # the checkpoint of the kick
    # A kick takes `lag` steps from the last checkpoint more than about two draws away from it
    # (look-ahead below half its share): a window exposes window - lag steps to kicks that
    # complete inside it.
    idx = np.arange(react.scores.shape[1])
    far = react.scores <= LOOK_SHARE / 2 * process.target
    left = far & (idx[None, :] < first[:, None])
    lag = first - np.where(left.any(axis=1), idx.max() - np.argmax(left[:, ::-1], axis=1), 0)
    lag = lag * r.window_every
    w = react.weight
    exposure = r.window - (float(np.average(lag, weights=w)) if w.sum() > 0 else 0.0)
    states = jax.tree.map(lambda x: x[np.arange(len(first)), first], react.states)
    states = states._replace(step=np.zeros_like(states.step))
    if r.commit == "split":
        done = int(kicks.iterations.max(initial=0))
        tick = (
            None
            if on_iteration is None
            else lambda q, f, z: on_iteration(done + q, f, z, "commitment")
        )
        commitment = commit_split(commit_net, react, states, key_commit, commit_steps, r, tick)
    else:
        commitment = commit_continue(
            commit_net, react, states, key_commit, commit_steps, r.commit_reps, r.runs
        )
    committed, delays, weights = commitment.committed, commitment.delays, commitment.weights
    committed[~kicks.finished] = np.nan
    rate = summarize(committed / exposure, kicks.summary.level, upper=math.inf)  # a rate

    def prob(k: float) -> float:
        return probability(k, delays, weights, run.steps)

    weighted = float(np.nansum(committed) / max(np.sum(react.weight), 1e-300))
    cost = basin_cost + np.array([0, int(kicks.cost.sum()), int(commitment.cost.sum())])
    return RateResult(
        kicks,
        committed,
        rate,
        delays,
        weights,
        prob(rate.mean),
        (prob(rate.ci[0]), prob(rate.ci[1])),
        weighted,
        exposure,
        cost,
        commitment.cost,
        commitment.floored,
        window_net,
        basin_kept=len(pool.scale),
        basin_diverged=pool_diverged,
        commit_diverged=commitment.diverged,
    )
