"""A chunk's checkpoint records: ranks under the rank rule, singular values, losses, balance.

A non-finite or exploding network is marked dead at its first such checkpoint: its records
are NaN (reals) or -1 (ranks) from then on, and its weights and optimizer state are zeroed so
that it costs no more than a live lane.

Ranks and singular values come from :mod:`rankjump.model.spectra` (Householder bidiagonalization,
Sturm counts and bisection, lanes last, in cache tiles): no LAPACK call, so the program runs on
a CPU split into several devices, and it costs a fraction of a full singular value decomposition
of every layer and of A_theta.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rankjump.dynamics import State, TaskArrays, materialize
from rankjump.kernel.types import LaneParams, Record, Structure
from rankjump.model.network import data_loss, imbalance, param_norm2, product
from rankjump.model.ranks import REL_FLOOR, network_rank, spectral_ranks
from rankjump.model.spectra import lanes_last_tiles

__all__ = ["record", "spectral_record"]


def spectral_record(weights, end, thr_layer, thr_end, s: Structure):
    """Ranks and singular values of a chunk (lanes last: weights (rows, cols, lanes), end =
    A_theta (d_out, d_in, lanes), thresholds (lanes,)).

    The layers and A_theta are reduced together, and one bisection finds every value the record
    needs (:func:`rankjump.model.ranks.spectral_ranks`).

    Returns:
        ``(layer_rank (L, lanes), end_rank (lanes,), sv (k, lanes), layer_sv (L, n, lanes))``:
        sv the k = min(k_max, d_out, d_in) largest values of A_theta, layer_sv every layer's
        values zero-padded to the largest layer's count (n = 0 unless ``s.layer_sv``).
    """
    depth = len(weights)
    n_sv = max(min(w.shape[:2]) for w in weights) if s.layer_sv else 0
    k = min(s.k_max, *end.shape[:2])
    wanted = [(l, j) for l in range(depth) for j in range(1, n_sv + 1)]
    wanted += [(depth, j) for j in range(1, k + 1)]
    thresholds = jnp.stack([thr_layer] * depth + [thr_end])
    ranks, values = spectral_ranks([*weights, end], thresholds, REL_FLOOR[s.dtype], wanted)
    layer_sv = values[: depth * n_sv].reshape(depth, n_sv, *values.shape[1:])
    return ranks[:depth], ranks[depth], values[depth * n_sv :], layer_sv


def record(state: State, alive, p: LaneParams, lam, task: TaskArrays, s: Structure):
    """The checkpoint record of a chunk (lanes first) of weights ``scale * M`` at lam ``lam``
    (one value per lane).

    Returns:
        ``(state, record)``: the state (zeroed on dead lanes) and its :class:`Record`, lanes
        first.
    """

    def scalars(state, alive, limit):
        weights = materialize(state)
        n2 = param_norm2(weights)
        dl = data_loss(weights, task.rows, task.cols, task.y)
        alive = alive & jnp.isfinite(n2) & jnp.isfinite(dl) & (n2 <= limit)

        def kept(x):
            return jnp.where(alive, x, jnp.zeros_like(x))

        weights = tuple(kept(w) for w in weights)
        state = state._replace(
            weights=tuple(kept(m) for m in state.weights),
            opt=jax.tree_util.tree_map(kept, state.opt),
        )
        return state, alive, weights, product(weights), n2, dl, imbalance(weights)

    state, alive, weights, end, n2, dl, imb = jax.vmap(scalars)(state, alive, p.diverge_norm2)

    def spectral(args):
        return spectral_record(*args, s)

    layer_rank, end_rank, sv, layer_sv = lanes_last_tiles(
        spectral, (weights, end, p.thr_layer, p.thr_end), s.tile
    )
    nan = jnp.asarray(jnp.nan, n2.dtype)

    def real(x):
        return jnp.where(alive.reshape(alive.shape + (1,) * (x.ndim - 1)), x, nan)

    def rank(x):
        return jnp.where(alive.reshape(alive.shape + (1,) * (x.ndim - 1)), x, -1)

    return state, Record(
        rank=rank(network_rank(layer_rank, end_rank, s.rule)),
        layer_rank=rank(layer_rank),
        end_rank=rank(end_rank),
        sv=real(sv),
        loss=real(dl + lam * n2),
        data_loss=real(dl),
        param_norm2=real(n2),
        imbalance=real(imb),
        alive=alive,
        layer_sv=real(layer_sv),
    )
