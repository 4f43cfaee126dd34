"""Singular values by one-sided (Hestenes) Jacobi, in plain jax.numpy.

Checkpoints need singular values of many small matrices inside jit(vmap(scan)). On the CPU,
jaxlib's LAPACK kernels split a batch over XLA's intra-op thread pool and block waiting for it;
two such calls running side by side (two host devices, or two independent SVDs in one program)
can leave every worker waiting and the program never returns. This module uses no custom call,
so it cannot wedge the pool, it vectorizes over any batch, and it runs the same on CPU and GPU.

One-sided Jacobi orthogonalizes the columns of X by plane rotations, X <- X J; the singular
values are then the column norms. Pairs are visited in round-robin order (n - 1 rounds of n / 2
disjoint pairs a sweep). Convergence is quadratic; singular values come out with high relative
accuracy, small ones included.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["jacobi_singular_values", "round_robin_pairs"]


def round_robin_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n - 1, n / 2) index arrays p, q: every pair of 0..n-1 once, disjoint within a round."""
    order = list(range(n))
    ps, qs = [], []
    for _ in range(n - 1):
        ps.append([order[i] for i in range(n // 2)])
        qs.append([order[n - 1 - i] for i in range(n // 2)])
        order = [order[0], order[-1], *order[1:-1]]
    return np.asarray(ps), np.asarray(qs)


def _rotate(x, p, q):
    """One round: rotate columns p[k], q[k] of x (..., m, n) to make them orthogonal."""
    a, b = x[..., :, p], x[..., :, q]
    alpha = jnp.sum(a * a, axis=-2)
    beta = jnp.sum(b * b, axis=-2)
    gamma = jnp.sum(a * b, axis=-2)
    active = jnp.abs(gamma) > jnp.finfo(x.dtype).tiny
    safe = jnp.where(active, gamma, 1.0)
    zeta = (beta - alpha) / (2.0 * safe)
    t = jnp.sign(zeta) / (jnp.abs(zeta) + jnp.sqrt(1.0 + zeta * zeta))
    t = jnp.where(active, jnp.where(zeta == 0, 1.0, t), 0.0)
    c = jax.lax.rsqrt(1.0 + t * t)
    s = c * t
    c, s = c[..., None, :], s[..., None, :]
    x = x.at[..., :, p].set(c * a - s * b)
    off = jnp.abs(gamma) / jnp.sqrt(jnp.maximum(alpha * beta, jnp.finfo(x.dtype).tiny))
    return x.at[..., :, q].set(s * a + c * b), jnp.max(off)


def jacobi_singular_values(x, max_sweeps: int = 40):
    """Singular values of x (..., m, n), descending, length min(m, n).

    Sweeps (each visits every column pair once) repeat until every pair's cosine
    |a.b| / (|a| |b|) is below 4 * eps of the dtype, or ``max_sweeps`` have run (a vmapped call
    runs until its slowest member has converged).
    """
    m, n = x.shape[-2:]
    if n > m:  # rotate the side with fewer columns
        x = jnp.swapaxes(x, -1, -2)
        m, n = n, m
    if n == 1:
        return jnp.sqrt(jnp.sum(x * x, axis=-2))
    size = n + (n % 2)
    if size != n:
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, 1)])
    ps, qs = (jnp.asarray(a) for a in round_robin_pairs(size))
    tol = 4.0 * jnp.finfo(x.dtype).eps

    def sweep(carry):
        x, k, _ = carry

        def one(x, pq):
            return _rotate(x, pq[0], pq[1])

        x, offs = jax.lax.scan(one, x, (ps, qs))
        return x, k + 1, jnp.max(offs)

    def more(carry):
        _, k, off = carry
        return (off > tol) & (k < max_sweeps)

    inf = jnp.asarray(jnp.inf, x.dtype)
    x, _, _ = jax.lax.while_loop(more, sweep, (x, jnp.zeros((), jnp.int32), inf))
    s = jnp.sqrt(jnp.sum(x * x, axis=-2))
    return -jnp.sort(-s, axis=-1)[..., :n]
