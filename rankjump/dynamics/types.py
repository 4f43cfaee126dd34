"""The records every step kind shares: hyperparameters, state, observed entries, and a kind.

A :class:`State` is one network (or a chunk of networks stacked along a lane axis) with its
weights kept as ``scale * M_l`` (lazy weight decay, docs/theory.md) and the kind's optimizer
state (``opt``). Each record has ONE keyword constructor (:func:`new_state`, :func:`new_hyper`,
``TaskArrays.of``) that gives every leaf its dtype and lane shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array

from rankjump.model.network import Weights

if TYPE_CHECKING:
    from rankjump.config import Config

__all__ = [
    "Dynamics",
    "Hyper",
    "State",
    "TaskArrays",
    "lane_array",
    "materialize",
    "hyper_for",
    "new_hyper",
    "new_state",
    "renormalize",
]


class Hyper(NamedTuple):
    """Numeric hyperparameters: traced arrays, so one compiled program serves a whole grid."""

    lam: Array
    eta: Array
    label_noise: Array
    temperature: Array
    momentum: Array


class State(NamedTuple):
    """One network's state: W_l = scale * weights[l], the global step, and ``opt``, the kind's
    optimizer state (``()`` for the stateless kinds, the optax chain's state for GD and
    Langevin, the velocity per layer for heavy-ball momentum). A step returns the ``opt`` it
    was given, updated: no kind may drop it."""

    weights: Weights
    scale: Array
    step: Array
    opt: Any


class TaskArrays(NamedTuple):
    """Observed entries as device arrays: rows, cols (int32), targets y (N,)."""

    rows: Array
    cols: Array
    y: Array

    @classmethod
    def of(cls, task, dtype) -> TaskArrays:
        """A task's observed entries (``rankjump.model.tasks.Task``) as arrays, targets in
        ``dtype``."""
        return cls(
            rows=jnp.asarray(task.rows), cols=jnp.asarray(task.cols), y=jnp.asarray(task.y, dtype)
        )


def new_state(*, weights: Weights, scale=None, step=None, opt: Any = ()) -> State:
    """A state holding ``weights`` (one network, or lanes FIRST: every W_l of shape (*lanes,
    rows, cols)); ``scale`` defaults to 1, ``step`` to 0 and ``opt`` to no optimizer state, each
    broadcast to the lane shape. Kinds with an optimizer state start through
    :meth:`Dynamics.init`."""
    weights = tuple(jnp.asarray(w) for w in weights)
    lanes, dtype = weights[0].shape[:-2], weights[0].dtype
    scale = jnp.broadcast_to(jnp.asarray(1 if scale is None else scale, dtype), lanes)
    step = jnp.broadcast_to(jnp.asarray(0 if step is None else step, jnp.int32), lanes)
    return State(weights=weights, scale=scale, step=step, opt=opt)


def lane_array(x, dtype, lanes=()):
    """``x`` as an array of ``dtype`` broadcast to the lane shape ``lanes``, keeping any axes it
    has past them (a schedule's phases)."""
    x = jnp.asarray(x, dtype)
    return jnp.broadcast_to(x, tuple(lanes) + x.shape[len(lanes) :])


def new_hyper(
    *, lam, eta, label_noise=0.0, temperature=0.0, momentum=0.0, dtype, lanes=()
) -> Hyper:
    """Hyperparameters as arrays of ``dtype``, each broadcast to the lane shape ``lanes`` (()
    for one network, (n,) for a chunk); lam and eta keep a trailing phase axis if they have one
    (a schedule's values, :class:`rankjump.kernel.LaneParams`)."""
    return Hyper(
        lam=lane_array(lam, dtype, lanes),
        eta=lane_array(eta, dtype, lanes),
        label_noise=lane_array(label_noise, dtype, lanes),
        temperature=lane_array(temperature, dtype, lanes),
        momentum=lane_array(momentum, dtype, lanes),
    )


def hyper_for(cfg: Config, lam, eta, lanes=()) -> Hyper:
    """The hyperparameters of ``cfg`` at ``lam`` and ``eta`` (scalars, or per lane with a
    trailing phase axis for a schedule): the one place a configuration becomes a
    :class:`Hyper`, read by the simulator, the rare-event engine and the benchmark. Label noise,
    temperature and momentum come from ``optimizer``, the dtype from ``run.dtype``."""
    opt = cfg.optimizer
    return new_hyper(
        lam=lam,
        eta=eta,
        label_noise=opt.label_noise,
        temperature=opt.temperature,
        momentum=opt.momentum or 0.0,
        dtype=jnp.dtype(cfg.run.dtype),
        lanes=lanes,
    )


def materialize(state: State) -> Weights:
    """The actual weights W_l = scale * M_l (one network, or lanes LAST: the scale broadcasts
    over a trailing lane axis)."""
    return tuple(state.scale * m for m in state.weights)


def renormalize(state: State) -> State:
    """Move the lazy scale's power of two into the weights: scale = m 2^e becomes m in [0.5, 1)
    and M_l becomes 2^e M_l. Both are exact in floating point (short of subnormal numbers), and
    the step's arithmetic is exactly equivariant under such a rescaling, so renormalizing at any
    step leaves the path bit for bit unchanged. Works lanes LAST too (a trailing lane axis)."""
    mantissa, exponent = jnp.frexp(state.scale)
    power = jnp.ldexp(jnp.ones_like(state.scale), exponent)
    return state._replace(weights=tuple(power * m for m in state.weights), scale=mantissa)


Update = Callable[[Any, State, Hyper], State]


class Dynamics(NamedTuple):
    """A step kind, built by :func:`rankjump.dynamics.make_dynamics`.

    Attributes:
        draw_steps: ``(key, steps) -> samples`` of those global steps (leading step axis); the
            sample of step n depends only on the key and n.
        update: ``(sample, state, hyper) -> state``: one step of ONE network, the definition.
        update_lanes: the same step for a chunk of networks stacked on a lane axis: the LAST
            axis of every array when ``lanes_last`` (the kind's fast equal, tested equal to a
            vmap of ``update``), else the first (``jax.vmap(update)``).
        lanes_last: the chunk layout of ``update_lanes``.
        init_opt: ``weights -> opt``, the kind's optimizer state at the start.
    """

    draw_steps: Callable
    update: Update
    update_lanes: Update
    lanes_last: bool
    init_opt: Callable[[Weights], Any]

    @classmethod
    def of(cls, draw_steps, update, fast: Update | None = None, init_opt=None) -> Dynamics:
        """A kind from its one-network ``update`` and, when it has one, its lanes-last ``fast``
        equal (without one, chunks step as ``jax.vmap(update)``)."""
        return cls(
            draw_steps=draw_steps,
            update=update,
            update_lanes=jax.vmap(update) if fast is None else fast,
            lanes_last=fast is not None,
            init_opt=init_opt or (lambda weights: ()),
        )

    def init(self, weights: Weights, step=None) -> State:
        """The state of ONE network starting from (materialized) ``weights`` at ``step``."""
        weights = tuple(jnp.asarray(w) for w in weights)
        return new_state(weights=weights, step=step, opt=self.init_opt(weights))

    def draw(self, key: Array, n: int) -> Any:
        """The samples of steps 0 .. n - 1 (leading axis n)."""
        return self.draw_steps(key, jnp.arange(n, dtype=jnp.uint32))

    def step(self, key: Array, state: State, hyper: Hyper) -> State:
        """One step with fresh randomness from ``key``."""
        sample = jax.tree_util.tree_map(lambda x: x[0], self.draw(key, 1))
        return self.update(sample, state, hyper)
