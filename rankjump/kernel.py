"""The compiled kernel: one chunk of lanes, scanned over checkpoint intervals.

A lane is one (cell, trajectory) pair of the lam x eta grid. A chunk of lanes runs through ONE
compiled program (:func:`compiled_chunk`): shapes and step counts are static (:class:`Structure`),
while lam, eta, the schedule's phase values and the thresholds are traced per lane
(:class:`LaneParams`). The scan over intervals works on the whole chunk, so a host callback at
each checkpoint reports progress once per chunk, not once per lane.

Between checkpoints the entry-wise kinds step the chunk with the lane axis LAST
(:func:`rankjump.dynamics.lanes_last`), on the CPU in cache tiles of lanes (:func:`_advance`);
the checkpoint records are vmapped over lanes FIRST, the layout the carry keeps.

A trajectory's path depends only on its key and the global step: the sample of step n depends
only on ``key_dyn`` and n (:meth:`rankjump.dynamics.Dynamics.draw_steps`), and the lazy
weight-decay scale is renormalized by powers of two only (:func:`rankjump.dynamics.renormalize`,
exact), so neither ``record_every``, the block of steps drawn at once, the tiles nor the chunk
change a single bit of a trajectory.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rankjump.config import Config
from rankjump.dynamics import (
    Hyper,
    State,
    TaskArrays,
    lanes_last,
    make_dynamics,
    materialize,
    renormalize,
)
from rankjump.network import (
    data_loss,
    imbalance,
    init_balanced,
    init_gaussian,
    layer_shapes,
    param_norm2,
    product,
    stacked_singular_values,
)
from rankjump.ranks import REL_FLOOR, count_above, network_rank

__all__ = [
    "LaneParams",
    "Record",
    "Structure",
    "compiled_advance",
    "compiled_chunk",
    "compiler_options",
    "interval_structure",
    "run_lanes",
    "set_listener",
    "split_lane_key",
    "structure_for",
    "trace_count",
]

_MAX_BLOCK = 32  # steps drawn at once and between renormalizations of the lazy scale
_UNROLL = 1  # steps unrolled in the inner scan (2 and 4 measured slower, lanes-last on the CPU)


class Structure(NamedTuple):
    """Static settings: they pick the compiled program (hashable)."""

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
    svd: str  # "lapack", or "jacobi" on a CPU split into several devices
    n_phases: int = 1  # constant phases of the lam / eta schedule
    tile: int = 0  # lanes stepped together while their weights stay in cache (0: the whole chunk)
    platform: str = "cpu"  # of the devices the program runs on
    rule: str = "all_layers"  # the rank rule (rankjump.ranks.RULES)
    layer_sv: bool = False  # record the per-layer singular values (replays)


class LaneParams(NamedTuple):
    """Traced per-lane values; ``hyper.lam`` and ``hyper.eta`` hold one value per phase."""

    hyper: Hyper
    thr_layer: jax.Array
    thr_end: jax.Array
    init_scale: jax.Array
    diverge_norm2: jax.Array


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


_TRACES = {"count": 0}
_LISTENER = {"fn": None}  # called with the index of each finished interval (progress)


def trace_count() -> int:
    """How many times the chunk program has been traced (a recompilation guard for tests)."""
    return _TRACES["count"]


def set_listener(fn) -> None:
    """Call ``fn(k)`` on the host when interval k of a running chunk program finishes (progress
    bars); ``None`` removes it."""
    _LISTENER["fn"] = fn


def _tick(k) -> None:
    fn = _LISTENER["fn"]
    if fn is not None:
        fn(int(k))


def _phase_hyper(hyper: Hyper, boundaries, step) -> Hyper:
    """The constant hyperparameters of the schedule phase in effect at ``step`` (the phase values
    sit on the last axis of ``hyper.lam`` and ``hyper.eta``: one lane's or a chunk's)."""
    phase = jnp.sum(step >= boundaries).astype(jnp.int32)
    return hyper._replace(lam=hyper.lam[..., phase], eta=hyper.eta[..., phase])


def _record(state: State, alive, p: LaneParams, lam, task: TaskArrays, s: Structure):
    """One lane's checkpoint record of the weights ``scale * M``; a non-finite or exploding
    network is marked dead and its ``M`` zeroed (the returned state)."""
    weights = materialize(state)
    n2 = param_norm2(weights)
    dl = data_loss(weights, task.rows, task.cols, task.y)
    alive = alive & jnp.isfinite(n2) & jnp.isfinite(dl) & (n2 <= p.diverge_norm2)
    weights = tuple(jnp.where(alive, w, jnp.zeros_like(w)) for w in weights)
    state = state._replace(
        weights=tuple(jnp.where(alive, m, jnp.zeros_like(m)) for m in state.weights)
    )
    floor = REL_FLOOR[s.dtype]
    svs = stacked_singular_values([*weights, product(weights)], s.svd)
    layer_rank = jnp.stack(
        [count_above(svs[l, : min(w.shape)], p.thr_layer, floor) for l, w in enumerate(weights)]
    )
    sv = svs[-1, : min(s.shapes[0][1], s.shapes[-1][0])]
    end_rank = count_above(sv, p.thr_end, floor)
    nan = jnp.asarray(jnp.nan, n2.dtype)

    def real(x):
        return jnp.where(alive, x, nan)

    def rank(x):
        return jnp.where(alive, x, -1)

    n_sv = max(min(shape) for shape in s.shapes) if s.layer_sv else 0
    layer_sv = svs[: len(weights), :n_sv]  # rows zero-padded past a layer's own count
    rec = Record(
        rank(network_rank(layer_rank, end_rank, s.rule)),
        rank(layer_rank),
        rank(end_rank),
        real(sv[: s.k_max]),
        real(dl + lam * n2),
        real(dl),
        real(n2),
        real(imbalance(weights)),
        alive,
        real(layer_sv),
    )
    return state, rec


def split_lane_key(key) -> tuple[jax.Array, jax.Array]:
    """A trajectory's key -> (the key of its drawn init, the key of its dynamics' samples)."""
    key_init, key_dyn = jax.random.split(key)
    return key_init, key_dyn


def _start(key, start, p: LaneParams, s: Structure):
    """One lane's starting weights and its dynamics key."""
    dtype = jnp.dtype(s.dtype)
    key_init, key_dyn = split_lane_key(key)
    if s.init == "gaussian":
        start = init_gaussian(key_init, s.shapes, 1.0, dtype)
        start = tuple(w * p.init_scale for w in start)
    elif s.init == "balanced":
        start = init_balanced(key_init, s.shapes, s.init_rank, 1.0, dtype)
        start = tuple(w * p.init_scale for w in start)
    return tuple(start), key_dyn


