"""The step kinds by name, and the layout policy: how a chunk of each kind is stepped.

A new kind is a module of this package with a builder ``(task, shapes, batch_size, dtype,
lanes_last) -> Dynamics``, ONE line in :data:`BUILDERS`, and one in the table of kinds that the
rest of rankjump reads (:data:`rankjump.config.kinds.KINDS`: its name, label, and what
``rankjump rare`` makes of it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from rankjump.dynamics import dense, entrywise, momentum
from rankjump.dynamics.types import Dynamics, TaskArrays

__all__ = [
    "BUILDERS",
    "LANES_LAST_MAX_BATCH",
    "Kind",
    "Layout",
    "lanes_last",
    "layout",
    "make_dynamics",
]

LANES_LAST_MAX_BATCH = 16  # measured at d = 20, depth 4: 1.6x at B = 16, 0.7x at B = 64


class Kind(NamedTuple):
    """A step kind: its builder, and the largest batch its lanes-last fast equal is used for (0:
    it has none; chunks step as a vmap of the one-network step)."""

    build: Callable[..., Dynamics]
    lanes_last_max_batch: int


BUILDERS: dict[str, Kind] = {
    "sgd": Kind(entrywise.sgd, LANES_LAST_MAX_BATCH),
    "label_noise": Kind(entrywise.label_noise, LANES_LAST_MAX_BATCH),
    "gd": Kind(dense.gd, 0),
    "langevin": Kind(dense.langevin, 0),
    "sgd_momentum": Kind(momentum.heavy_ball, LANES_LAST_MAX_BATCH),
}


class Layout(NamedTuple):
    """How a chunk steps: ``lanes_last`` (the kind's fast equal, lane axis last) or a vmap of
    the one-network step; ``cache_tiles``: lanes-last on the CPU, in cache tiles of lanes with
    the XLA:CPU options tuned for its loops (:mod:`rankjump.kernel.layout`)."""

    lanes_last: bool
    cache_tiles: bool


def _kind(kind: str) -> Kind:
    if kind not in BUILDERS:
        raise ValueError(f"optimizer.kind = {kind!r}: must be {' | '.join(BUILDERS)}")
    return BUILDERS[kind]


def layout(kind: str, batch_size: int, platform: str = "cpu") -> Layout:
    """The layout policy, the one place it is decided: lanes-last for the kinds that have a
    fast equal at small batches (larger batches batch better as per-network matrix products),
    and cache tiles for those on the CPU (a GPU wants every lane in flight)."""
    last = batch_size <= _kind(kind).lanes_last_max_batch
    return Layout(lanes_last=last, cache_tiles=last and platform == "cpu")


def lanes_last(kind: str, batch_size: int) -> bool:
    """Whether a chunk of this kind steps lanes-last (:func:`layout`)."""
    return layout(kind, batch_size).lanes_last


def make_dynamics(kind: str, task: TaskArrays, shapes, batch_size: int, dtype) -> Dynamics:
    """Build a step kind by name (one of :data:`BUILDERS`).

    Args:
        kind: the dynamics.
        task: observed entries (rows, cols, y as arrays of ``dtype``).
        shapes: layer shapes (rows, cols) of W_1 .. W_L.
        batch_size: B, entries per SGD step (drawn uniformly with replacement).
        dtype: floating dtype of the weights.
    """
    return _kind(kind).build(task, shapes, batch_size, dtype, lanes_last(kind, batch_size))
