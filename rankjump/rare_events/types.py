"""What the splitting engine (:func:`rankjump.rare_events.splitting.ams`) sees of a process, and
what it returns: the :class:`Process` protocol, the reactive paths and the per-run result."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np
from jaxtyping import Array, Float, UInt32

from rankjump.stats.intervals import Summary

__all__ = ["AMSResult", "Process", "Reactive", "no_reactive"]


class Process(Protocol):
    """A discrete-time Markov process, seen by the engine only through these three methods.

    A state is a pytree whose leaves have a leading axis of n replicas; the engine passes NumPy
    arrays, in few batch sizes, so the process should jit its methods (``n_steps`` static).
    """

    def start(self, key: UInt32[Array, " 2"], n: int) -> Any:
        """n replicas' starting states (one call per run; the key may be used to draw them)."""

    def advance(self, keys: UInt32[Array, "n 2"], state: Any, step0: int, n_steps: int) -> Any:
        """Advances replica i by n_steps steps from global step step0 (common to all replicas).

        The randomness of step s of replica i must depend only on (keys[i], s), e.g. through
        ``jax.random.fold_in(keys[i], s)``: a path must not depend on how steps are grouped.
        """

    def score(self, state: Any) -> Float[Array, " n"]:
        """The score of each replica, shape (n,); the event is score >= target. NaN or -inf:
        the replica can never reach the target from this state (the engine stops it); NaN says
        it failed (diverged), and the engine counts such paths per run."""


class Reactive(NamedTuple):
    """Final replicas that reached the target (R of them over all finished runs).

    The weight of a replica is prod_q (1 - K_q / N) / N of its run: a run's weights sum to its
    estimate, and sum(weight * f(path)) / M estimates E[f(path); target reached].
    """

    run: np.ndarray  # (R,) run index m in 0..M-1
    replica: np.ndarray  # (R,) replica slot in 0..N-1
    weight: np.ndarray  # (R,)
    scores: np.ndarray  # (R, K + 1) scores at checkpoints 0..K (0: the start)
    states: Any  # pytree of leaves (R, K + 1, ...): states at checkpoints 0..K


def no_reactive() -> Reactive:
    """No reactive paths (a method that keeps none, or a cell that found none)."""
    return Reactive(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 1)), ())


class AMSResult(NamedTuple):
    """AMS over M runs: per-run records, their summary and the reactive paths.

    Estimates of unfinished runs (``max_iterations`` reached) are NaN, and so is the summary.
    ``killed`` and ``levels`` are (M, Q) with Q the largest iteration count, padded with 0 / NaN.
    Costs are replica-steps actually simulated (the padding of batches is not counted).
    """

    estimate: np.ndarray  # (M,) p_hat per run
    finished: np.ndarray  # (M,) bool: stopped at the target or by extinction
    extinct: np.ndarray  # (M,) bool: all replicas killed at once (estimate 0)
    floored: np.ndarray  # (M,) bool: stopped with a weight below the floor (estimate 0)
    iterations: np.ndarray  # (M,) kill-and-clone iterations done
    killed: np.ndarray  # (M, Q) K_q
    levels: np.ndarray  # (M, Q) z_q
    cost: np.ndarray  # (M,) replica-steps
    diverged: np.ndarray  # (M,) paths (first paths and clones) that stopped on a NaN score
    summary: Summary
    reactive: Reactive
