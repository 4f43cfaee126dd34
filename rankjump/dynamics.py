"""One step of SGD, GD, label-noise SGD or Langevin dynamics, on one network or a chunk.

Every kind is a :class:`Dynamics`: ``draw_steps(key, steps)`` samples the randomness of the
given global steps of one trajectory at once (entry indices, label or weight noise), and the
sample of step n depends only on the key and n (counter-based: see :func:`_entry_indices`), so a
path does not depend on how its steps are grouped; ``update(sample, state, hyper)`` applies one
step to ONE network; ``step(key, state, hyper)`` is the two together, the pure key-first
signature. ``update_lanes`` steps a chunk of networks at once; the simulator uses it.

The state keeps the weights as ``scale * M_l`` with one scalar ``scale`` for all layers (lazy
weight decay): the decay (1 - 2 eta lam) is a scalar multiply, and the entry-wise kernel never
forms A_theta: it needs column j of W_1, row i of W_L and rank-one updates (docs/theory.md).
``renormalize`` moves the scale's power of two into the weights, which is exact in floating
point, so when the simulator renormalizes changes no bit of the path. With a trailing lane axis
(the entry-wise chunk layout) ``materialize`` and ``renormalize`` broadcast the per-lane
scale.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax
from jax.extend.random import threefry_2x32
from jaxtyping import Array

from rankjump.network import Weights, data_loss

__all__ = [
    "Dynamics",
    "Hyper",
    "State",
    "TaskArrays",
    "lanes_last",
    "make_dynamics",
    "materialize",
    "new_state",
    "optax_chain",
    "renormalize",
]


class Hyper(NamedTuple):
    """Numeric hyperparameters: traced arrays, so one compiled program serves a whole grid."""

    lam: Array
    eta: Array
    label_noise: Array
    temperature: Array


class State(NamedTuple):
    """One network's state: W_l = scale * weights[l]."""

    weights: Weights
    scale: Array
    step: Array


class TaskArrays(NamedTuple):
    """Observed entries as device arrays: rows, cols (int32), targets y (N,)."""

    rows: Array
    cols: Array
    y: Array

    @classmethod
    def of(cls, task, dtype) -> TaskArrays:
        """A task's observed entries (``rankjump.tasks.Task``) as arrays, targets in ``dtype``."""
        return cls(jnp.asarray(task.rows), jnp.asarray(task.cols), jnp.asarray(task.y, dtype))


class _Update(Protocol):
    def __call__(self, sample: Any, state: State, hyper: Hyper) -> State: ...


class Dynamics(NamedTuple):
    """A step kind: ``draw_steps(key, steps)`` -> the samples of those global steps (leading
    axis); ``update`` applies one.

    ``update_lanes`` applies one step to a chunk of networks stacked along a lane axis: the LAST
    axis of every array when ``lanes_last`` (the entry-wise kinds), else the first (a vmap of
    ``update``: the dense kinds, whose matrix products batch well that way).
    """

    draw_steps: Any
    update: _Update
    update_lanes: _Update
    lanes_last: bool

    def draw(self, key: Array, n: int) -> Any:
        """The samples of steps 0 .. n - 1 (leading axis n)."""
        return self.draw_steps(key, jnp.arange(n, dtype=jnp.uint32))

    def step(self, key: Array, state: State, hyper: Hyper) -> State:
        """One step with fresh randomness from ``key``."""
        sample = jax.tree_util.tree_map(lambda x: x[0], self.draw(key, 1))
        return self.update(sample, state, hyper)


def new_state(weights: Weights) -> State:
    """A state holding the given (materialized) weights."""
    dtype = weights[0].dtype
    return State(tuple(weights), jnp.ones((), dtype), jnp.zeros((), jnp.int32))


def materialize(state: State) -> Weights:
    """The actual weights W_l = scale * M_l."""
    return tuple(state.scale * m for m in state.weights)


