"""SGD with heavy-ball momentum on B sampled observed entries (``optimizer.kind = "sgd_momentum"``):

    v <- momentum * v + G(theta),    theta <- theta - eta * v,
    G(theta) = (2 / B) sum_batch r_ij grad A_theta[i, j] + 2 lam theta

the heavy ball of optax's ``sgd(eta, momentum)`` after ``add_decayed_weights(2 lam)``
(:func:`rankjump.dynamics.optax_chain`): weight decay enters through the gradient of L_lam, so
the velocity carries it like the data term, and the fixed points are L_lam's critical points as
for the other kinds. With momentum 0 this is plain SGD; the long-run step is eta / (1 - momentum)
times the gradient. The velocity v (one array per layer, zero at the start) is ``State.opt``.

The entries are drawn as for plain SGD (the same streams). Unlike SGD, every step touches every
weight (the velocity is dense), so the lazy weight-decay scale buys nothing here: the state
keeps scale 1 and the weights materialized. The lanes-last fast equal still pays off: the
gradient's matrix-vector products vectorize across lanes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rankjump.dynamics.lanes import entry_vectors_lanes, outer
from rankjump.dynamics.samples import entry_draws
from rankjump.dynamics.types import Dynamics, Hyper, State, TaskArrays, Update, materialize
from rankjump.model.network import entry_grad

__all__ = ["heavy_ball", "momentum_update", "momentum_update_lanes"]


def _heavy_ball(state: State, w, grads, hyper: Hyper) -> State:
    """v <- momentum v + grads + 2 lam W, W <- W - eta v (one network, or lanes last)."""
    if len(state.opt) != len(w):
        raise ValueError("sgd_momentum: State.opt must hold a velocity per layer (Dynamics.init)")
    v = tuple(
        hyper.momentum * vl + gl + 2.0 * hyper.lam * wl
        for vl, gl, wl in zip(state.opt, grads, w, strict=True)
    )
    w = tuple(wl - hyper.eta * vl for wl, vl in zip(w, v, strict=True))
    return state._replace(weights=w, scale=jnp.ones_like(state.scale), step=state.step + 1, opt=v)


def momentum_update(task: TaskArrays, batch: int) -> Update:
    """One heavy-ball step of ONE network on B sampled entries (the definition)."""

    def update(sample, state: State, hyper: Hyper) -> State:
        idx, _ = sample
        w = materialize(state)
        per_entry = jax.vmap(entry_grad, (None, 0, 0, 0))
        _, grads = per_entry(w, task.rows[idx], task.cols[idx], task.y[idx])
        return _heavy_ball(state, w, tuple(jnp.mean(g, axis=0) for g in grads), hyper)

    return update


def momentum_update_lanes(task: TaskArrays, batch: int) -> Update:
    """:func:`momentum_update` for a chunk of networks, lanes LAST."""

    def update(sample, state: State, hyper: Hyper) -> State:
        idx, _ = sample
        w = materialize(state)
        pred, a, b = entry_vectors_lanes(w, task.rows[idx], task.cols[idx])
        g = 2.0 * (pred - task.y[idx]) / batch  # (B, lanes)
        grads = tuple(outer(g, al, bl) for al, bl in zip(a, b, strict=True))
        return _heavy_ball(state, w, grads, hyper)

    return update


def heavy_ball(task: TaskArrays, shapes, batch: int, dtype, lanes_last: bool) -> Dynamics:
    """SGD with heavy-ball momentum ``hyper.momentum``; velocity zero at the start."""
    return Dynamics.of(
        entry_draws(batch, task.y.shape[0], False, dtype),
        momentum_update(task, batch),
        momentum_update_lanes(task, batch) if lanes_last else None,
        init_opt=lambda weights: tuple(jnp.zeros_like(w) for w in weights),
    )