def _interval(state: State, key_dyn, hyper: Hyper, task: TaskArrays, s: Structure) -> State:
    """``record_every`` steps of a chunk of lanes, each lane from its own global step
    ``state.step``: blocks of steps whose samples are drawn at once, the lazy scale renormalized
    after each (exactly). ``state`` is in the dynamics' chunk layout
    (:attr:`Dynamics.lanes_last`); ``key_dyn`` and ``hyper`` hold one value per lane. Lane t's
    step n is drawn from ``key_dyn[t]`` and n alone, whatever the chunk, the block,
    ``record_every`` or the steps of the other lanes (splitting advances lanes that are at
    different steps together)."""
    dyn = make_dynamics(s.kind, task, s.shapes, s.batch_size, jnp.dtype(s.dtype))
    lane_axis = -1 if dyn.lanes_last else 1  # of each step's sample
    renormalize_lanes = renormalize if dyn.lanes_last else jax.vmap(renormalize)

    offsets = jnp.arange(s.block, dtype=jnp.int32)

    def block(state: State, _):
        samples = jax.vmap(lambda kd, n: dyn.draw_steps(kd, n + offsets))(key_dyn, state.step)
        samples = jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, 0, lane_axis), samples)
        state, _ = jax.lax.scan(
            lambda st, x: (dyn.update_lanes(x, st, hyper), None), state, samples, unroll=_UNROLL
        )
        return renormalize_lanes(state), None

    return jax.lax.scan(block, state, jnp.arange(s.record_every // s.block))[0]


def _tile_for(n: int, target: int) -> int:
    """Lanes per tile for a chunk of ``n``: the multiple of 8 within [target / 2, 3 target / 2]
    that pads the chunk least (the closest to ``target`` among equals); the whole chunk when it
    is small or ``target`` is 0."""
    if not target or n <= target * 3 // 2:
        return n
    sizes = range(max(8, target // 2 // 8 * 8), target * 3 // 2 + 1, 8)
    return min(sizes, key=lambda t: (-(-n // t) * t - n, abs(t - target)))


def _advance(state: State, key_dyn, hyper: Hyper, task: TaskArrays, s: Structure) -> State:
    """One interval of a chunk whose state is lanes FIRST (as the records want it), each lane
    from its own ``state.step``.

    The entry-wise kinds step lanes-last tiles of ``s.tile`` lanes, one after the other, so that
    a tile's weights stay in cache for the whole interval (the chunk is padded with copies of
    its last lane to whole tiles, and the copies dropped).
    """
    n = key_dyn.shape[0]
    if not lanes_last(s.kind, s.batch_size):
        return _interval(state, key_dyn, hyper, task, s)
    tile = _tile_for(n, s.tile)
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
        return _interval(st, kd, hy, task, s)

    args = (
        jax.tree_util.tree_map(tiles, state),
        tiles(key_dyn, last=False),
        jax.tree_util.tree_map(tiles, hyper),
    )
    if n_tiles == 1:
        out = one(jax.tree_util.tree_map(lambda x: x[0], args))
        return jax.tree_util.tree_map(lambda x: untile(x[None]), out)
    return jax.tree_util.tree_map(untile, jax.lax.map(one, args))


def run_lanes(
    keys,
    starts,
    params: LaneParams,
    task: TaskArrays,
    boundaries,
    k0,
    s: Structure,
    batched: bool = True,
):
    """Run lanes for ``s.n_intervals`` intervals from global interval ``k0``.

    Args:
        keys: per-lane keys (trajectory t: ``fold_in(root, t)``).
        starts: per-lane starting weights, or a :class:`State` (weights and lazy scale, e.g. the
            final state of an earlier call, to continue exactly), or None when ``s.init`` draws
            them.
        params: per-lane traced values.
        task: the observed entries.
        boundaries: (n_phases - 1,) steps at which the schedule's phases begin.
        k0: index of the first interval (keys and schedule continue from there).
        s: the static structure.
        batched: lanes have a leading axis; False runs one lane without it.

    Returns:
        ``(records, state)``: records with axes (lane, checkpoint, ...) holding
        ``n_intervals + 1`` checkpoints (the start first), and the final :class:`State` (lanes
        first; ``materialize`` gives the weights).
    """
    if not batched:

        def lead(tree):
            return jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], tree)

        out = run_lanes(lead(keys), lead(starts), lead(params), task, boundaries, k0, s)
        return jax.tree_util.tree_map(lambda x: x[0], out)

    n, dtype = keys.shape[0], jnp.dtype(s.dtype)
    scale = jnp.ones(n, dtype)
    if isinstance(starts, State):
        starts, scale = starts.weights, starts.scale
    start_axis = None if starts is None else 0
    weights, key_dyn = jax.vmap(lambda k, w, p: _start(k, w, p, s), (0, start_axis, 0))(
        keys, starts, params
    )
    step0 = jnp.full(n, k0 * s.record_every, jnp.int32)
    alive = jnp.ones(n, bool)
    record = jax.vmap(lambda st, a, p, lam: _record(st, a, p, lam, task, s))
    lam0 = _phase_hyper(params.hyper, boundaries, k0 * s.record_every).lam
    state0, rec0 = record(State(tuple(weights), scale, step0), alive, params, lam0)

    def body(carry, k):
        state, alive = carry
        hyper = _phase_hyper(params.hyper, boundaries, k * s.record_every)
        state = _advance(state, key_dyn, hyper, task, s)
        state, rec = record(state, alive, params, hyper.lam)
        jax.debug.callback(_tick, k)
        return (state, rec.alive), rec

    ks = k0 + jnp.arange(s.n_intervals)
    (state, _), recs = jax.lax.scan(body, (state0, rec0.alive), ks)
    records = jax.tree_util.tree_map(
        lambda a, b: jnp.concatenate([a[:, None], jnp.moveaxis(b, 0, 1)], 1), rec0, recs
    )
    return records, state


@functools.lru_cache(maxsize=32)
def compiled_chunk(s: Structure):
    """The jit-compiled program for one chunk of lanes:
    ``(keys, starts, params, task, boundaries, k0) -> (records, final state)``."""

    def chunk(keys, starts, params, task, boundaries, k0):
        _TRACES["count"] += 1
        return run_lanes(keys, starts, params, task, boundaries, k0, s)

    return jax.jit(chunk, compiler_options=_options_for(s))


@functools.lru_cache(maxsize=32)
def compiled_advance(s: Structure):
    """The stepping alone, jit-compiled: one interval of a lanes-first chunk, no checkpoint,
    ``(state, key_dyn, hyper, task) -> state``, each lane from its own ``state.step`` (the
    benchmark times it against peers that only step, too)."""

    def advance(state, key_dyn, hyper, task):
        return _advance(state, key_dyn, hyper, task, s)

    return jax.jit(advance, compiler_options=_options_for(s))


def _options_for(s: Structure) -> dict:
    return compiler_options(lanes_last(s.kind, s.batch_size) and s.platform == "cpu")


# XLA:CPU settings for the chunk program, each measured on the headline step (benchmarks/README.md):
_CPU_OPTIONS = {
    # YNNPACK fusions turn the lanes-last multiply-reduce loops into library calls that
    # materialize every product (about 8x slower than XLA's own loops).
    "xla_cpu_experimental_ynn_fusion_type": "",
    # Without region analysis, copy insertion copies the middle layers at every step (the loop
    # carry is overwritten while the backward chain still reads it).
    "xla_cpu_copy_insertion_use_region_analysis": True,
}


@functools.lru_cache(maxsize=2)
def compiler_options(lanes_last_step: bool = True) -> dict:
    """XLA options for a chunk program: :data:`_CPU_OPTIONS` for a lanes-last step on the CPU,
    when this XLA accepts them (a jaxlib without these flags still runs, only slower); none for
    vmapped per-network steps, whose batched matrix products gain from YNNPACK."""
    if not lanes_last_step:
        return {}
    try:
        probe = jax.device_put(np.zeros(2, np.float32), jax.devices("cpu")[0])
        jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(probe).compile()
    except (TypeError, ValueError, RuntimeError):
        return {}
    return dict(_CPU_OPTIONS)


def structure_for(cfg: Config, svd: str | None = None, devices=None) -> Structure:
    """The static settings of ``cfg`` on ``devices`` (default: all): they pick the program."""
    run, opt, net = cfg.run, cfg.optimizer, cfg.network
    devices = jax.devices() if devices is None else devices
    platform = devices[0].platform
    shapes = layer_shapes(cfg.task.d_out, cfg.task.d_in, net.width, net.depth)
    return Structure(
        opt.kind,
        shapes,
        opt.batch_size,
        run.steps // run.record_every,
        run.record_every,
        _block_size(run.record_every),
        run.dtype,
        cfg.k_max,
        net.init if net.init in ("gaussian", "balanced") else "given",
        net.init_rank or 0,
        svd or _svd_method(platform),
        opt.n_phases,
        _tile_lanes(shapes, run.dtype) if platform == "cpu" else 0,
        platform,
        cfg.rank.rule,
    )


def _svd_method(platform: str) -> str:
    """LAPACK's batched SVD, except on a CPU split into several devices, used or not (see
    :func:`rankjump.network.stacked_singular_values`)."""
    return "jacobi" if platform == "cpu" and len(jax.devices("cpu")) > 1 else "lapack"


def interval_structure(s: Structure, record_every: int, n_intervals: int) -> Structure:
    """``s`` with other checkpoints: ``n_intervals`` intervals of ``record_every`` steps (the
    path is the same whatever they are; a replay records a window finely this way)."""
    return s._replace(
        record_every=record_every, n_intervals=n_intervals, block=_block_size(record_every)
    )


def _block_size(record_every: int) -> int:
    return max(b for b in range(1, _MAX_BLOCK + 1) if record_every % b == 0)


# CPU tiles (benchmarks/README.md): weights of about 400 KiB stay in a 1 MiB L2 cache (d = 20,
# depth 4: 64 lanes, 1.3x faster than 512); below 32 lanes per-loop overheads win over the cache.
_TILE_BYTES = 384 * 1024
_MIN_TILE = 32


def _tile_lanes(shapes, dtype: str) -> int:
    """Lanes per CPU cache tile: as many as fit :data:`_TILE_BYTES` of weights (a multiple of
    8, the float32 vector width, and at least :data:`_MIN_TILE`). Other platforms get 0, the
    whole chunk at once (a GPU wants every lane in flight)."""
    per_lane = sum(r * c for r, c in shapes) * jnp.dtype(dtype).itemsize
    return max(_MIN_TILE, _TILE_BYTES // per_lane // 8 * 8)
