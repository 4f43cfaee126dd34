"""Rare-event probabilities by generalized adaptive multilevel splitting (AMS), runs in lockstep.

Generalized AMS (Cérou & Guyader 2007) in the discrete-time form of Bréhier, Gazeau, Goudenège,
Lelièvre & Rousset (Ann. Appl. Probab. 2016): unbiased for any score, any number of replicas N and
any kill number k, because ties are killed. A run holds N paths over checkpoints c = 1..K (step
c * every, K = steps / every); a path's level is its max score over c = 1..K, leaving out the
common start c = 0. At iteration q:

- z_q = the k-th smallest level; if z_q >= target the run stops;
- every replica with level <= z_q is killed (K_q >= k of them, ties included); K_q = N is
  extinction and the run's estimate is 0;
- each killed replica becomes a clone of a survivor drawn uniformly (independently): the
  survivor's path up to and including its first checkpoint with score > z_q, continued from that
  checkpoint's state with a fresh key to step T;
- the estimate is p_hat = prod_q (1 - K_q / N) * #{level >= target} / N.

A path stops at its first checkpoint at or above the target, or scored -inf or NaN (the process
says it can no longer reach the target, e.g. it diverged or fell back where it started from): it
is not simulated further, and its later checkpoints repeat that state and score. Its level is
then decided, so the estimate is the same as if it went on. Paths stopped on NaN (diverged) are
counted per run (``AMSResult.diverged``): a run that dies out with them died of divergence, not
of ties.

Lockstep: the M runs are lanes of one batch. Each iteration, every unfinished run kills and
clones its own replicas, then the clones of all runs advance together: one ``advance`` call per
checkpoint stride holds every clone branched before it (first paths: all branched at the start),
cut into powers of two in [64, M N], the last padded, so jit compiles few shapes. States at
checkpoints 0..K stay on the host, (M, N, K + 1, ...). Replica i of run m in round q (0: first
paths, q + 1: clones of iteration q) gets the key fold_in(fold_in(fold_in(key_paths, first_run +
m), q), i), its survivor pick the same chain on key_picks: a run is the same alone or batched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, UInt32

from rankjump.rare_events.types import AMSResult, Process, Reactive
from rankjump.stats.intervals import summarize

__all__ = [
    "ams",
    "fold_keys",
    "kill_rule",
    "padded_size",
]


def kill_rule(maxima: np.ndarray, kill: int) -> tuple[np.ndarray, np.ndarray]:
    """Level z = the kill-th smallest maximum of each run, and the replicas to kill: max <= z.

    Args:
        maxima: Path maxima, shape (M, N); kill: k, 1 <= k < N.

    Returns:
        z, shape (M,), and killed, bool (M, N), which holds all the ties at z.
    """
    z = np.partition(maxima, kill - 1, axis=1)[:, kill - 1]
    return z, maxima <= z[:, None]


@jax.jit
def fold_keys(base, m, q, i):
    """Per-lane keys fold_in(fold_in(fold_in(base, m), q), i), (L, 2): base (2,), m and i (L,),
    q one value or (L,)."""
    fold = jax.vmap(jax.random.fold_in)
    return fold(fold(fold(jnp.broadcast_to(base, (len(m), 2)), m), jnp.full_like(m, q)), i)


def padded_size(count: int) -> int:
    """Lanes a batch of ``count`` is padded to: a power of two, at least 64, so that jit
    compiles few shapes."""
    return 1 << (max(count, 64) - 1).bit_length()


def _pieces(count: int, top: int):
    """Batches (lanes, real) covering range(count), sizes powers of two in [64, top]: the first
    `real` lanes are range(count)'s, the rest pads the last batch by repeating its final lane."""
    for start in range(0, count, top):
        size = min(top, padded_size(count - start))
        yield np.minimum(np.arange(start, start + size), count - 1), min(size, count - start)


