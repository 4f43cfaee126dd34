"""Counter-based samples of the steps: the sample of global step n depends only on the key and n.

Entry indices come one Threefry-2x32 hash block each (counter (n, b) for entry b of step n), label
and Langevin noise from ``fold_in(key, n)``, so a path does not depend on how its steps are
grouped into blocks, chunks or checkpoint intervals (docs/theory.md, randomness).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.extend.random import threefry_2x32

__all__ = ["dense_draws", "entry_draws", "entry_indices", "normals"]


def entry_indices(key, steps, batch: int, n: int):
    """(len(steps), batch) indices uniform on [0, n) (the observed entries), counter-based:
    index b of step s comes from the Threefry-2x32 block of ``key`` at counter (s, b), its two
    32-bit words reduced as ``jax.random.randint`` reduces them. One block per index, whatever
    steps are drawn together (a ``fold_in`` per step would cost a second block)."""
    x0 = jnp.broadcast_to(jnp.asarray(steps, jnp.uint32)[:, None], (steps.shape[0], batch))
    x1 = jnp.broadcast_to(jnp.arange(batch, dtype=jnp.uint32), x0.shape)
    words = threefry_2x32(_raw_key(key), jnp.concatenate([x0.ravel(), x1.ravel()]))
    hi, lo = words.reshape(2, *x0.shape)
    span = jnp.uint32(n)
    multiplier = jnp.uint32((2**16 % n) ** 2 % 2**32 % n)  # 2^32 mod n as randint forms it
    return ((hi % span * multiplier + lo % span) % span).astype(jnp.int32)


def normals(key, steps, shape, dtype):
    """(len(steps), *shape) standard normals; step s's from ``fold_in(key, s)``."""
    return jax.vmap(lambda s: jax.random.normal(jax.random.fold_in(key, s), shape, dtype))(steps)


def _raw_key(key):
    """The uint32[2] data of a Threefry key (typed or raw)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def entry_draws(batch: int, n_obs: int, label_noise: bool, dtype):
    """``draw_steps`` of the entry-wise kinds: per step ``(idx, xi)``, B indices into the N
    observed entries and, with label noise, B standard normals (a (0,) array without; the
    indices then come from the key itself, with noise from a key split off it)."""

    def draw(key, steps):
        if not label_noise:
            idx = entry_indices(key, steps, batch, n_obs)
            return idx, jnp.zeros((steps.shape[0], 0), dtype)
        key_idx, key_noise = jax.random.split(key)
        idx = entry_indices(key_idx, steps, batch, n_obs)
        return idx, normals(key_noise, steps, (batch,), dtype)

    return draw


def dense_draws(shapes, langevin: bool, dtype):
    """``draw_steps`` of the full-batch kinds: nothing for GD (a (0,) array per step), one
    standard normal per weight for Langevin (layer l's from the l-th key split off the key)."""

    def draw(key, steps):
        if not langevin:
            return jnp.zeros((steps.shape[0], 0), dtype)
        keys = jax.random.split(key, len(shapes))
        return tuple(normals(k, steps, s, dtype) for k, s in zip(keys, shapes, strict=True))

    return draw
