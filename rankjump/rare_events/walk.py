"""The symmetric +-1 random walk: a test process for splitting, with an exact answer.

S_0 = 0 and S_{n+1} = S_n + 1 or S_n - 1 with probability 1/2 each; the score is S itself, an
integer, so ties between replicas are common (or, given a horizon, a time-aware score: see
:class:`Walk`). Step n -> n + 1 of a replica is up iff the top bit of ``fold_in(key, n)`` is 1,
so a path depends only on its key, not on how steps are grouped into calls.

For a target a > 0 (reached when S >= a, i.e. S >= ceil(a)) the reflection principle gives

    P(max_{1 <= n <= T} S_n >= a) = P(S_T >= a) + P(S_T > a),   S_T = 2 X - T, X ~ Bin(T, 1/2),

computed from binomial log tails, exact down to the smallest float64 (Feller, vol. 1, ch. III).
With checkpoints every e > 1 steps only S_e, S_2e, ..., S_T are looked at; that probability is
a dynamic program over positions that absorbs the mass at or above the target at checkpoints.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, UInt32
from scipy import stats

from rankjump.runtime.precision import float64_scope

__all__ = ["Walk", "WalkState", "exact_probability"]


class WalkState(NamedTuple):
    """Positions S_n and step counts n of the walkers, shape (n,) int32 each."""

    position: Int[Array, " n"]
    step: Int[Array, " n"]


@functools.partial(jax.jit, static_argnames="n_steps")
def _advance(keys: UInt32[Array, "n 2"], state: WalkState, step0, n_steps: int) -> WalkState:
    """Adds n_steps +-1 moves to each position; step s moves up iff fold_in(key, s) has top bit 1.

    The words of a threefry key are uniform bits, so one hash per step is enough (a Bernoulli
    draw from the folded key would hash twice and compile twice as slowly).
    """
    steps = step0 + jnp.arange(n_steps)

    def moves(key):
        up = jax.vmap(lambda s: jax.random.fold_in(key, s)[0] >> 31)(steps)
        return jnp.sum(2 * up.astype(jnp.int32) - 1)

    return WalkState(state.position + jax.vmap(moves)(keys), state.step + n_steps)


@jax.jit
def _score(state: WalkState, barrier, horizon) -> Float[Array, " n"]:
    """S if horizon is 0, else the time-aware (S - barrier) / sqrt(horizon + 1 - n); shape (n,)."""
    s = state.position.astype(jnp.float64)
    timed = (s - barrier) / jnp.sqrt(jnp.maximum(horizon + 1.0 - state.step, 1.0))
    return jnp.where(horizon > 0, timed, s)


class Walk(NamedTuple):
    """The +-1 random walk from 0 as a splitting process
    (:class:`rankjump.rare_events.splitting.Process`).

    The event is S >= barrier. With ``horizon=None`` the score is S (integer; target = barrier).
    With a horizon T the score is (S_n - barrier) / sqrt(T + 1 - n) and the target 0: the same
    event, with a score monotone in the Brownian committor 2 Phi((S_n - a) / sqrt(T - n)), which
    makes AMS nearly ideal for a fixed horizon (the plain score ignores the time left).

    Attributes:
        barrier: The level a > 0 to reach.
        horizon: The horizon T for the time-aware score, or None for the plain score.
    """

    barrier: float = 1.0
    horizon: int | None = None

    @property
    def target(self) -> float:
        """The score level of the event: barrier, or 0 for the time-aware score."""
        return float(self.barrier) if self.horizon is None else 0.0

    def start(self, key: UInt32[Array, " 2"], n: int) -> WalkState:
        """n walkers at 0 at step 0 (the key is not used)."""
        del key
        return WalkState(jnp.zeros((n,), jnp.int32), jnp.zeros((n,), jnp.int32))

    def advance(
        self, keys: UInt32[Array, "n 2"], state: WalkState, step0, n_steps: int
    ) -> WalkState:
        """Advances walker i by n_steps moves from global step step0, with keys[i]."""
        return _advance(keys, state, step0, n_steps)

    def score(self, state: WalkState) -> Float[Array, " n"]:
        """S, or (S - barrier) / sqrt(horizon + 1 - n), as float64, shape (n,)."""
        with float64_scope():
            return np.asarray(_score(state, self.barrier, self.horizon or 0))


def exact_probability(steps: int, target: float, every: int = 1) -> float:
    """P(max of S over the checkpoints every, 2 every, ..., steps >= target), exactly.

    Args:
        steps: Horizon T >= 1.
        target: Level a > 0 (the start S_0 = 0 is below it).
        every: Checkpoint stride; T must be a multiple of it. With every = 1 the reflection
            formula is used, otherwise the dynamic program.

    Returns:
        The probability as a float (relative error ~1e-14 down to the smallest float64).

    Raises:
        ValueError: For steps or every < 1, steps not a multiple of every, or target <= 0.
    """
    if steps < 1 or every < 1 or steps % every:
        raise ValueError(f"steps must be a positive multiple of every, got {steps} and {every}")
    if not target > 0:
        raise ValueError(f"target must be > 0 (the walk starts at 0), got {target}")
    a = math.ceil(target)
    if a > steps:
        return 0.0
    if every == 1:
        # P(S_T >= a) = P(X >= ceil((T+a)/2)), P(S_T > a) = P(X > floor((T+a)/2)).
        tails = stats.binom.logsf([(steps + a + 1) // 2 - 1, (steps + a) // 2], steps, 0.5)
        return float(np.exp(np.logaddexp(tails[0], tails[1])))
    mass = np.zeros(2 * steps + 1)  # mass[x + T] = P(S_n = x, not absorbed yet)
    mass[steps] = 1.0
    hit = 0.0
    for n in range(1, steps + 1):
        mass = 0.5 * (np.roll(mass, 1) + np.roll(mass, -1))  # |S_n| <= n: no wrap-around
        if n % every == 0:
            hit += mass[a + steps :].sum()
            mass[a + steps :] = 0.0
    return float(hit)
