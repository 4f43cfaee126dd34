"""Where a chunk's lanes sit while they step: cache tiles, blocks of steps, XLA options.

Each figure here was measured on the headline step (benchmarks/README.md). The choice between
lanes-last and vmapped stepping is the dynamics' layout policy (:func:`rankjump.dynamics.layout`);
this module sizes what follows from it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rankjump.kernel.types import Structure

__all__ = [
    "CPU_OPTIONS",
    "MAX_BLOCK",
    "block_size",
    "compiler_options",
    "interval_structure",
    "options_for",
    "tile_for",
    "tile_lanes",
]

MAX_BLOCK = 32  # steps drawn at once and between renormalizations of the lazy scale
UNROLL = 1  # steps unrolled in the inner scan (2 and 4 measured slower, lanes-last on the CPU)

# CPU tiles: weights of about 400 KiB stay in a 1 MiB L2 cache (d = 20, depth 4: 64 lanes, 1.3x
# faster than 512); below 32 lanes per-loop overheads win over the cache.
TILE_BYTES = 384 * 1024
MIN_TILE = 32

# XLA:CPU settings for a lanes-last chunk program:
CPU_OPTIONS = {
    # YNNPACK fusions of reductions and element-wise ops turn the lanes-last multiply-reduce
    # loops into library calls that materialize every product (about 8x slower than XLA's own
    # loops); its dot fusions stay: the checkpoint record's small batched matrix products run
    # 3x faster through them (benchmarks/README.md, checkpoints).
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT",
    # Without region analysis, copy insertion copies the middle layers at every step (the loop
    # carry is overwritten while the backward chain still reads it).
    "xla_cpu_copy_insertion_use_region_analysis": True,
}


def block_size(record_every: int) -> int:
    """Steps drawn at once: the largest divisor of ``record_every`` up to :data:`MAX_BLOCK`."""
    return max(b for b in range(1, MAX_BLOCK + 1) if record_every % b == 0)


def interval_structure(s: Structure, record_every: int, n_intervals: int) -> Structure:
    """``s`` with other checkpoints: ``n_intervals`` intervals of ``record_every`` steps (the
    path is the same whatever they are; a replay records a window finely this way)."""
    return s._replace(
        record_every=record_every, n_intervals=n_intervals, block=block_size(record_every)
    )


def tile_lanes(shapes, dtype: str) -> int:
    """Lanes per CPU cache tile: as many as fit :data:`TILE_BYTES` of weights (a multiple of
    8, the float32 vector width, and at least :data:`MIN_TILE`)."""
    per_lane = sum(r * c for r, c in shapes) * jnp.dtype(dtype).itemsize
    return max(MIN_TILE, TILE_BYTES // per_lane // 8 * 8)


def tile_for(n: int, target: int) -> int:
    """Lanes per tile for a chunk of ``n``: the multiple of 8 within [target / 2, 3 target / 2]
    that pads the chunk least (the closest to ``target`` among equals); the whole chunk when it
    is small or ``target`` is 0."""
    if not target or n <= target * 3 // 2:
        return n
    sizes = range(max(8, target // 2 // 8 * 8), target * 3 // 2 + 1, 8)
    return min(sizes, key=lambda t: (-(-n // t) * t - n, abs(t - target)))


@functools.lru_cache(maxsize=2)
def compiler_options(lanes_last_step: bool = True) -> dict:
    """XLA options for a chunk program: :data:`CPU_OPTIONS` for a lanes-last step on the CPU,
    when this XLA accepts them (a jaxlib without these flags still runs, only slower); none for
    vmapped per-network steps, whose batched matrix products gain from YNNPACK."""
    if not lanes_last_step:
        return {}
    try:
        probe = jax.device_put(np.zeros(2, np.float32), jax.devices("cpu")[0])
        jax.jit(lambda x: x + 1, compiler_options=CPU_OPTIONS).lower(probe).compile()
    except (TypeError, ValueError, RuntimeError):
        return {}
    return dict(CPU_OPTIONS)


def options_for(s: Structure) -> dict:
    """The XLA options of the programs of ``s``: the CPU ones where its layout has cache tiles."""
    return compiler_options(s.layout.cache_tiles)
