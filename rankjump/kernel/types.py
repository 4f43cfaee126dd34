"""The kernel's inputs and outputs: the static :class:`Structure`, the traced per-lane
:class:`LaneParams`, and the per-checkpoint :class:`Record` (returned, never carried)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rankjump.dynamics import Dynamics, Hyper, Layout, TaskArrays, layout, make_dynamics
from rankjump.dynamics.types import lane_array

__all__ = ["LaneParams", "Record", "Structure", "new_lane_params"]


class Structure(NamedTuple):
    """Static settings: they pick the compiled program (hashable). Made from a configuration
    by :func:`rankjump.simulation.plan.structure_for`."""

    kind: str
    shapes: tuple
    batch_size: int
    n_intervals: int
    record_every: int
    block: int
    dtype: str
    k_max: int
    init: str  # "gaussian" | "balanced" (drawn per trajectory) | "given" (a start per lane)
    init_rank: int
    n_phases: int = 1  # constant phases of the lam / eta schedule
    tile: int = 0  # lanes stepped together while their weights stay in cache (0: the whole chunk)
    platform: str = "cpu"  # of the devices the program runs on
    rule: str = "all_layers"  # the rank rule (rankjump.model.ranks.RULES)
    layer_sv: bool = False  # record the per-layer singular values (replays)

    @property
    def layout(self) -> Layout:
        """How a chunk steps (:func:`rankjump.dynamics.layout`)."""
        return layout(self.kind, self.batch_size, self.platform)

    def dynamics(self, task: TaskArrays) -> Dynamics:
        """The step kind on the observed entries ``task``."""
        return make_dynamics(self.kind, task, self.shapes, self.batch_size, jnp.dtype(self.dtype))


class LaneParams(NamedTuple):
    """Traced per-lane values; ``hyper.lam`` and ``hyper.eta`` hold one value per phase."""

    hyper: Hyper
    thr_layer: jax.Array
    thr_end: jax.Array
    init_scale: jax.Array
    diverge_norm2: jax.Array


def new_lane_params(
    *, hyper: Hyper, thr_layer, thr_end, init_scale, diverge_norm2, dtype, lanes=()
) -> LaneParams:
    """Per-lane values as arrays of ``dtype``, scalars broadcast to the lane shape ``lanes``
    (``hyper`` from :func:`rankjump.dynamics.new_hyper` with the same lanes)."""

    return LaneParams(
        hyper=hyper,
        thr_layer=lane_array(thr_layer, dtype, lanes),
        thr_end=lane_array(thr_end, dtype, lanes),
        init_scale=lane_array(init_scale, dtype, lanes),
        diverge_norm2=lane_array(diverge_norm2, dtype, lanes),
    )


class Record(NamedTuple):
    """What one checkpoint records for one trajectory (returned, never carried)."""

    rank: jax.Array
    layer_rank: jax.Array
    end_rank: jax.Array
    sv: jax.Array
    loss: jax.Array
    data_loss: jax.Array
    param_norm2: jax.Array
    imbalance: jax.Array
    alive: jax.Array
    layer_sv: jax.Array  # (layer, largest layer rank) singular values; (layer, 0) unless asked
