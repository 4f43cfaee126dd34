"""Deep linear networks: init, end-to-end product, loss, entry-wise gradient, balancedness.

Weights are a tuple ``(W_1, ..., W_L)`` with W_1 of shape (width, d_in), W_2..W_{L-1} of shape
(width, width) and W_L of shape (d_out, width); depth 1 is a single (d_out, d_in) matrix. The
end-to-end matrix is A_theta = W_L ... W_1. Everything works on ONE network; batching is vmap's job.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

__all__ = [
    "Weights",
    "data_loss",
    "entry_grad",
    "entry_sharpness",
    "entry_vectors",
    "halving_sum",
    "imbalance",
    "init_balanced",
    "init_gaussian",
    "layer_shapes",
    "loss",
    "param_norm2",
    "sharpness",
    "product",
    "representation_cost",
]

Weights = tuple[Float[Array, "m n"], ...]


def layer_shapes(d_out: int, d_in: int, width: int, depth: int) -> tuple[tuple[int, int], ...]:
    """Shapes (rows, cols) of W_1 .. W_L."""
    dims = [d_in] + [width] * (depth - 1) + [d_out]
    return tuple((dims[l + 1], dims[l]) for l in range(depth))


def init_gaussian(key: Array, shapes, scale: float, dtype=jnp.float32) -> Weights:
    """W_l entries i.i.d. N(0, scale^2 / fan_in)."""
    keys = jax.random.split(key, len(shapes))
    return tuple(
        jax.random.normal(k, s, dtype) * jnp.asarray(scale / jnp.sqrt(s[1]), dtype)
        for k, s in zip(keys, shapes, strict=True)
    )


def _orthonormal_stack(key: Array, dims, k: int, dtype) -> list:
    """Haar-random n x k orthonormal matrices, one for each n in dims.

    Modified Gram-Schmidt on Gaussian columns (the Q of a QR with positive diagonal, hence
    Haar-distributed), in plain jax.numpy: no LAPACK call (see :mod:`rankjump.model.spectra`).
    """
    keys = jax.random.split(key, len(dims))
    out = []
    for kk, d in zip(keys, dims, strict=True):
        g = jax.random.normal(kk, (d, k), dtype)
        cols = []
        for c in range(k):
            v = g[:, c]
            for u in cols:
                v = v - jnp.dot(u, v) * u
            cols.append(v / jnp.linalg.norm(v))
        out.append(jnp.stack(cols, axis=1))
    return out


def init_balanced(key: Array, shapes, rank: int, scale: float, dtype=jnp.float32) -> Weights:
    """Exactly balanced rank-``rank`` weights with every per-layer singular value ``scale``.

    W_l = U_{l+1} (scale I_rank) U_l^T with random orthonormal U_1 (d_in x rank), ...,
    U_{L+1} (d_out x rank), so W_{l+1}^T W_{l+1} = W_l W_l^T and A_theta = scale^L U_{L+1} U_1^T.
    """
    dims = [shapes[0][1]] + [s[0] for s in shapes]
    us = _orthonormal_stack(key, dims, rank, dtype)
    return tuple(jnp.asarray(scale, dtype) * us[l + 1] @ us[l].T for l in range(len(shapes)))


def product(weights: Weights) -> Float[Array, "d_out d_in"]:
    """A_theta = W_L ... W_1."""
    a = weights[0]
    for w in weights[1:]:
        a = jnp.matmul(w, a, precision=jax.lax.Precision.HIGHEST)
    return a


def data_loss(
    weights: Weights, rows: Int[Array, " N"], cols: Int[Array, " N"], y: Float[Array, " N"]
) -> Float[Array, ""]:
    """(1/N) sum over the given entries of (A_theta[i, j] - y_ij)^2."""
    a = product(weights)
    return halving_sum((a[rows, cols] - y) ** 2) / y.shape[-1]


def halving_sum(x: Float[Array, "*batch n"]) -> Float[Array, "*batch"]:
    """Sum over the last axis by repeated halving (zero-padded to a power of two): a fixed order
    of additions, so every compiled program that contains it rounds alike (XLA may reassociate a
    reduction differently from one program to another)."""
    n = x.shape[-1]
    size = 1 << max(n - 1, 0).bit_length()
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, size - n)])
    while x.shape[-1] > 1:
        half = x.shape[-1] // 2
        x = x[..., :half] + x[..., half:]
    return x[..., 0]


def param_norm2(weights: Weights) -> Float[Array, ""]:
    """||theta||^2 = sum_l ||W_l||_F^2."""
    return sum(jnp.sum(w * w) for w in weights)


def loss(weights: Weights, rows, cols, y, lam) -> Float[Array, ""]:
    """L_lam(theta) = data loss + lam * ||theta||^2 (docs/theory.md)."""
    return data_loss(weights, rows, cols, y) + lam * param_norm2(weights)


def entry_vectors(weights: Weights, i, j):
    """The vectors of the entry-wise gradient (docs/theory.md): dA[i, j]/dW_l = a_l b_l^T.

    Returns:
        ``(pred, a, b)``: pred = A_theta[i, j]; a[l] = (e_i^T W_L ... W_{l+2})^T and
        b[l] = W_l ... W_1 e_j for layer index l = 0..L-1 (0-based, so a[l], b[l] belong to
        W_{l+1}); b[0] = e_j and a[L-1] = e_i. Cost O(L * width * d): A_theta is never formed,
        column j of W_1 and row i of W_L are read (gathers), and pred = a[L-2] . b[L-1].
    """
    depth = len(weights)
    b = [jnp.zeros(weights[0].shape[1], weights[0].dtype).at[j].set(1)] + [None] * (depth - 1)
    a = [None] * (depth - 1) + [jnp.zeros(weights[-1].shape[0], weights[-1].dtype).at[i].set(1)]
    if depth == 1:
        return weights[0][i, j], tuple(a), tuple(b)
    col = weights[0][:, j]  # b for W_2: a gather
    for l in range(1, depth):
        b[l] = col
        if l < depth - 1:
            col = weights[l] @ col
    row = weights[-1][i, :]  # a for W_{L-1}: a gather
    for l in range(depth - 2, -1, -1):
        a[l] = row
        if l > 0:
            row = weights[l].T @ row
    return jnp.dot(a[-2], b[-1]), tuple(a), tuple(b)


def entry_grad(weights: Weights, i, j, y) -> tuple[Float[Array, ""], Weights]:
    """Residual r = A[i, j] - y and the gradient of (A[i, j] - y)^2: 2 r a_l b_l^T per layer."""
    pred, a, b = entry_vectors(weights, i, j)
    r = pred - y
    return r, tuple(2 * r * jnp.outer(al, bl) for al, bl in zip(a, b, strict=True))


def entry_sharpness(weights: Weights, i, j) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(A[i, j], h) with h = ||dA[i, j] / dtheta||^2 = sum_l ||a_l||^2 ||b_l||^2.

    A single-entry SGD step on e = (i, j) moves every W_l by -2 eta r_e a_l b_l^T, so to first
    order it turns the residual r_e into (1 - 2 eta h_e) r_e: the step flips the residual's sign
    when eta h_e > 1/2 and amplifies it when eta h_e > 1 (the edge of stability,
    :func:`rankjump.simulation.starts.eta_edge`; docs/theory.md, section 6).
    """
    pred, a, b = entry_vectors(weights, i, j)
    return pred, sharpness(a, b)


def sharpness(a, b) -> Float[Array, "*batch"]:
    """h = sum_l ||a_l||^2 ||b_l||^2 from the vectors of :func:`entry_vectors` (over their last
    axis, so entries batched in front are kept apart)."""
    return sum(jnp.sum(al * al, -1) * jnp.sum(bl * bl, -1) for al, bl in zip(a, b, strict=True))


def imbalance(weights: Weights) -> Float[Array, ""]:
    """sqrt(sum_l ||W_{l+1}^T W_{l+1} - W_l W_l^T||_F^2); zero for balanced networks."""
    total = jnp.zeros((), weights[0].dtype)
    for lo, hi in zip(weights[:-1], weights[1:], strict=True):
        d = hi.T @ hi - lo @ lo.T
        total = total + jnp.sum(d * d)
    return jnp.sqrt(total)


def representation_cost(a: Float[Array, "d_out d_in"], depth: int) -> Float[Array, ""]:
    """L * sum_k s_k(A)^(2/L): min ||theta||^2 over depth-L factorizations of A (docs/theory.md)."""
    s = jnp.linalg.svd(a, compute_uv=False)
    return depth * jnp.sum(s ** (2.0 / depth))
