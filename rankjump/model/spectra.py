"""Singular values for checkpoints without LAPACK: bidiagonalization and Sturm counts, lanes last.

A checkpoint needs, for every network of a chunk, how many singular values of each layer and
of A_theta lie above a threshold, and a few of A_theta's largest values. A full singular value
decomposition does far more than that, and on the CPU jaxlib runs it as a LAPACK call per
matrix that also blocks on XLA's thread pool (two such calls side by side, one per host device,
can deadlock). Here, in plain jax.numpy:

1. :func:`bidiagonal` reduces each matrix X (m x n, m >= n) to an upper bidiagonal B = Q^T X P
   by Householder reflections from left and right (Golub & Kahan 1965). B has the singular
   values of X, and the reduction is backward stable: they move by O(eps ||X||), as LAPACK's do.
2. :func:`count_above` counts the singular values of B below c by Sylvester's law of inertia:
   the number of negative pivots of B^T B - c^2 I = L D L^T, computed from B's own entries by
   the differential stationary qd transform (Rutishauser; Parlett & Dhillon), n divisions, with
   the relative accuracy of B's entries (B^T B is never formed, so nothing is squared away).
3. :func:`largest` finds the k largest values by bisection on those counts.

Every array carries the lane (network) axis LAST, so each step is an element-wise loop over
contiguous lanes (as the stepping, :mod:`rankjump.dynamics.lanes`); :func:`lanes_last_tiles`
runs a function over cache-sized tiles of a lanes-first chunk.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["bidiagonal", "count_above", "lanes_last_tiles", "largest", "selected", "stack_square"]


def _reflector(v, p):
    """Householder reflector of ``v`` (k, lanes...), zero above index ``p``, onto e_p:
    ``(alpha, u, s)`` with (I - s u u^T) v = alpha e_p and alpha = -sign(v_p) ||v|| (s = 0 when
    v = 0)."""
    tiny = jnp.finfo(v.dtype).tiny
    top = jax.lax.dynamic_index_in_dim(v, jnp.minimum(p, v.shape[0] - 1), 0, keepdims=False)
    alpha = -jnp.where(top >= 0, 1.0, -1.0).astype(v.dtype) * jnp.sqrt(jnp.sum(v * v, axis=0))
    at_p = (jnp.arange(v.shape[0]) == p).reshape((-1,) + (1,) * (v.ndim - 1))
    u = v - jnp.where(at_p, alpha, 0)
    beta = jnp.sum(u * u, axis=0)
    s = jnp.where(beta > tiny, 2.0 / jnp.where(beta > tiny, beta, 1.0), 0.0)
    return alpha, u, s


def bidiagonal(x, groups: int = 2):
    """Upper bidiagonal form of x (m, n, lanes...): ``(d, e)``, d (k, lanes...) on the diagonal
    and e (k - 1, lanes...) above it, k = min(m, n). Same dtype as ``x``.

    Step j reflects column j below the diagonal to zero from the left, then row j right of the
    superdiagonal from the right (the reflectors are applied, never stored). The steps run in
    ``groups`` loops, each on the trailing block left at its start with the finished rows and
    columns masked: with 2 groups about 1.7 times the arithmetic of shrinking the block at every
    step (measured no slower: the passes over the block, not the arithmetic, bound it), for a
    program two loop bodies long (unrolled steps compile for seconds).
    """
    if x.shape[0] < x.shape[1]:
        x = jnp.swapaxes(x, 0, 1)  # X^T has the same singular values
    n = x.shape[1]
    lanes = x.shape[2:]
    d = jnp.zeros((n, *lanes), x.dtype)
    e = jnp.zeros((n, *lanes), x.dtype)  # e[n - 1] stays 0 and is dropped
    size = -(-n // max(1, min(groups, n)))
    for j0 in range(0, n, size):
        steps = min(size, n - j0)
        block = x[j0:, j0:]
        block, d, e = jax.lax.fori_loop(
            0, steps, lambda i, c, j0=j0: _step(i, j0, *c), (block, d, e)
        )
        x = x.at[j0:, j0:].set(block)
    return d, e[: n - 1]


def _step(i, j0, x, d, e):
    """Step j0 + i of :func:`bidiagonal` on the trailing block ``x`` (rows and columns below i
    are finished and ignored)."""
    m, n = x.shape[:2]
    shape = (-1,) + (1,) * (x.ndim - 2)  # of a column or a row (index, lanes...)
    rows = jnp.arange(m).reshape(shape)
    cols = jnp.arange(n).reshape(shape)
    col = jnp.where(rows >= i, jax.lax.dynamic_index_in_dim(x, i, 1, keepdims=False), 0)
    alpha, u, s = _reflector(col, i)
    w = jnp.where(cols > i, jnp.sum(u[:, None] * x, axis=0), 0)  # u^T x, columns right of i
    x = x - (s * u)[:, None] * w[None]
    row = jnp.where(cols > i, jax.lax.dynamic_index_in_dim(x, i, 0, keepdims=False), 0)
    beta, v, t = _reflector(row, i + 1)
    z = jnp.where(rows > i, jnp.sum(x * v[None], axis=1), 0)  # x v, rows below i
    x = x - z[:, None] * (t * v)[None]
    d = jax.lax.dynamic_update_index_in_dim(d, alpha, j0 + i, 0)
    e = jax.lax.dynamic_update_index_in_dim(e, beta, j0 + i, 0)
    return x, d, e


def count_above(d, e, c):
    """Number of singular values of the bidiagonal (d, e) (lanes last) at or above ``c`` > 0
    (an array broadcasting against the lanes, extra leading axes allowed: one count each)."""
    return _count(d * d, e * e, c)


def _count(d2, e2, c):
    """Singular values >= c of the bidiagonal with squared entries d2 (k, ...), e2 (k - 1, ...):
    k minus the negative pivots D_i of B^T B - c^2 I = L D L^T, by the differential stationary
    qd transform (s = -c^2; D_i = d_i^2 + s; s = e_i^2 s / D_i - c^2), which works on the
    bidiagonal's own entries, so small singular values keep their relative accuracy."""
    tau = jnp.asarray(c, d2.dtype) ** 2
    # A zero pivot is moved off zero by pivmin, as LAPACK's dstebz does.
    pivmin = jnp.finfo(d2.dtype).tiny / jnp.finfo(d2.dtype).eps
    k = d2.shape[0]
    s = -tau
    neg = jnp.zeros(jnp.broadcast_shapes(tau.shape, d2.shape[1:]), jnp.int32)
    for i in range(k):
        pivot = d2[i] + s
        neg = neg + (pivot < 0)
        if i < k - 1:
            s = e2[i] * s / jnp.where(jnp.abs(pivot) < pivmin, -pivmin, pivot) - tau
    return k - neg