def renormalize(state: State) -> State:
    """Move the lazy scale's power of two into the weights: scale = m 2^e becomes m in [0.5, 1)
    and M_l becomes 2^e M_l. Both are exact in floating point (short of subnormal numbers), and
    the step's arithmetic is exactly equivariant under such a rescaling, so renormalizing at any
    step leaves the path bit for bit unchanged."""
    mantissa, exponent = jnp.frexp(state.scale)
    power = jnp.ldexp(jnp.ones_like(state.scale), exponent)
    return State(tuple(power * m for m in state.weights), mantissa, state.step)


def optax_chain(lam, eta) -> optax.GradientTransformation:
    """The generic update: weight decay 2*lam*W (the gradient of lam ||W||^2), then sgd(eta)."""
    return optax.chain(optax.add_decayed_weights(2.0 * lam), optax.sgd(eta))


def _one_hot(idx, n: int, dtype):
    """(batch, lanes) indices -> (batch, n, lanes) one-hot rows."""
    return (jnp.arange(n)[:, None] == idx[:, None, :]).astype(dtype)


def _matvec(m, v):
    """Lanes-last W v: m (rows, cols, lanes), v (batch, cols, lanes) -> (batch, rows, lanes)."""
    return jnp.sum(m[None] * v[:, None], axis=2)


def _rmatvec(m, u):
    """Lanes-last W^T u: m (rows, cols, lanes), u (batch, rows, lanes) -> (batch, cols, lanes)."""
    return jnp.sum(m[None] * u[:, :, None], axis=1)


def _outer(g, a, b):
    """Lanes-last sum_batch g a b^T: g (batch, lanes), a (batch, rows, lanes), b (batch, cols,
    lanes) -> (rows, cols, lanes)."""
    return jnp.sum(g[:, None, None] * a[:, :, None] * b[:, None, :], axis=0)


def _entry_update_lanes(task: TaskArrays, depth: int, batch: int, label_noise: bool) -> _Update:
    """The entry-wise SGD step on B sampled entries for a chunk of networks, lanes LAST.

    Every array carries the lane (network) axis last: weights (rows, cols, lanes), scale,
    hyperparameters (lanes,), samples (B, lanes). The step is then a handful of element-wise
    multiply-reduce loops over contiguous lanes, which XLA vectorizes across networks (a vmap of
    the one-network step makes tiny per-network matrix-vector products instead). Column j of W_1
    and row i of W_L are read and written through one-hot vectors, which costs a pass over those
    layers but keeps every access contiguous (gathers and scatters are slower here).

    With unscaled vectors a_l, b_l (docs/theory.md's a_l, b_l up to powers of ``scale`` c), the
    prediction is c^L * a_l . M_l b_l, and W <- (1 - 2 eta lam) W - (2 eta / B) sum r a b^T
    becomes c' = (1 - 2 eta lam) c, M_l -= g a_l b_l^T with g = 2 eta r c^(L-2) / (B (1 - 2 eta
    lam)). Forward and backward chains cost 2 (L - 2) matrix-vector products, the updates L - 2
    rank-one updates plus the first and last layers.
    """

    def update(sample, state: State, hyper: Hyper) -> State:
        idx, xi = sample
        m, c = state.weights, state.scale
        dtype = m[0].dtype
        y = task.y[idx]
        if label_noise:
            y = y + hyper.label_noise * xi
        e_i = _one_hot(task.rows[idx], m[-1].shape[0], dtype)  # (B, d_out, lanes)
        e_j = _one_hot(task.cols[idx], m[0].shape[1], dtype)  # (B, d_in, lanes)
        decay = 1.0 - 2.0 * hyper.eta * hyper.lam
        if depth == 1:
            pred_u = jnp.sum(e_i * _matvec(m[0], e_j), axis=1)
            r = c * pred_u - y
            g = 2.0 * hyper.eta * r / (batch * c * decay)
            return State((m[0] - _outer(g, e_i, e_j),), decay * c, state.step + 1)
        fwd = [_matvec(m[0], e_j)]  # b of W_2 .. W_L (unscaled)
        for l in range(1, depth - 1):
            fwd.append(_matvec(m[l], fwd[-1]))
        bwd = [_rmatvec(m[-1], e_i)]  # a of W_{L-1} .. W_1 (unscaled)
        for l in range(depth - 2, 0, -1):
            bwd.append(_rmatvec(m[l], bwd[-1]))
        pred_u = jnp.sum(bwd[0] * fwd[-1], axis=1)  # (B, lanes)
        bwd = bwd[::-1]
        r = c**depth * pred_u - y
        g = 2.0 * hyper.eta * r * c ** (depth - 2) / (batch * decay)
        new = [m[0] - _outer(g, bwd[0], e_j)]
        for l in range(1, depth - 1):
            new.append(m[l] - _outer(g, bwd[l], fwd[l - 1]))
        new.append(m[-1] - _outer(g, e_i, fwd[-1]))
        return State(tuple(new), decay * c, state.step + 1)

    return update


