"""How the flux method (:mod:`rankjump.rare_events.flux`) looks at its paths: kicked, back in
the basin, in B_target, healthy.

Kicks and the basin are decided for every lane by eigenvalue counts of each layer's Gram matrix
W^T W (:func:`count_above`), without spectra; B_target and a kick's depth by the simulator's own
spectra (:mod:`rankjump.model.spectra`), on the few lanes that kicked or whose every layer's value
is below :data:`DEEP` of its start (B_target lies far below: the rank threshold is about 4e-4 of
the start value in the demo's setting).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rankjump.rare_events.network import NetworkProcess
from rankjump.rare_events.splitting import padded_size

__all__ = ["DEEP", "Looks", "count_above", "take"]

DEEP = 0.01  # a lane whose every layer's value is below DEEP of its start is checked for B_target


class Looks:
    """Looks at lanes-first states of ``network``: kicked (some layer's value at or below
    ``kick`` of its start value), in the basin A (every layer's at or above ``basin`` of it), in
    B_target, healthy; and the kicked lanes' depth (their lowest layer value over its start)."""

    def __init__(self, network: NetworkProcess, kick: float, basin: float):
        layers, weights_of, s0 = network._layers, network._weights, network._start_values
        target = network.target_rank
        fractions = jnp.asarray([kick, basin, DEEP])

        def cheap(weights, scale):
            ws, ok = weights_of(weights, scale)
            # (L, 3, n): each layer's count of singular values above kick, basin and DEEP times
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
        size = padded_size(len(lanes))
        sub = take(state, np.concatenate([lanes, np.full(size - len(lanes), lanes[-1])]))
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


def take(state, index):
    """Lanes ``index`` of a state, on the host."""
    return jax.tree.map(lambda x: np.asarray(x)[index], state)
