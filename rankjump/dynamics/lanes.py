"""Lanes-last building blocks: the entry-wise gradient's vectors for a chunk of networks.

Every array carries the lane (network) axis LAST: weights (rows, cols, lanes), scale and
hyperparameters (lanes,), per-step samples (B, lanes). A step is then a handful of element-wise
multiply-reduce loops over contiguous lanes, which XLA vectorizes across networks (a vmap of the
one-network step makes tiny per-network matrix-vector products instead). Column j of W_1 and row i
of W_L are read through one-hot vectors, which costs a pass over those layers but keeps every access
contiguous (gathers and scatters are slower here). :func:`entry_vectors_lanes` is the lanes-last
equal of :func:`rankjump.model.network.entry_vectors`, the one definition of the gradient.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["entry_vectors_lanes", "matvec", "one_hot", "outer", "rmatvec"]


def one_hot(idx, n: int, dtype):
    """(batch, lanes) indices -> (batch, n, lanes) one-hot rows."""
    return (jnp.arange(n)[:, None] == idx[:, None, :]).astype(dtype)


def matvec(m, v):
    """Lanes-last W v: m (rows, cols, lanes), v (batch, cols, lanes) -> (batch, rows, lanes)."""
    return jnp.sum(m[None] * v[:, None], axis=2)


def rmatvec(m, u):
    """Lanes-last W^T u: m (rows, cols, lanes), u (batch, rows, lanes) -> (batch, cols, lanes)."""
    return jnp.sum(m[None] * u[:, :, None], axis=1)


def outer(g, a, b):
    """Lanes-last sum_batch g a b^T: g (batch, lanes), a (batch, rows, lanes), b (batch, cols,
    lanes) -> (rows, cols, lanes)."""
    return jnp.sum(g[:, None, None] * a[:, :, None] * b[:, None, :], axis=0)


def entry_vectors_lanes(weights, rows, cols):
    """:func:`rankjump.model.network.entry_vectors` for B entries of each of a chunk of networks.

    Args:
        weights: W_1 .. W_L, each (rows, cols, lanes).
        rows, cols: (B, lanes) entry indices i, j.

    Returns:
        ``(pred, a, b)``: pred (B, lanes) = A_theta[i, j]; a[l] (B, rows of W_{l+1}, lanes) and
        b[l] (B, cols of W_{l+1}, lanes) with dA[i, j]/dW_{l+1} = a[l] b[l]^T, b[0] = e_j and
        a[L-1] = e_i. Forward and backward chains cost 2 (L - 2) matrix-vector products.
    """
    depth, dtype = len(weights), weights[0].dtype
    e_i = one_hot(rows, weights[-1].shape[0], dtype)  # (B, d_out, lanes)
    e_j = one_hot(cols, weights[0].shape[1], dtype)  # (B, d_in, lanes)
    if depth == 1:
        return jnp.sum(e_i * matvec(weights[0], e_j), axis=1), (e_i,), (e_j,)
    fwd = [matvec(weights[0], e_j)]  # b of W_2 .. W_L
    for l in range(1, depth - 1):
        fwd.append(matvec(weights[l], fwd[-1]))
    bwd = [rmatvec(weights[-1], e_i)]  # a of W_{L-1} .. W_1
    for l in range(depth - 2, 0, -1):
        bwd.append(rmatvec(weights[l], bwd[-1]))
    pred = jnp.sum(bwd[0] * fwd[-1], axis=1)
    return pred, (*bwd[::-1], e_i), (e_j, *fwd)
