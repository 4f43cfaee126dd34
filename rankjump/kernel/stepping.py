"""Stepping a chunk of lanes through one checkpoint interval.

Between checkpoints the entry-wise kinds step the chunk with the lane axis LAST (the kind's
fast equal, :func:`rankjump.dynamics.layout`), on the CPU in cache tiles of lanes; the carry
between intervals keeps lanes FIRST, the layout the checkpoint records want.

A lane's path depends only on its key and the global step: the sample of step n depends only on
``key_dyn`` and n (:attr:`rankjump.dynamics.Dynamics.draw_steps`), and the lazy weight-decay
scale is renormalized by powers of two only (:func:`rankjump.dynamics.renormalize`, exact), so
neither ``record_every``, the block of steps drawn at once, the tiles nor the chunk change a
single bit of a trajectory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rankjump.dynamics import Hyper, State, TaskArrays, renormalize
from rankjump.kernel.layout import UNROLL, tile_for
from rankjump.kernel.types import Structure

__all__ = ["advance", "interval"]


def interval(state: State, key_dyn, hyper: Hyper, task: TaskArrays, s: Structure) -> State:
    """``record_every`` steps of a chunk of lanes, each lane from its own global step
    ``state.step``: blocks of steps whose samples are drawn at once, the lazy scale renormalized
    after each (exactly). ``state`` is in the dynamics' chunk layout
    (:attr:`rankjump.dynamics.Dynamics.lanes_last`); ``key_dyn`` and ``hyper`` hold one value
    per lane. Lane t's step n is drawn from ``key_dyn[t]`` and n alone, whatever the chunk, the
    block, ``record_every`` or the steps of the other lanes (splitting advances lanes that are
    at different steps together)."""
    dyn = s.dynamics(task)
    lane_axis = -1 if dyn.lanes_last else 1  # of each step's sample
    renormalize_lanes = renormalize if dyn.lanes_last else jax.vmap(renormalize)

    offsets = jnp.arange(s.block, dtype=jnp.int32)

    def block(state: State, _):
        samples = jax.vmap(lambda kd, n: dyn.draw_steps(kd, n + offsets))(key_dyn, state.step)
        samples = jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, 0, lane_axis), samples)
        state, _ = jax.lax.scan(
            lambda st, x: (dyn.update_lanes(x, st, hyper), None), state, samples, unroll=UNROLL
        )
        return renormalize_lanes(state), None

    return jax.lax.scan(block, state, jnp.arange(s.record_every // s.block))[0]


def advance(state: State, key_dyn, hyper: Hyper, task: TaskArrays, s: Structure) -> State:
    """One interval of a chunk whose state is lanes FIRST (as the records want it), each lane
    from its own ``state.step``.

    Lanes-last kinds step tiles of ``s.tile`` lanes (:func:`rankjump.kernel.layout.tile_for`),
    one after the other, so that a tile's weights stay in cache for the whole interval (the
    chunk is padded with copies of its last lane to whole tiles, and the copies dropped).
    """
    n = key_dyn.shape[0]
    if not s.layout.lanes_last:
        return interval(state, key_dyn, hyper, task, s)
    tile = tile_for(n, s.tile)
    n_tiles = -(-n // tile)
    pad = n_tiles * tile - n

    def tiles(x, last=True):
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
        x = x.reshape(n_tiles, tile, *x.shape[1:])
        return jnp.moveaxis(x, 1, -1) if last else x

    def untile(x):
        x = jnp.moveaxis(x, -1, 1)
        return x.reshape(n_tiles * tile, *x.shape[2:])[:n]

    def one(args):
        st, kd, hy = args
        return interval(st, kd, hy, task, s)

    args = (
        jax.tree_util.tree_map(tiles, state),
        tiles(key_dyn, last=False),
        jax.tree_util.tree_map(tiles, hyper),
    )
    if n_tiles == 1:
        out = one(jax.tree_util.tree_map(lambda x: x[0], args))
        return jax.tree_util.tree_map(lambda x: untile(x[None]), out)
    return jax.tree_util.tree_map(untile, jax.lax.map(one, args))