def _entry_update(task: TaskArrays, depth: int, batch: int, label_noise: bool) -> _Update:
    """The entry-wise SGD step of ONE network on B sampled entries, by gathers and small matrix
    products: batched over lanes with vmap, the better layout for large batches (B > 16).

    With unscaled vectors a_l, b_l (docs/theory.md's a_l, b_l up to powers of ``scale`` c), the
    prediction is c^L * a_l . M_l b_l, and W <- (1 - 2 eta lam) W - (2 eta / B) sum r a b^T
    becomes c' = (1 - 2 eta lam) c, M_l -= g a_l b_l^T with g = 2 eta r c^(L-2) / (B (1 - 2 eta
    lam)). Forward and backward chains cost 2 (L - 2) matvecs, the updates (L - 2) rank-one
    updates plus O(width) for the first and last layers.
    """

    def update(sample, state: State, hyper: Hyper) -> State:
        idx, xi = sample
        m, c = state.weights, state.scale
        i, j = task.rows[idx], task.cols[idx]
        y = task.y[idx]
        if label_noise:
            y = y + hyper.label_noise * xi
        decay = 1.0 - 2.0 * hyper.eta * hyper.lam
        if depth == 1:
            r = c * m[0][i, j] - y
            g = 2.0 * hyper.eta * r / (batch * c * decay)
            new = (m[0].at[i, j].add(-g),)
            return State(new, decay * c, state.step + 1)

        def vectors(i, j):
            fwd = [m[0][:, j]]  # b of W_2 .. W_L (unscaled)
            for l in range(1, depth - 1):
                fwd.append(m[l] @ fwd[-1])
            bwd = [m[-1][i, :]]  # a of W_{L-1} .. W_1 (unscaled)
            for l in range(depth - 2, 0, -1):
                bwd.append(m[l].T @ bwd[-1])
            return fwd, bwd[::-1], jnp.dot(bwd[0], fwd[-1])

        fwd, bwd, pred_u = jax.vmap(vectors)(i, j)  # each (B, width), pred_u (B,)
        r = c**depth * pred_u - y
        g = 2.0 * hyper.eta * r * c ** (depth - 2) / (batch * decay)
        new = [m[0].at[:, j].add(-(g[:, None] * bwd[0]).T)]
        for l in range(1, depth - 1):
            new.append(m[l] - jnp.einsum("b,bi,bj->ij", g, bwd[l], fwd[l - 1]))
        new.append(m[-1].at[i, :].add(-g[:, None] * fwd[-1]))
        return State(tuple(new), decay * c, state.step + 1)

    return update