def largest(d, e, k: int):
    """The ``k`` largest singular values of the bidiagonal (d, e) (lanes last): (k, lanes...),
    descending, zero past min(m, n) (:func:`selected` of one matrix)."""
    return selected(d[:, None], e[:, None], [(0, j) for j in range(1, k + 1)])


def selected(d, e, which):
    """Chosen singular values of a stack of bidiagonals (d (k, M, lanes...), e (k - 1, M,
    lanes...)): ``which`` is a static sequence of (matrix, j) pairs, j = 1 the largest. Returns
    (len(which), lanes...): one bisection on Sturm counts for all of them, to the dtype's
    precision (absolute error about eps * s_1, the accuracy the bidiagonal form itself has)."""
    mats = np.array([m for m, _ in which])
    j = np.array([j for _, j in which]).reshape((-1,) + (1,) * (d.ndim - 2))
    return _bisect(jnp.abs(d)[:, mats], jnp.abs(e)[:, mats], jnp.asarray(j))


def _bisect(a, b, j):
    """The j-th largest singular value of each bidiagonal with entries |d| = a (k, J, ...) and
    |e| = b (k - 1, J, ...), j (J, 1...)."""
    k = a.shape[0]
    eps, tiny = jnp.finfo(a.dtype).eps, jnp.finfo(a.dtype).tiny
    # Every entry of B is at most s_1, and s_1 <= ||diag|| + ||superdiagonal||.
    big_a = jnp.max(a, axis=0)
    big_b = jnp.max(b, axis=0) if k > 1 else jnp.zeros_like(big_a)
    hi = (big_a + big_b) * (1 + 4 * eps) + tiny
    lo = jnp.where(j == 1, jnp.maximum(big_a, big_b) * (1 - 4 * eps), 0.0).astype(a.dtype)
    hi = jnp.broadcast_to(hi, lo.shape)
    a2, b2 = a * a, b * b

    def halve(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = _count(a2, b2, mid) >= j
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    steps = jnp.finfo(a.dtype).nmant + 2
    lo, hi = jax.lax.fori_loop(0, steps, halve, (lo, hi))
    return jnp.where(j <= k, 0.5 * (lo + hi), 0.0)


def stack_square(mats):
    """Matrices (rows, cols, lanes...) of any shapes zero-padded to one square size and stacked
    on axis 2, (n, n, M, lanes...): padding adds zero singular values and leaves the others."""
    n = max(max(m.shape[:2]) for m in mats)

    def pad(m):
        return jnp.pad(m, [(0, n - m.shape[0]), (0, n - m.shape[1])] + [(0, 0)] * (m.ndim - 2))

    return jnp.stack([pad(m) for m in mats], 2)


def lanes_last_tiles(fn, tree, tile: int):
    """``fn`` on a lanes-first pytree, run lanes last over tiles of ``tile`` lanes (the chunk is
    padded with copies of its last lane, dropped afterwards; ``tile`` 0: the whole chunk at
    once). ``fn`` takes and returns pytrees whose arrays have the lane axis last."""
    n = jax.tree_util.tree_leaves(tree)[0].shape[0]
    tile = n if not tile or tile >= n else tile
    n_tiles = -(-n // tile)
    pad = n_tiles * tile - n

    def split(x):
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
        return jnp.moveaxis(x.reshape(n_tiles, tile, *x.shape[1:]), 1, -1)

    def join(x):
        x = jnp.moveaxis(x, -1, 1)
        return x.reshape(n_tiles * tile, *x.shape[2:])[:n]

    tiles = jax.tree_util.tree_map(split, tree)
    if n_tiles == 1:
        out = fn(jax.tree_util.tree_map(lambda x: x[0], tiles))
        return jax.tree_util.tree_map(lambda x: join(x[None]), out)
    return jax.tree_util.tree_map(join, jax.lax.map(fn, tiles))
