"""The vectorized simulator: scan over steps with strided checkpoints, vmap over lanes.

A lane is one (cell, trajectory) pair of the lam x eta grid. Lanes are run in fixed-size chunks
through ONE compiled program (lam, eta and the thresholds are traced per lane); trajectory t uses
the key ``fold_in(root, t)`` in every cell (common random numbers), so its path does not depend
on the chunk size or on which other lanes share its chunk.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from rankjump.config import Config
from rankjump.dynamics import Hyper, State, TaskArrays, fold, make_dynamics, materialize, new_state
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
from rankjump.ranks import REL_FLOOR, count_above, thresholds_for
from rankjump.results import build_dataset
from rankjump.starts import gd_minimum, load_weights
from rankjump.tasks import Task, make_task

__all__ = [
    "LaneParams",
    "Record",
    "Structure",
    "compiled_chunk",
    "simulate",
    "structure_for",
    "trace_count",
]

_MAX_BLOCK = 32  # steps between folds of the lazy weight-decay scale
_UNROLL = 4  # steps unrolled in the inner scan: measured 1.2-1.3x at d = 20, depth 4 (CPU)


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
    init: str  # "gaussian" | "balanced" (drawn per trajectory) | "shared"
    init_rank: int
    svd: str  # "lapack", or "jacobi" on a CPU split into several devices


class LaneParams(NamedTuple):
    """Traced per-lane values."""

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


_TRACES = {"count": 0}


def trace_count() -> int:
    """How many times the chunk program has been traced (a recompilation guard for tests)."""
    return _TRACES["count"]


def _record(weights, alive, p: LaneParams, task: TaskArrays, s: Structure):
    """Checkpoint record; a non-finite or exploding network is marked dead and zeroed."""
    n2 = param_norm2(weights)
    dl = data_loss(weights, task.rows, task.cols, task.y)
    alive = alive & jnp.isfinite(n2) & jnp.isfinite(dl) & (n2 <= p.diverge_norm2)
    weights = tuple(jnp.where(alive, w, jnp.zeros_like(w)) for w in weights)
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

    rec = Record(
        rank(jnp.min(layer_rank)),
        rank(layer_rank),
        rank(end_rank),
        real(sv[: s.k_max]),
        real(dl + p.hyper.lam * n2),
        real(dl),
        real(n2),
        real(imbalance(weights)),
        alive,
    )
    return weights, rec


def _run_lane(key, start, p: LaneParams, task: TaskArrays, s: Structure) -> Record:
    """One trajectory: records with a leading checkpoint axis (n_intervals + 1)."""
    dtype = jnp.dtype(s.dtype)
    key_init, key_dyn = jax.random.split(key)
    if s.init == "gaussian":
        start = init_gaussian(key_init, s.shapes, 1.0, dtype)
        start = tuple(w * p.init_scale for w in start)
    elif s.init == "balanced":
        start = init_balanced(key_init, s.shapes, s.init_rank, 1.0, dtype)
        start = tuple(w * p.init_scale for w in start)
    dyn = make_dynamics(s.kind, task, s.shapes, s.batch_size, dtype)
    n_blocks = s.record_every // s.block
    alive0 = jnp.ones((), bool)
    start, rec0 = _record(tuple(start), alive0, p, task, s)

    def block(state: State, key_block):
        samples = dyn.draw(key_block, s.block)
        state, _ = jax.lax.scan(
            lambda st, x: (dyn.update(x, st, p.hyper), None), state, samples, unroll=_UNROLL
        )
        return fold(state), None

    def interval(carry, k):
        state, alive = carry
        keys = jax.vmap(functools.partial(jax.random.fold_in, jax.random.fold_in(key_dyn, k)))(
            jnp.arange(n_blocks)
        )
        state, _ = jax.lax.scan(block, state, keys)
        weights, rec = _record(materialize(state), alive, p, task, s)
        return (State(weights, state.scale, state.step), rec.alive), rec

    _, recs = jax.lax.scan(interval, (new_state(start), alive0), jnp.arange(s.n_intervals))
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), rec0, recs)


@functools.lru_cache(maxsize=32)
def compiled_chunk(s: Structure):
    """The jit-compiled program for one chunk of lanes: (keys, starts, params, task) -> Record."""

    def chunk(keys, starts, params, task):
        _TRACES["count"] += 1
        start_axis = 0 if s.init == "shared" else None
        return jax.vmap(_run_lane, in_axes=(0, start_axis, 0, None, None))(
            keys, starts, params, task, s
        )

    return jax.jit(chunk)


def structure_for(cfg: Config, svd: str | None = None) -> Structure:
    """The static settings of ``cfg``: they pick the compiled program."""
    run, opt, net = cfg.run, cfg.optimizer, cfg.network
    return Structure(
        opt.kind,
        layer_shapes(cfg.task.d_out, cfg.task.d_in, net.width, net.depth),
        opt.batch_size,
        run.steps // run.record_every,
        run.record_every,
        _block_size(run.record_every),
        run.dtype,
        cfg.k_max,
        net.init if net.init in ("gaussian", "balanced") else "shared",
        net.init_rank or 0,
        svd or _svd_method(),
    )


def _svd_method() -> str:
    """LAPACK's batched SVD, except on a CPU split into several devices (see
    :func:`rankjump.network.stacked_singular_values`)."""
    return "jacobi" if jax.default_backend() == "cpu" and jax.device_count() > 1 else "lapack"


def _block_size(record_every: int) -> int:
    return max(b for b in range(1, _MAX_BLOCK + 1) if record_every % b == 0)


@functools.lru_cache(maxsize=8)
def _cached_gd_minimum(task_cfg, net, lams):
    """GD minima are deterministic in (task, network, lam): compute each once per process."""
    return gd_minimum(make_task(task_cfg), task_cfg.d_out, task_cfg.d_in, net, lams)


def _starts(cfg: Config, task: Task, shapes, lams):
    """Shared starting weights per lam (or None when drawn per trajectory), and attrs."""
    net = cfg.network
    if net.init == "gd_minimum":
        m = _cached_gd_minimum(cfg.task, net, tuple(float(x) for x in lams))
        return m.weights, {
            "gd_grad_norm": m.grad_norm.tolist(),
            "gd_steps": m.steps.tolist(),
            "gd_loss": m.loss.tolist(),
        }
    if net.init == "file":
        w = load_weights(net.init_file, shapes)
        return tuple(np.broadcast_to(x, (len(lams), *x.shape)) for x in w), {}
    return None, {}


def _network_rank(weights, eps: float) -> int:
    """Smallest per-layer numerical rank of one float64 network (the record's rule, NumPy SVD)."""
    floor = REL_FLOOR["float64"]
    return min(
        int(count_above(np.linalg.svd(np.asarray(w, np.float64), compute_uv=False), eps, floor))
        for w in weights
    )


def simulate(cfg: Config, *, progress: bool | None = None, devices=None) -> xr.Dataset:
    """Run the whole lam x eta grid of ``cfg`` and return the result Dataset (DESIGN.md schema).

    Args:
        cfg: a validated configuration.
        progress: show a progress bar over chunks (default: only on a terminal).
        devices: devices to shard the trajectory axis over (default: all of ``jax.devices()``);
            each gets ``run.chunk_size`` lanes per call. Results do not depend on the number.

    Returns:
        An ``xarray.Dataset`` with dims (lam, eta, traj, checkpoint, layer, k).
    """
    t0 = time.perf_counter()
    run, opt = cfg.run, cfg.optimizer
    dtype = jnp.dtype(run.dtype)
    task = make_task(cfg.task)
    shapes = layer_shapes(cfg.task.d_out, cfg.task.d_in, cfg.network.width, cfg.network.depth)
    lams, etas = np.asarray(opt.lam), np.asarray(opt.eta)
    s = structure_for(cfg)
    thr = [
        thresholds_for(
            cfg.rank.threshold, lam, task.y, cfg.network.depth, cfg.rank.safety, run.dtype
        )
        for lam in lams
    ]
    starts, start_attrs = _starts(cfg, task, shapes, lams)
    if starts is not None:
        start_attrs["start_rank"] = [
            _network_rank([w[k] for w in starts], thr[k].layer) for k in range(len(lams))
        ]

    n_lam, n_eta, n_traj = len(lams), len(etas), run.trajectories
    lane_lam = np.repeat(np.arange(n_lam), n_eta * n_traj)
    lane_eta = np.tile(np.repeat(np.arange(n_eta), n_traj), n_lam)
    lane_traj = np.tile(np.arange(n_traj), n_lam * n_eta)
    n_lanes = lane_lam.size
    devices = list(jax.devices() if devices is None else devices)
    n_dev = len(devices)
    # chunk_size lanes per device and call; the lane axis is sharded over the devices.
    chunk = min(run.chunk_size, -(-n_lanes // n_dev)) * n_dev
    n_chunks = -(-n_lanes // chunk)
    mesh = Mesh(np.array(devices), ("lanes",))
    on_lanes, replicated = (
        NamedSharding(mesh, PartitionSpec("lanes")),
        NamedSharding(mesh, PartitionSpec()),
    )

    def shard(tree):
        return jax.device_put(tree, on_lanes)

    def col(values, index):
        return np.asarray(values, dtype)[index]

    def full(value, n):
        return np.full(n, value, dtype)

    task_arrays = jax.device_put(
        TaskArrays(jnp.asarray(task.rows), jnp.asarray(task.cols), jnp.asarray(task.y, dtype)),
        replicated,
    )
    root = jax.random.PRNGKey(run.seed)
    program = compiled_chunk(s)
    outputs = []
    bar = tqdm(
        total=n_lanes,
        unit="traj",
        desc="simulate",
        disable=None if progress is None else not progress,
    )
    for c in range(n_chunks):
        lanes = np.arange(c * chunk, (c + 1) * chunk) % n_lanes  # pad the last chunk
        li, ei = lane_lam[lanes], lane_eta[lanes]
        keys = jax.vmap(functools.partial(jax.random.fold_in, root))(
            jnp.asarray(lane_traj[lanes], jnp.uint32)
        )
        params = LaneParams(
            Hyper(
                col(lams, li),
                col(etas, ei),
                full(opt.label_noise, chunk),
                full(opt.temperature, chunk),
            ),
            col([t.layer for t in thr], li),
            col([t.end for t in thr], li),
            full(cfg.network.init_scale, chunk),
            full(run.diverge_norm2, chunk),
        )
        lane_starts = None if starts is None else tuple(np.asarray(w[li], dtype) for w in starts)
        with jax.default_matmul_precision("highest"):  # no TF32 on GPUs (DESIGN.md)
            rec = program(shard(keys), shard(lane_starts), shard(params), task_arrays)
        n_valid = min(chunk, n_lanes - c * chunk)
        outputs.append(jax.tree_util.tree_map(lambda x, n=n_valid: np.asarray(x)[:n], rec))
        bar.update(n_valid)
    bar.close()
    records = Record(*(np.concatenate(parts) for parts in zip(*outputs, strict=True)))
    attrs = {
        "threshold_layer": [float(t.layer) for t in thr],
        "threshold_end": [float(t.end) for t in thr],
        "rel_floor": REL_FLOOR[run.dtype],
        **start_attrs,
    }
    return build_dataset(cfg, records, attrs, wall_time=time.perf_counter() - t0)
