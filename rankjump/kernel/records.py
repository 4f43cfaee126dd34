"""One lane's checkpoint record: ranks under the rank rule, singular values, losses, balance.

A non-finite or exploding network is marked dead at its first such checkpoint: its records
are NaN (reals) or -1 (ranks) from then on, and its weights and optimizer state are zeroed so
that it costs no more than a live lane.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rankjump.dynamics import State, TaskArrays, materialize
from rankjump.kernel.types import LaneParams, Record, Structure
from rankjump.network import (
    data_loss,
    imbalance,
    param_norm2,
    product,
    stacked_singular_values,
)
from rankjump.ranks import REL_FLOOR, ranks_of

__all__ = ["record"]


def record(state: State, alive, p: LaneParams, lam, task: TaskArrays, s: Structure):
    """One lane's checkpoint record of the weights ``scale * M`` at lam ``lam``.

    Returns:
        ``(state, record)``: the state (zeroed when the lane is dead) and its :class:`Record`.
    """
    weights = materialize(state)
    n2 = param_norm2(weights)
    dl = data_loss(weights, task.rows, task.cols, task.y)
    alive = alive & jnp.isfinite(n2) & jnp.isfinite(dl) & (n2 <= p.diverge_norm2)

    def kept(x):
        return jnp.where(alive, x, jnp.zeros_like(x))

    weights = tuple(kept(w) for w in weights)
    state = state._replace(
        weights=tuple(kept(m) for m in state.weights), opt=jax.tree_util.tree_map(kept, state.opt)
    )
    floor = REL_FLOOR[s.dtype]
    svs = stacked_singular_values([*weights, product(weights)], s.svd)
    sv = svs[-1, : min(s.shapes[0][1], s.shapes[-1][0])]
    layer_svs = [svs[l, : min(w.shape)] for l, w in enumerate(weights)]
    net_rank, layer_rank, end_rank = ranks_of(layer_svs, sv, p.thr_layer, p.thr_end, floor, s.rule)
    nan = jnp.asarray(jnp.nan, n2.dtype)

    def real(x):
        return jnp.where(alive, x, nan)

    def rank(x):
        return jnp.where(alive, x, -1)

    n_sv = max(min(shape) for shape in s.shapes) if s.layer_sv else 0
    layer_sv = svs[: len(weights), :n_sv]  # rows zero-padded past a layer's own count
    return state, Record(
        rank=rank(net_rank),
        layer_rank=rank(layer_rank),
        end_rank=rank(end_rank),
        sv=real(sv[: s.k_max]),
        loss=real(dl + lam * n2),
        data_loss=real(dl),
        param_norm2=real(n2),
        imbalance=real(imbalance(weights)),
        alive=alive,
        layer_sv=real(layer_sv),
    )