def _one_network(update_lanes: _Update) -> _Update:
    """The step of ONE network from a lanes-last chunk step (a trailing lane axis of 1)."""

    def update(sample, state: State, hyper: Hyper) -> State:
        def add(x):
            return jnp.asarray(x)[..., None]

        out = update_lanes(
            jax.tree_util.tree_map(add, sample),
            jax.tree_util.tree_map(add, state),
            jax.tree_util.tree_map(add, hyper),
        )
        return jax.tree_util.tree_map(lambda x: x[..., 0], out)

    return update


def _dense_update(task: TaskArrays, langevin: bool) -> _Update:
    """Full-batch GD through the optax chain (plus isotropic noise for Langevin)."""

    def update(sample, state: State, hyper: Hyper) -> State:
        w = materialize(state)
        grads = jax.grad(data_loss)(w, task.rows, task.cols, task.y)
        opt = optax.inject_hyperparams(optax_chain)(lam=hyper.lam, eta=hyper.eta)
        updates, _ = opt.update(grads, opt.init(w), w)
        w = optax.apply_updates(w, updates)
        if langevin:
            amp = jnp.sqrt(2.0 * hyper.eta * hyper.temperature)
            w = tuple(wl + amp * xl for wl, xl in zip(w, sample, strict=True))
        return State(tuple(w), jnp.ones_like(state.scale), state.step + 1)

    return update


def _entry_indices(key, steps, batch: int, n: int):
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


def _normals(key, steps, shape, dtype):
    """(len(steps), *shape) standard normals; step s's from ``fold_in(key, s)``."""
    return jax.vmap(lambda s: jax.random.normal(jax.random.fold_in(key, s), shape, dtype))(steps)


def _raw_key(key):
    """The uint32[2] data of a Threefry key (typed or raw)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


LANES_LAST_MAX_BATCH = 16  # measured at d = 20, depth 4: 1.6x at B = 16, 0.7x at B = 64


def lanes_last(kind: str, batch_size: int) -> bool:
    """Whether a chunk of this kind steps lanes-last: the entry-wise kinds with small batches.
    Larger batches and the dense kinds batch better as per-network matrix products (vmap)."""
    return kind in ("sgd", "label_noise") and batch_size <= LANES_LAST_MAX_BATCH


def make_dynamics(kind: str, task: TaskArrays, shapes, batch_size: int, dtype) -> Dynamics:
    """Build a step kind: "sgd", "label_noise", "gd" or "langevin".

    Args:
        kind: the dynamics.
        task: observed entries (rows, cols, y as arrays of ``dtype``).
        shapes: layer shapes (rows, cols) of W_1 .. W_L.
        batch_size: B, entries per SGD step (drawn uniformly with replacement).
        dtype: floating dtype of the weights.
    """
    n_obs = task.y.shape[0]
    depth = len(shapes)
    if kind in ("sgd", "label_noise"):
        noisy = kind == "label_noise"

        def draw(key, steps):
            if not noisy:
                idx = _entry_indices(key, steps, batch_size, n_obs)
                return idx, jnp.zeros((steps.shape[0], 0), dtype)
            key_idx, key_noise = jax.random.split(key)
            return _entry_indices(key_idx, steps, batch_size, n_obs), _normals(
                key_noise, steps, (batch_size,), dtype
            )

        if lanes_last(kind, batch_size):
            lanes = _entry_update_lanes(task, depth, batch_size, noisy)
            return Dynamics(draw, _one_network(lanes), lanes, True)
        one = _entry_update(task, depth, batch_size, noisy)
        return Dynamics(draw, one, jax.vmap(one), False)
    if kind in ("gd", "langevin"):
        langevin = kind == "langevin"

        def draw(key, steps):
            if not langevin:
                return jnp.zeros((steps.shape[0], 0), dtype)
            keys = jax.random.split(key, depth)
            return tuple(_normals(k, steps, s, dtype) for k, s in zip(keys, shapes, strict=True))

        one = _dense_update(task, langevin)
        return Dynamics(draw, one, jax.vmap(one), False)
    raise ValueError(f"optimizer.kind = {kind!r}: must be sgd | gd | label_noise | langevin")
