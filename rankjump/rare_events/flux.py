"""Jump probabilities by forward flux from the real start (``rare.method = "flux"``).

Every path into B_{target} begins with a kick (docs/theory.md, section 6): a layer's vanishing
value falls below ``rare.kick`` times its start value. Cut each path into excursions: the path is
in the basin A while every layer's value is at least ``rare.basin`` (0.7) times its start value
(the start is in A); an excursion begins at a kick from A and ends when the path is back in A,
or enters B_{target} (which it never leaves). Kicks, A and B_{target} are looked at every
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

What it gains: a path's variance is about E[#kicks] E[h^2] against plain Monte Carlo's
P = E[#kicks] E[h], so the continuations help only where h is spread thin over many kicks. In the
demo's setting a kick seen every 500 steps has mostly decided (E[h^2] / E[h] = 0.78 at eta 0.17),
and the method costs and gains about what plain Monte Carlo does (docs/theory.md, section 6).
Kicks themselves are counted by plain Monte Carlo, at the kernel's speed: the method reaches as
deep as plain paths meet kicks that commit.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rankjump.config import Config
from rankjump.rare_events.flux_result import FluxResult
from rankjump.rare_events.looks import Looks, take
from rankjump.rare_events.network import NetworkProcess
from rankjump.rare_events.rate import check_kick
from rankjump.rare_events.settings import FLUX_LANES
from rankjump.rare_events.splitting import fold_keys, padded_size

__all__ = ["flux_cell"]

PIECE = 1 << 12  # continuations stepped at once


class _Kicks(NamedTuple):
    path: np.ndarray  # (J,) global index of the path that kicked
    step: np.ndarray  # (J,) step of the kick
    in_b: np.ndarray  # (J,) the kicked state is already in B_target at a record checkpoint
    depth: np.ndarray  # (J,) its lowest layer value, as a fraction of the start's
    states: object  # their states (host arrays), J lanes


def _plain(
    net: NetworkProcess,
    looks: Looks,
    key,
    first_path: int,
    n: int,
    steps: int,
    stride: int,
    every: int,
):
    """n plain paths (global indices first_path...) to ``steps``: their kicks, the step at which
    each entered B_target (-1: not by ``steps``), whether each diverged, and their cost."""
    index = np.arange(first_path, first_path + n)
    keys = np.asarray(fold_keys(key, index, 0, np.zeros_like(index)))
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
                    take(state, mine),
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


def _continue(
    net: NetworkProcess,
    looks: Looks,
    key,
    kicks: _Kicks,
    reps: int,
    steps: int,
    stride: int,
    every: int,
):
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
    keys = np.asarray(fold_keys(key, kicks.path[kick_of], ordinal[kick_of], rep_of))
    state = take(kicks.states, kick_of)
    done = np.zeros(len(kick_of), bool)
    active = np.arange(len(kick_of))  # into kick_of / rep_of / keys / state
    size = min(padded_size(len(active)), PIECE)  # one shape: compiled once
    while len(active):
        for start in range(0, len(active), size):
            part = active[start : start + size]
            lanes = np.concatenate([part, np.full(size - len(part), part[-1])])
            sub = net.advance(keys[lanes], take(state, lanes), 0, stride)
            _, home, deep, ok = (x[: len(part)] for x in looks.cheap(sub))
            sub = take(sub, np.arange(len(part)))
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
    looks = Looks(net, r.kick, r.basin)
    key_paths, key_cont = jax.random.split(jnp.asarray(key))
    n_ckpt = steps // every
    per = r.paths
    group = max(1, FLUX_LANES // per)  # runs stepped at once
    curve = np.zeros((runs, n_ckpt))
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
        kick_run = (kicks.path - first_path) // per  # within the group
        # (J, K): the fraction of each kick's continuations entering by each checkpoint, 0
        # before the kick itself
        entered_by = (cont[:, :, None] >= 0) & (cont[:, :, None] <= ends)
        h_t = entered_by.mean(axis=1) * (kicks.step[:, None] <= ends)
        np.add.at(curve, g0 + kick_run, h_t)
        mine = g0 + np.arange(count)
        kicks_n[mine] = np.bincount(kick_run, minlength=count)
        h_sum[mine] = np.bincount(kick_run, h_t[:, -1], minlength=count)
        plain[mine] = (entry >= 0).reshape(count, per).sum(axis=1)
        cost[mine] = c.reshape(count, per).sum(axis=1) + np.bincount(
            kick_run, ccost, minlength=count
        ).astype(np.int64)
        diverged[mine] = div.reshape(count, per).sum(axis=1) + np.bincount(
            kick_run, failed.sum(axis=1), minlength=count
        ).astype(np.int64)
        per_kick.append((first_run + g0 + kick_run, kicks.step, kicks.depth, h_t[:, -1]))
        if on_run is not None:
            on_run(g0 + count)
    curve /= per
    estimate = curve[:, -1].copy()
    kick = [np.concatenate(x) for x in zip(*per_kick, strict=True)]
    return FluxResult(estimate, curve, kicks_n, h_sum, plain, cost, diverged, per, net, *kick)
