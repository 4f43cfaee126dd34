"""Jump probabilities by forward flux from the real start (``rare.method = "flux"``).

Every path into B_{target} begins with a kick (docs/theory.md, section 6): a layer's vanishing
value falls below ``rare.kick`` times its start value. Cut each path into excursions: the path is
in the basin A while every layer's value is at least :data:`BASIN` (0.7) times its start value
(the start is in A); an excursion begins at a kick from A and ends when the path is back in A, or
enters B_{target} (which it never leaves). Kicks, A and B_{target} are looked at every
``run.record_every`` steps (B_{target} as ``rankjump simulate`` sees it). A path enters B_{target}
by step T exactly when one of its excursions does, and at most one does, so

    P(enter by T) = E[ sum over kicks i of the path with tau_i <= T of h(X_{tau_i}, tau_i; T) ],

with h(x, t; T) the probability that an excursion from the kicked state x at step t enters
B_{target} by T before it is back in A (strong Markov property at each kick). No model: no constant
rate, no delay and no stationary basin; the transient from the start and the time a kick takes to
commit are in the paths themselves.

The estimator. Plain paths from the configured start (the simulator's own compiled stepping, all of
a run's paths at once) record every kick: its step and state. Each kicked state is continued
``rare.commit_reps`` times with fresh keys, until it enters B_{target} (it counts, with its entry
step), is back in A or diverges (it does not), or reaches T; h is estimated by the fraction that
entered (a kick looked at where the path already is in B_{target} counts 1). The plain path itself
goes on through its excursion, as if never continued, to find its later kicks. Path m's value
Y_m = sum_i h_i is unbiased for P, bounded by its number of kicks, and independent across paths,
so a run's estimate (the mean over its ``rare.paths`` paths) is an ordinary mean with an ordinary
interval. The same kicks give P(T') at every checkpoint T' <= T (kicks by T', continuations
entering by T'), and the plain paths' own entries give plain Monte Carlo's estimate of the same P,
for free, beside it.

Where it gains: a kicked state commits with probability h (0.01 to 0.1 in the demo's setting near
eta 0.15 to 0.17), so the continuations turn each kick's 0-or-1 outcome into a fraction: the
variance per path falls from about P to about P (1 / reps + mean h). Kicks themselves are counted
by plain Monte Carlo, at the kernel's speed: the method reaches as deep as kicks are seen.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rankjump.config import Config
from rankjump.rare_events.network import NetworkProcess
from rankjump.rare_events.rate import BASIN, check_kick
from rankjump.rare_events.settings import FLUX_LANES
from rankjump.rare_events.types import AMSResult, Reactive
from rankjump.stats.intervals import summarize

__all__ = [
    "FLUX_RUN_VARIABLES",
    "FLUX_VARIABLES",
    "FluxResult",
    "combine",
    "flux_as_cell",
    "flux_cell",
    "flux_variables",
]

FLUX_VARIABLES = ("kicks", "committor", "p_plain", "plain_entered", "p_curve", "p_curve_stderr")
FLUX_RUN_VARIABLES = ("run_kicks",)

PIECE = 1 << 12  # continuations stepped at once
DEEP = 0.01  # a lane whose every layer's value is below DEEP of its start is checked for B_target


class FluxResult(NamedTuple):
    """One cell by the flux method, M runs of ``rare.paths`` plain paths."""

    estimate: np.ndarray  # (M,) a run's mean of Y over its paths, at T = run.steps
    curve: np.ndarray  # (M, K) the same at every checkpoint T' = record_every * (1..K)
    kicks: np.ndarray  # (M,) kicks found by the run's paths
    h_sum: np.ndarray  # (M,) their estimated committors, summed (at T)
    plain: np.ndarray  # (M,) the run's plain paths that entered B_target by T
    cost: np.ndarray  # (M,) trajectory-steps: paths and continuations
    diverged: np.ndarray  # (M,) plain paths and continuations that diverged
    paths: int  # plain paths per run
    network: NetworkProcess
    kick_run: np.ndarray  # (J,) every kick: its run,
    kick_step: np.ndarray  # (J,) its step,
    kick_depth: np.ndarray  # (J,) its lowest layer value over the start's,
    kick_h: np.ndarray  # (J,) the fraction of its continuations entering by run.steps


class _Looks:
    """Looks at lanes-first states: kicked (some layer's value at or below ``kick`` of its start
    value), in A (every layer's at or above BASIN of it), in B_target, healthy; and the kicked
    lanes' depth (their lowest layer value over its start value).

    Kicks and A are decided for every lane by eigenvalue counts of each layer's Gram matrix
    W^T W, without spectra (:func:`count_above`); B_target and the depth by the simulator's own
    spectra (:mod:`rankjump.model.spectra`), on the few lanes that kicked or whose every layer's
    value is below :data:`DEEP` of its start (B_target lies far below: the rank threshold is
    about 4e-4 of the start value in the demo's setting)."""

    def __init__(self, network: NetworkProcess, kick: float):
        layers, s0 = network._layers, network._start_values
        target, limit = network.target_rank, network.diverge_norm2
        fractions = jnp.asarray([kick, BASIN, DEEP])

        def cheap(weights, scale):
            ws = [m * scale.reshape(-1, 1, 1) for m in weights]
            ok = _healthy_lanes(ws, limit)
            # (L, 3, n): each layer's count of singular values above kick, BASIN and DEEP times
            # its start value, lanes last (the elimination vectorizes over them)
            counts = jnp.stack(
                [
                    count_above(jnp.einsum("nij,nik->jkn", w, w), (fractions * s0[l]) ** 2)
                    for l, w in enumerate(ws)
                ]
            )
            kicked = jnp.any(counts[:, 0] <= target, axis=0)
            home = jnp.all(counts[:, 1] > target, axis=0)
            deep = jnp.all(counts[:, 2] <= target, axis=0)
            return kicked & ok, home & ok, deep & ok, ok

        def exact(weights, scale):
            sv, _, rank, ok = layers(weights, scale)
            return (rank <= target) & ok, jnp.min(sv / s0, axis=-1)

        self._cheap, self._exact = jax.jit(cheap), jax.jit(exact)

    def cheap(self, state):
        """(kicked, in A, deep, healthy) of every lane, host arrays."""
        out = self._cheap(tuple(state.weights), state.scale)
        return tuple(np.asarray(x) for x in out)

    def exact(self, state, lanes: np.ndarray):
        """(in B_target, depth) of ``lanes``, host arrays."""
        if not len(lanes):
            return np.zeros(0, bool), np.zeros(0)
        size = _padded(len(lanes))
        sub = _take(state, np.concatenate([lanes, np.full(size - len(lanes), lanes[-1])]))
        in_b, depth = self._exact(tuple(sub.weights), sub.scale)
        return np.asarray(in_b)[: len(lanes)], np.asarray(depth)[: len(lanes)]


def count_above(gram, t):
    """How many eigenvalues of each symmetric ``gram`` (m, m, lanes...) exceed each ``t`` (k,):
    (k, lanes...).

    Sylvester's law of inertia: the signs of the pivots of G - t I, eliminated without pivoting,
    count its positive eigenvalues; O(m^3 / 3) per t, lanes last, no LAPACK. A pivot that is
    exactly 0 (t an eigenvalue, to rounding) is taken as a small positive one: a count can be off
    by one only where t is an eigenvalue to rounding, so the rule stays a deterministic function
    of the state."""
    m = gram.shape[0]
    eye = jnp.eye(m, dtype=gram.dtype).reshape(m, m, *(1,) * (gram.ndim - 1))
    t = t.reshape(-1, *(1,) * (gram.ndim - 2))
    a = gram[:, :, None] - t * eye  # (m, m, k, lanes...)
    tiny = jnp.finfo(gram.dtype).tiny
    count = jnp.zeros(a.shape[2:], jnp.int32)
    for _ in range(m):
        d = a[0, 0]
        d = jnp.where(jnp.abs(d) < tiny, tiny, d)
        count += (d > 0).astype(jnp.int32)
        col = a[1:, 0]
        a = a[1:, 1:] - col[:, None] * col[None, :] / d
    return count


def _healthy_lanes(ws, limit):
    """Not diverged: ||theta||^2 finite and at most ``limit``, per lane."""
    norm2 = sum(jnp.sum(w**2, axis=(1, 2)) for w in ws)
    return jnp.isfinite(norm2) & (norm2 <= limit)


def _keys(base, a: np.ndarray, b: np.ndarray | int, c: np.ndarray | int) -> np.ndarray:
    """(n, 2) keys fold_in(fold_in(fold_in(base, a), b), c)."""
    return np.asarray(_fold3(jnp.asarray(base), jnp.asarray(a), jnp.asarray(b), jnp.asarray(c)))


@jax.jit
def _fold3(base, a, b, c):
    a, b, c = jnp.broadcast_arrays(a, b, c)
    fold = jax.vmap(jax.random.fold_in)
    keys = jnp.broadcast_to(base, (a.shape[0], 2))
    return fold(fold(fold(keys, a.astype(jnp.uint32)), b.astype(jnp.uint32)), c.astype(jnp.uint32))


def _take(state, index):
    """Lanes ``index`` of a state, on the host."""
    return jax.tree.map(lambda x: np.asarray(x)[index], state)


def _padded(n: int) -> int:
    """Lanes a batch of n is padded to: a power of two, at least 64 (few compiled shapes)."""
    return 1 << (max(n, 64) - 1).bit_length()


class _Kicks(NamedTuple):
    path: np.ndarray  # (J,) global index of the path that kicked
    step: np.ndarray  # (J,) step of the kick
    in_b: np.ndarray  # (J,) the kicked state is already in B_target at a record checkpoint
    depth: np.ndarray  # (J,) its lowest layer value, as a fraction of the start's
    states: object  # their states (host arrays), J lanes


def _plain(net, looks, key, first_path: int, n: int, steps: int, stride: int, every: int):
    """n plain paths (global indices first_path...) to ``steps``: their kicks, the step at which
    each entered B_target (-1: not by ``steps``), whether each diverged, and their cost."""
    index = np.arange(first_path, first_path + n)
    keys = _keys(key, index, 0, 0)
    state = net.start(None, n)
    away = np.zeros(n, bool)  # in an excursion (kicked, not back in A)
    live = np.ones(n, bool)  # not entered, not diverged
    entry = np.full(n, -1, np.int64)
    diverged = np.zeros(n, bool)
    found, cost = [], np.zeros(n, np.int64)
    for k in range(1, steps // stride + 1):
        state = net.advance(keys, state, (k - 1) * stride, stride)
        cost += live * stride
        kicked, home, deep, ok = looks.cheap(state)
        step = k * stride
        diverged |= live & ~ok
        live &= ok
        new = live & ~away & kicked
        record = step % every == 0
        lanes = np.nonzero(new | (live & deep & record))[0]  # where B_target or depth is needed
        in_b = np.zeros(n, bool)
        in_b[lanes], depth = looks.exact(state, lanes)
        if new.any():
            kick = new[lanes]
            mine = lanes[kick]
            found.append(
                (
                    index[mine],
                    np.full(len(mine), step),
                    in_b[mine] & record,
                    depth[kick],
                    _take(state, mine),
                )
            )
        away = (away | new) & ~home
        entered = live & in_b & record
        entry[entered] = step
        live &= ~entered
        if not live.any():
            break
    if found:
        path, step, in_b, depth, states = zip(*found, strict=True)
        states = jax.tree.map(lambda *xs: np.concatenate(xs), *states)
        cat = np.concatenate
        kicks = _Kicks(cat(path), cat(step), cat(in_b), cat(depth), states)
    else:
        none = np.zeros(0, np.int64)
        kicks = _Kicks(none, none, np.zeros(0, bool), np.zeros(0), None)
    return kicks, entry, diverged, cost


def _continue(net, looks, key, kicks: _Kicks, reps: int, steps: int, stride: int, every: int):
    """``reps`` continuations of every kicked state not already in B_target: (J, reps) entry
    steps (-1: back in A, diverged or not by ``steps``), (J, reps) diverged, (J,) cost."""
    n_kicks = len(kicks.step)
    entry = np.full((n_kicks, reps), -1, np.int64)
    failed = np.zeros((n_kicks, reps), bool)
    cost = np.zeros(n_kicks, np.int64)
    entry[kicks.in_b] = kicks.step[kicks.in_b, None]
    todo = np.nonzero(~kicks.in_b & (kicks.step < steps))[0]
    if not len(todo):
        return entry, failed, cost
    kick_of = np.repeat(todo, reps)
    rep_of = np.tile(np.arange(reps), len(todo))
    ordinal = _ordinals(kicks.path)
    keys = _keys(key, kicks.path[kick_of], ordinal[kick_of], rep_of)
    state = _take(kicks.states, kick_of)
    done = np.zeros(len(kick_of), bool)
    active = np.arange(len(kick_of))  # into kick_of / rep_of / keys / state
    size = min(_padded(len(active)), PIECE)  # one shape: compiled once
    while len(active):
        for start in range(0, len(active), size):
            part = active[start : start + size]
            lanes = np.concatenate([part, np.full(size - len(part), part[-1])])
            sub = net.advance(keys[lanes], _take(state, lanes), 0, stride)
            _, home, deep, ok = (x[: len(part)] for x in looks.cheap(sub))
            sub = _take(sub, np.arange(len(part)))
            step = np.asarray(sub.step)
            lanes = np.nonzero(deep & (step % every == 0))[0]
            in_b = np.zeros(len(part), bool)
            in_b[lanes] = looks.exact(sub, lanes)[0]
            for leaf, new in zip(jax.tree.leaves(state), jax.tree.leaves(sub), strict=True):
                leaf[part] = new
            cost[:] += np.bincount(kick_of[part], minlength=n_kicks) * stride
            entered = in_b & (step % every == 0)
            j, r = kick_of[part], rep_of[part]
            entry[j[entered], r[entered]] = step[entered]
            failed[j[~ok], r[~ok]] = True
            done[part] = entered | ~ok | home | (step >= steps)
        active = active[~done[active]]
    return entry, failed, cost


def _ordinals(path: np.ndarray) -> np.ndarray:
    """The ordinal of each kick among its path's kicks, in the order found."""
    out = np.zeros(len(path), np.int64)
    seen: dict[int, int] = {}
    for i, p in enumerate(path.tolist()):
        out[i] = seen.get(p, 0)
        seen[p] = out[i] + 1
    return out


def flux_cell(
    cfg: Config, lam: float, eta: float, key, runs: int, first_run: int = 0, on_run=None
) -> FluxResult:
    """The flux method on cell (lam, eta) of ``cfg`` (module docstring): ``runs`` runs of
    ``rare.paths`` plain paths, run m's paths numbered from (first_run + m) * paths, so that a run
    is the same alone or batched. ``on_run(done)`` is called as runs finish."""
    r, run = cfg.rare, cfg.run
    stride = every = run.record_every
    steps = run.steps
    net = NetworkProcess(cfg, lam, eta)
    check_kick(net, r.kick)
    looks = _Looks(net, r.kick)
    key_paths, key_cont = jax.random.split(jnp.asarray(key))
    n_ckpt = steps // every
    per = r.paths
    group = max(1, FLUX_LANES // per)  # runs stepped at once
    estimate, curve = np.zeros(runs), np.zeros((runs, n_ckpt))
    kicks_n, h_sum, plain = (np.zeros(runs, np.int64), np.zeros(runs), np.zeros(runs, np.int64))
    cost, diverged = np.zeros(runs, np.int64), np.zeros(runs, np.int64)
    ends = every * np.arange(1, n_ckpt + 1)
    per_kick = []
    for g0 in range(0, runs, group):
        count = min(group, runs - g0)
        first_path = (first_run + g0) * per
        kicks, entry, div, c = _plain(
            net, looks, key_paths, first_path, count * per, steps, stride, every
        )
        cont, failed, ccost = _continue(
            net, looks, key_cont, kicks, r.commit_reps, steps, stride, every
        )
        lane_run = np.arange(count * per) // per
        kick_run = (kicks.path - first_path) // per
        for m in range(count):
            mine = kick_run == m
            ent = cont[mine]  # (J_m, reps)
            by = (ent[:, :, None] >= 0) & (ent[:, :, None] <= ends)  # (J_m, reps, K)
            h_t = by.mean(axis=1) * (kicks.step[mine, None] <= ends)  # (J_m, K)
            curve[g0 + m] = h_t.sum(axis=0) / per
            estimate[g0 + m] = curve[g0 + m, -1]
            kicks_n[g0 + m] = int(mine.sum())
            h_sum[g0 + m] = float(h_t[:, -1].sum())
            plain[g0 + m] = int(np.sum((entry >= 0) & (lane_run == m)))
            cost[g0 + m] = int(c[lane_run == m].sum() + ccost[mine].sum())
            diverged[g0 + m] = int(div[lane_run == m].sum() + failed[mine].sum())
        h = ((cont >= 0) & (cont <= steps)).mean(axis=1) if len(cont) else np.zeros(0)
        per_kick.append((first_run + g0 + kick_run, kicks.step, kicks.depth, h))
        if on_run is not None:
            on_run(g0 + count)
    kick = [np.concatenate(x) for x in zip(*per_kick, strict=True)]
    return FluxResult(estimate, curve, kicks_n, h_sum, plain, cost, diverged, per, net, *kick)


def flux_as_cell(result: FluxResult, level: float = 0.95) -> AMSResult:
    """The result in the shape ``rankjump rare`` stores for every method: a run's estimate is the
    mean of Y over its paths; no splitting iterations and no reactive paths."""
    runs = len(result.estimate)
    none = np.zeros(runs, bool)
    empty = Reactive(*(np.zeros(0, t) for t in (np.int64, np.int64, float)), np.zeros((0, 1)), ())
    return AMSResult(
        estimate=result.estimate,
        finished=np.ones(runs, bool),
        extinct=none,
        floored=none,
        iterations=np.zeros(runs, np.int64),
        killed=np.zeros((runs, 0), np.int64),
        levels=np.zeros((runs, 0)),
        cost=result.cost,
        diverged=result.diverged,
        summary=summarize(result.estimate, level),
        reactive=empty,
    )


def combine(parts) -> FluxResult:
    """Flux results of consecutive batches of runs as one."""
    if len(parts) == 1:
        return parts[0]

    def cat(field):
        return np.concatenate([getattr(p, field) for p in parts])

    fields = ("estimate", "curve", "kicks", "h_sum", "plain", "cost", "diverged")
    kicks = ("kick_run", "kick_step", "kick_depth", "kick_h")
    first = parts[0]
    return FluxResult(
        *(cat(f) for f in fields), first.paths, first.network, *(cat(f) for f in kicks)
    )


def flux_variables(result: FluxResult) -> dict:
    """The method's own numbers: name -> (value, long name[, dims]) per cell, per run ((M,)
    arrays) and per checkpoint ((K,) arrays, dims ("checkpoint",))."""
    kicks = int(result.kicks.sum())
    n = len(result.estimate) * result.paths
    curve = np.concatenate([np.zeros((len(result.estimate), 1)), result.curve], axis=1)
    return {
        "kicks": (float(kicks), "kicks out of the basin found by the plain paths (by run.steps)"),
        "committor": (
            float(result.h_sum.sum() / kicks) if kicks else math.nan,
            "mean over kicks of the fraction of their continuations entering B_target by run.steps",
        ),
        "p_plain": (
            float(result.plain.sum() / n),
            "plain Monte Carlo's P(enter by run.steps) from the same paths",
        ),
        "plain_entered": (float(result.plain.sum()), "plain paths that entered by run.steps"),
        "p_curve": (
            curve.mean(axis=0),
            "P(enter by step), the same estimator at every checkpoint",
            ("checkpoint",),
        ),
        "p_curve_stderr": (
            curve.std(axis=0, ddof=1) / math.sqrt(len(curve))
            if len(curve) > 1
            else curve[0] * np.nan,
            "standard error of p_curve over the runs",
            ("checkpoint",),
        ),
        "run_kicks": (result.kicks.astype(float), "kicks found by the run's paths"),
    }