def _check(replicas, kill, runs, steps, every, target, max_iterations, level, first_run, floor):
    """Raises a one-line ValueError naming the first invalid argument."""
    ints = dict(replicas=replicas, kill=kill, runs=runs, steps=steps, every=every)
    for name, value in {**ints, "max_iterations": max_iterations, "first_run": first_run}.items():
        if not isinstance(value, int | np.integer) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    checks = [
        (replicas >= 2, f"replicas must be >= 2, got {replicas}"),
        (1 <= kill < replicas, f"kill must satisfy 1 <= kill < replicas, got {kill}"),
        (runs >= 1, f"runs must be >= 1, got {runs}"),
        (every >= 1, f"every must be >= 1, got {every}"),
        (steps % max(every, 1) == 0 < steps, f"steps must be a multiple of every, got {steps}"),
        (max_iterations >= 1, f"max_iterations must be >= 1, got {max_iterations}"),
        (0 < level < 1, f"level must lie in (0, 1), got {level}"),
        (0 <= floor < 1, f"floor must lie in [0, 1), got {floor}"),
        (first_run >= 0, f"first_run must be >= 0, got {first_run}"),
        (target is not None and math.isfinite(target), f"target must be finite, got {target}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def ams(
    process: Process,
    key: UInt32[Array, " 2"],
    *,
    replicas: int,
    kill: int,
    runs: int,
    steps: int,
    every: int,
    target: float | None = None,
    max_iterations: int = 10_000,
    level: float = 0.95,
    floor: float = 0.0,
    first_run: int = 0,
    on_iteration: Callable[[int, int, float], None] | None = None,
    starts: Callable[[int, Any, int], Any] | None = None,
) -> AMSResult:
    """Estimates P(max of the score over checkpoints 1..K >= target) by M independent AMS runs.

    Args:
        process: The process (:class:`Process`).
        key: PRNG key, shape (2,) uint32 (or a typed key), split into (key_start, key_paths,
            key_picks); run m starts from start(fold_in(key_start, first_run + m), N), so a
            process may draw each run's starting states (from a stationary sample, say).
        replicas: N >= 2 replicas per run.
        kill: k, 1 <= k < N: the level of an iteration is the k-th smallest path maximum.
        runs: M >= 1 independent runs, in lockstep.
        steps: Horizon T, a multiple of `every`.
        every: Checkpoint stride; the level of a path is its max score over checkpoints.
        target: The event is score >= target; defaults to ``process.target``.
        max_iterations: Iterations after which an unfinished run stops and is flagged.
        level: Confidence level of the summary intervals.
        floor: A run whose weight prod_q (1 - K_q / N) falls below ``floor`` stops with
            estimate 0 (flagged ``floored``): its estimate could have been at most that weight,
            so the mean is biased low by less than ``floor`` (0: never).
        first_run: Index of the first run, to split one experiment over several calls.
        on_iteration: Called after each iteration with (iteration, finished runs, the lowest
            level z_q of the unfinished runs), e.g. to drive a progress bar.
        starts: Draws run m's starting states as ``starts(first_run + m, key, N)`` instead of
            ``process.start(key, N)``, for runs that start from different distributions (the
            estimate of run m is then that of its own start).

    Returns:
        An :class:`AMSResult`.

    Raises:
        ValueError: For an invalid argument, or a target already reached at the start.
    """
    target = getattr(process, "target", None) if target is None else target
    _check(replicas, kill, runs, steps, every, target, max_iterations, level, first_run, floor)
    target, n, n_ckpt = float(target), replicas, steps // every
    key = jnp.asarray(key)
    key = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    if key.shape != (2,) or key.dtype != jnp.uint32:
        raise ValueError(f"key must be a (2,) uint32 PRNG key, got {key.shape} {key.dtype}")
    key_start, key_paths, key_picks = jax.random.split(key, 3)
    top = 1 << (max(runs * n, 64).bit_length() - 1)

    def draw(base, m, q, i):  # the (L, 2) keys of lanes (m, i) in round q, batch by batch
        out = np.empty((len(m), 2), np.uint32)
        for lanes, real in _pieces(len(m), top):
            keys = fold_keys(base, first_run + m[lanes], q, i[lanes])
            out[lanes[:real]] = np.asarray(keys)[:real]
        return out

    for m in range(runs):  # checkpoint 0: run m starts from start(fold_in(key_start, m), N)
        run_key = jax.random.fold_in(key_start, first_run + m)
        start = process.start(run_key, n) if starts is None else starts(first_run + m, run_key, n)
        score0 = np.asarray(process.score(start), np.float64)
        if score0.shape != (n,):
            raise ValueError(f"process.score must return shape ({n},), got {score0.shape}")
        if np.all(score0 >= target):
            raise ValueError(f"target {target} is already reached at the start (score {score0[0]})")
        leaves, treedef = jax.tree.flatten(start)
        if m == 0:
            store = [np.empty((runs, n, n_ckpt + 1) + x.shape[1:], x.dtype) for x in leaves]
            scores = np.empty((runs, n, n_ckpt + 1))
        for buf, x in zip([*store, scores], [*leaves, score0], strict=True):
            buf[m, :, 0] = np.asarray(x)
    cost, diverged = np.zeros(runs, np.int64), np.zeros(runs, np.int64)

    def extend(cm, ci, branch, keys):
        """Simulates lanes (cm, ci) from their checkpoint `branch` to K, in lockstep; a lane
        stops at a checkpoint at or above the target or scored -inf (NaN), and its later
        checkpoints repeat that state and score."""
        order = np.argsort(branch, kind="stable")
        cm, ci, branch, keys = cm[order], ci[order], branch[order], keys[order]
        stopped = (branch > 0) & (scores[cm, ci, branch] >= target)
        for j in range(int(branch.min()) + 1, n_ckpt + 1):
            begun = np.arange(int(np.searchsorted(branch, j)))  # branch < j
            still = begun[stopped[begun]]
            for buf in [*store, scores]:
                buf[cm[still], ci[still], j] = buf[cm[still], ci[still], j - 1]
            going = begun[~stopped[begun]]
            for lanes, real in _pieces(len(going), top):
                lanes = going[lanes]
                m, i, live = cm[lanes], ci[lanes], lanes[:real]
                old = treedef.unflatten([b[m, i, j - 1] for b in store])
                new = process.advance(keys[lanes], old, (j - 1) * every, every)
                score = np.asarray(process.score(new), np.float64)
                failed = np.isnan(score[:real])  # diverged: counted, and it never reaches
                diverged[:] += np.bincount(cm[live][failed], minlength=runs)
                score = np.where(np.isnan(score), -np.inf, score)
                for buf, x in zip([*store, scores], [*jax.tree.leaves(new), score], strict=True):
                    buf[cm[live], ci[live], j] = np.asarray(x)[:real]
                stopped[live] = (score[:real] >= target) | (score[:real] == -np.inf)
                cost[:] += np.bincount(cm[live], minlength=runs) * every

    m_all, i_all = (a.ravel() for a in np.indices((runs, n)))
    extend(m_all, i_all, np.zeros(runs * n, np.int64), draw(key_paths, m_all, 0, i_all))

    maxima = scores[:, :, 1:].max(axis=2)  # the level of a path leaves out checkpoint 0
    estimate, log_w, iterations = np.full(runs, np.nan), np.zeros(runs), np.zeros(runs, np.int64)
    finished, extinct, floored = (np.zeros(runs, bool) for _ in range(3))
    killed_hist, level_hist, hits = [], [], []
    for q in range(max_iterations + 1):
        active = ~finished
        z, dead = kill_rule(maxima, kill)
        n_dead = dead.sum(axis=1)
        stop, reach = active & (z >= target), maxima >= target
        # p_hat = prod_q (1 - K_q / N) * #{max >= target} / N  (Bréhier et al. 2016).
        estimate[stop] = np.exp(log_w[stop]) * reach[stop].sum(axis=1) / n
        hits.append(np.nonzero(stop[:, None] & reach))
        gone = active & ~stop & (n_dead == n)  # extinction: p_hat = 0
        extinct |= gone
        finished |= stop | gone
        active = ~finished
        if not active.any() or q == max_iterations:
            break
        killed_hist.append(np.where(active, n_dead, 0))
        level_hist.append(np.where(active, z, np.nan))
        log_w[active] += np.log1p(-n_dead[active] / n)
        iterations[active] += 1
        low = active & (log_w < math.log(floor)) if floor > 0 else np.zeros(runs, bool)
        estimate[low], floored[low], finished[low] = 0.0, True, True
        active &= ~low
        if not active.any():
            continue

        # Clone: killed slot i of run m copies a survivor drawn uniformly, then branches at the
        # survivor's first checkpoint with score > z_q and is advanced only after it.
        cm, ci = np.nonzero(dead & active[:, None])
        u = draw(key_picks, cm, q + 1, ci)[:, 0] / 2.0**32  # uniform in [0, 1 - 2^-32]
        pick = (u * (n - n_dead[cm])).astype(np.int64)  # uniform among the survivors
        cs = np.argsort(dead, axis=1, kind="stable")[cm, pick]  # survivors come first
        for buf in [*store, scores]:
            buf[cm, ci] = buf[cm, cs]
        branch = 1 + np.argmax(scores[cm, ci, 1:] > z[cm, None], axis=1)
        extend(cm, ci, branch, draw(key_paths, cm, q + 1, ci))
        maxima[cm, ci] = scores[cm, ci, 1:].max(axis=1)
        if on_iteration is not None:
            on_iteration(q + 1, int(finished.sum()), float(np.nanmin(z[active])))

    estimate[extinct] = 0.0
    rm, ri = (np.concatenate(a) for a in zip(*hits, strict=True))
    paths = treedef.unflatten([b[rm, ri] for b in store])
    reactive = Reactive(rm, ri, np.exp(log_w[rm]) / n, scores[rm, ri], paths)
    killed = np.array(killed_hist, np.int64).reshape(-1, runs).T
    levels = np.array(level_hist, np.float64).reshape(-1, runs).T
    per_run = (estimate, finished, extinct, floored, iterations, killed, levels, cost, diverged)
    return AMSResult(*per_run, summarize(estimate, level), reactive)
