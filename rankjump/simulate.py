"""The simulator: starting states, the run plan (lanes in chunks), and ``simulate``.

Trajectory t uses the key ``fold_in(root, t)`` in every cell (common random numbers), so its path
does not depend on the chunk size or on which other lanes share its chunk. The chunks run through
the compiled kernel of :mod:`rankjump.kernel`; a sweep (:mod:`rankjump.sweep`) runs the same
chunks as separate jobs.
"""

from __future__ import annotations

import collections
import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from rankjump.config import Config
from rankjump.dynamics import Hyper, State, TaskArrays
from rankjump.kernel import (
    LaneParams,
    Record,
    Structure,
    compiled_chunk,
    set_listener,
    structure_for,
)
from rankjump.network import layer_shapes
from rankjump.ranks import REL_FLOOR, count_above, network_rank, thresholds_for
from rankjump.results import ResultError, build_dataset
from rankjump.starts import gd_minimum, load_weights
from rankjump.tasks import Task, make_task

__all__ = [
    "Plan",
    "Starts",
    "assemble",
    "check_memory",
    "lane_keys",
    "plan_run",
    "progress_bar",
    "run_chunks",
    "run_lanes_of",
    "shared_starts",
    "simulate",
]

# ------------------------------------------------------------------ starting states


class Starts(NamedTuple):
    """Starting weights shared by the trajectories of each lam (leading lam axis), with attrs."""

    weights: tuple | None
    attrs: dict


@functools.lru_cache(maxsize=8)
def _cached_gd_minimum(task_cfg, net, lams):
    """GD minima are deterministic in (task, network, lam): compute each once per process."""
    return gd_minimum(make_task(task_cfg), task_cfg.d_out, task_cfg.d_in, net, lams)


def _start_lams(cfg: Config) -> np.ndarray:
    """The lam each cell starts with (phase 0 of the schedule): GD minima are taken there."""
    return np.asarray(cfg.optimizer.lam) * cfg.optimizer.factors("lam")[0]


def _network_rank(weights, thresholds, rule: str) -> int:
    """Numerical rank of one float64 network under the rank rule (NumPy SVDs, the record's
    thresholds and floor)."""
    floor = REL_FLOOR["float64"]
    weights = [np.asarray(w, np.float64) for w in weights]

    def count(m, eps):
        return int(count_above(np.linalg.svd(m, compute_uv=False), eps, floor))

    layer = np.array([count(w, thresholds.layer) for w in weights])
    end = count(
        np.linalg.multi_dot(weights[::-1]) if len(weights) > 1 else weights[0], thresholds.end
    )
    return int(network_rank(layer, end, rule))


def shared_starts(cfg: Config) -> Starts:
    """The starts shared by all trajectories of a lam: a GD minimum or a weights file.

    Per-trajectory GD minima and drawn inits give ``Starts(None, {})``: they are made per chunk.
    """
    net, n_lam = cfg.network, len(cfg.optimizer.lam)
    shapes = layer_shapes(cfg.task.d_out, cfg.task.d_in, net.width, net.depth)
    if net.init == "gd_minimum" and net.gd_start == "shared":
        m = _cached_gd_minimum(cfg.task, net, tuple(float(x) for x in _start_lams(cfg)))
        weights = m.weights
        attrs = {
            "gd_grad_norm": m.grad_norm.tolist(),
            "gd_steps": m.steps.tolist(),
            "gd_loss": m.loss.tolist(),
        }
    elif net.init == "file":
        w = load_weights(net.init_file, shapes)
        weights, attrs = tuple(np.broadcast_to(x, (n_lam, *x.shape)) for x in w), {}
    else:
        return Starts(None, {})
    thr = _thresholds(cfg, make_task(cfg.task))
    attrs["start_rank"] = [
        _network_rank([w[k] for w in weights], thr[k], cfg.rank.rule) for k in range(n_lam)
    ]
    return Starts(weights, attrs)


_GD_CACHE: collections.OrderedDict = collections.OrderedDict()
_GD_CACHE_SIZE = 1 << 16  # per-trajectory minima kept per process (they repeat across eta)


def _per_trajectory_minima(cfg: Config, task: Task, pairs, block: int):
    """GD minima for (lam index, traj) pairs, in programs of ``block`` lanes, memoised.

    The block size is the run's chunk, so a sweep job and :func:`simulate` compute each minimum
    with the same program (padding repeats the last pair).
    """
    lams = _start_lams(cfg)

    def key(pair):
        return (cfg.task, cfg.network, float(lams[pair[0]]), pair[1])

    todo = [pair for pair in dict.fromkeys(pairs) if key(pair) not in _GD_CACHE]
    for b in range(0, len(todo), block):
        part = todo[b : b + block]
        padded = part + [part[-1]] * (block - len(part))
        li, tr = (np.array(x) for x in zip(*padded, strict=True))
        m = gd_minimum(task, cfg.task.d_out, cfg.task.d_in, cfg.network, lams[li], tr)
        for n, pair in enumerate(part):
            _GD_CACHE[key(pair)] = (
                tuple(w[n] for w in m.weights),
                (float(m.grad_norm[n]), int(m.steps[n]), float(m.loss[n])),
            )
        while len(_GD_CACHE) > _GD_CACHE_SIZE:
            _GD_CACHE.popitem(last=False)
    return [_GD_CACHE[key(pair)] for pair in pairs]


# ------------------------------------------------------------------ the run plan


class Plan(NamedTuple):
    """Everything fixed about a run: the lanes in order, the chunking and the traced values.

    Lanes are ordered lam-major, then eta, then trajectory. Chunk c holds lanes
    ``c * chunk .. (c + 1) * chunk - 1`` (wrapped around to pad the last one), so a sweep job that
    runs some chunks computes exactly what :func:`simulate` computes for them.
    """

    cfg: Config
    task: Task
    structure: Structure
    thresholds: list
    lane_lam: np.ndarray
    lane_eta: np.ndarray
    lane_traj: np.ndarray
    chunk: int
    devices: tuple

    @property
    def n_lanes(self) -> int:
        return self.lane_lam.size

    @property
    def n_chunks(self) -> int:
        return -(-self.n_lanes // self.chunk)

    def chunk_lanes(self, c: int) -> tuple[np.ndarray, int]:
        """Lane indices of chunk ``c`` (padded to the chunk size) and how many are real."""
        lanes = np.arange(c * self.chunk, (c + 1) * self.chunk) % self.n_lanes
        return lanes, min(self.chunk, self.n_lanes - c * self.chunk)


def _thresholds(cfg: Config, task: Task) -> list:
    """Rank thresholds per lam, at the lam of the schedule's last phase."""
    last = cfg.optimizer.factors("lam")[-1]
    return [
        thresholds_for(
            cfg.rank.threshold,
            lam * last,
            task.y,
            cfg.network.depth,
            cfg.rank.safety,
            cfg.run.dtype,
        )
        for lam in cfg.optimizer.lam
    ]


def plan_run(cfg: Config, devices=None, chunk: int | None = None) -> Plan:
    """The lanes, chunks and thresholds of ``cfg`` on ``devices`` (default: all devices).

    ``chunk`` (lanes per call, a multiple of the number of devices) defaults to
    ``run.chunk_size`` per device, or fewer when the run is smaller.
    """
    task = make_task(cfg.task)
    n_lam, n_eta, n_traj = len(cfg.optimizer.lam), len(cfg.optimizer.eta), cfg.run.trajectories
    lane_lam = np.repeat(np.arange(n_lam), n_eta * n_traj)
    lane_eta = np.tile(np.repeat(np.arange(n_eta), n_traj), n_lam)
    lane_traj = np.tile(np.arange(n_traj), n_lam * n_eta)
    devices = tuple(jax.devices() if devices is None else devices)
    n_dev = len(devices)
    # chunk_size lanes per device and call; the lane axis is sharded over the devices.
    if chunk is None:
        chunk = min(cfg.run.chunk_size, -(-lane_lam.size // n_dev)) * n_dev
    elif chunk % n_dev:
        raise ValueError(f"chunk = {chunk} lanes cannot be split over {n_dev} devices")
    return Plan(
        cfg,
        task,
        structure_for(cfg, devices=devices),
        _thresholds(cfg, task),
        lane_lam,
        lane_eta,
        lane_traj,
        chunk,
        devices,
    )


GD_VARS = ("gd_grad_norm", "gd_steps", "gd_loss")


def run_chunks(plan: Plan, chunks, starts: Starts, progress=None) -> tuple[Record, dict]:
    """Run the given chunks of a plan.

    Args:
        plan: from :func:`plan_run`.
        chunks: chunk indices, in the order their records are returned.
        starts: from :func:`shared_starts` (the same for every chunk of the run).
        progress: an object with ``update(n)`` (a tqdm bar), told the trajectory-steps done as
            the scan advances (a host callback at each checkpoint).

    Returns:
        ``(records, extra)``: NumPy records with axes (lane, checkpoint, ...) for the real lanes
        of the chunks in order, and per-lane arrays of the per-trajectory GD minima (``gd_*``,
        empty without them).
    """
    outputs, extras = [], []
    for c in chunks:
        lanes, n_valid = plan.chunk_lanes(c)
        rec, extra, _ = run_lanes_of(plan, lanes, n_valid, starts, progress)
        outputs.append(rec)
        extras.append(extra)
    records = Record(*(np.concatenate(parts) for parts in zip(*outputs, strict=True)))
    extra = {name: np.concatenate([e[name] for e in extras]) for name in (extras or [{}])[0]}
    return records, extra


def run_lanes_of(
    plan: Plan, lanes, n_valid: int, starts: Starts, progress=None, k0: int = 0, state=None
) -> tuple[Record, dict, State]:
    """Run some lanes of a plan (one call of the compiled program).

    Args:
        plan: from :func:`plan_run`.
        lanes: lane indices (``plan.chunk`` of them, the padding last).
        n_valid: how many of ``lanes`` are real (records are returned for these only).
        starts: from :func:`shared_starts`.
        progress: a tqdm-like bar, told the trajectory-steps done.
        k0: the first interval: the run starts at global step ``k0 * record_every``.
        state: the lanes' :class:`State` at that step (from an earlier call), instead of the
            plan's starts: the run then continues exactly where that call stopped.

    Returns:
        ``(records, extra, state)``: NumPy records (lane, checkpoint, ...) of the real lanes,
        their per-trajectory GD minima (``gd_*``, empty without them) and the final state of
        every lane.
    """
    cfg, s = plan.cfg, plan.structure
    run, opt = cfg.run, cfg.optimizer
    dtype = jnp.dtype(run.dtype)
    mesh = Mesh(np.array(plan.devices), ("lanes",))
    on_lanes, replicated = (
        NamedSharding(mesh, PartitionSpec("lanes")),
        NamedSharding(mesh, PartitionSpec()),
    )
    task = plan.task
    lanes = np.asarray(lanes)
    li, ei = plan.lane_lam[lanes], plan.lane_eta[lanes]
    n = lanes.size
    lam_phases = np.outer(opt.lam, opt.factors("lam")).astype(dtype)  # (lam, phase)
    eta_phases = np.outer(opt.eta, opt.factors("eta")).astype(dtype)
    thr_layer = np.asarray([t.layer for t in plan.thresholds], dtype)
    thr_end = np.asarray([t.end for t in plan.thresholds], dtype)
    per_traj = cfg.network.init == "gd_minimum" and cfg.network.gd_start == "per_trajectory"

    def full(value):
        return np.full(n, value, dtype)

    keys = lane_keys(run.seed, plan.lane_traj[lanes])
    params = LaneParams(
        Hyper(lam_phases[li], eta_phases[ei], full(opt.label_noise), full(opt.temperature)),
        thr_layer[li],
        thr_end[li],
        full(cfg.network.init_scale),
        full(run.diverge_norm2),
    )
    extra = {}
    if state is not None:
        lane_starts = state
    elif per_traj:
        pairs = list(zip(li.tolist(), plan.lane_traj[lanes].tolist(), strict=True))
        minima = _per_trajectory_minima(cfg, task, pairs, plan.chunk)
        lane_starts = tuple(
            np.stack([m[0][l] for m in minima]).astype(dtype) for l in range(len(s.shapes))
        )
        info = np.array([m[1] for m in minima[:n_valid]], np.float64)
        extra = dict(zip(GD_VARS, info.T, strict=True))
        extra["gd_steps"] = extra["gd_steps"].astype(np.int64)
    elif starts.weights is not None:
        lane_starts = tuple(np.asarray(w[li], dtype) for w in starts.weights)
    else:
        lane_starts = None
    on_interval = _progress_listener(progress, n_valid * s.record_every, k0)
    set_listener(on_interval)
    try:
        with jax.default_matmul_precision("highest"):  # no TF32 on GPUs: CPU and GPU agree
            rec, final = compiled_chunk(s)(
                jax.device_put(keys, on_lanes),
                jax.device_put(lane_starts, on_lanes),
                jax.device_put(params, on_lanes),
                jax.device_put(TaskArrays.of(task, dtype), replicated),
                jax.device_put(jnp.asarray(opt.schedule_steps, jnp.int32), replicated),
                jax.device_put(jnp.asarray(k0, jnp.int32), replicated),
            )
        records = jax.tree_util.tree_map(lambda x: np.asarray(x)[:n_valid], rec)
    finally:
        set_listener(None)
    on_interval(k0 + s.n_intervals - 1)  # complete the count if callbacks were dropped
    return records, extra, final


def record_bytes(cfg: Config) -> int:
    """Bytes of one lane's records over all checkpoints (as NumPy arrays on the host)."""
    real = np.dtype(cfg.run.dtype).itemsize
    per_checkpoint = 4 * (2 + cfg.network.depth) + real * (cfg.k_max + 4) + 1
    return cfg.run.n_checkpoints * per_checkpoint


def _available_bytes() -> int | None:
    """Memory the system can give now (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(cfg: Config, lanes_held: int, command: str) -> None:
    """Refuse, before anything is allocated, a run whose records (``lanes_held`` lanes held at
    once, twice: the records and the Dataset made of them) and one chunk's arrays would not fit
    in the memory available now."""
    run = cfg.run
    shapes = layer_shapes(cfg.task.d_out, cfg.task.d_in, cfg.network.width, cfg.network.depth)
    weights = sum(r * c for r, c in shapes) * np.dtype(run.dtype).itemsize
    chunk = min(run.chunk_size, lanes_held) * len(jax.devices())
    need = 2 * lanes_held * record_bytes(cfg) + chunk * (8 * weights + record_bytes(cfg))
    have = _available_bytes()
    if have is None or need <= 0.8 * have:
        return
    gib = 2.0**30
    raise ResultError(
        f"run.trajectories, run.record_every: {command} would hold about {need / gib:.3g} GiB "
        f"({lanes_held} trajectories x {run.n_checkpoints} checkpoints, chunks of {chunk}) "
        f"and {have / gib:.3g} GiB is available; record fewer checkpoints (a larger "
        "run.record_every), "
        + (
            "use fewer --chunks-per-job or a smaller run.chunk_size"
            if command == "sweep"
            else "run it as `rankjump sweep` (one job in memory at a time), or use a smaller "
            "run.chunk_size"
        )
    )


def lane_keys(seed: int, traj) -> jax.Array:
    """The keys of trajectories ``traj``: ``fold_in(PRNGKey(seed), t)`` (the same in every cell)."""
    root = jax.random.PRNGKey(seed)
    return jax.vmap(functools.partial(jax.random.fold_in, root))(jnp.asarray(traj, jnp.uint32))


def _progress_listener(progress, per_interval: int, k0: int = 0):
    """A callback for finished interval k (of a run from interval ``k0``) that advances
    ``progress`` at most once per interval."""
    done = [k0]

    def on_interval(k: int) -> None:
        if progress is not None and k + 1 > done[0]:
            progress.update((k + 1 - done[0]) * per_interval)
            done[0] = k + 1

    return on_interval


def assemble(
    plan: Plan,
    records: Record,
    extra: dict,
    starts: Starts,
    wall_time: float,
    steps: np.ndarray | None = None,
    traj: np.ndarray | None = None,
):
    """The result Dataset of a whole plan from its records in lane order (``steps`` and
    ``traj``: see :func:`rankjump.results.build_dataset`)."""
    cfg = plan.cfg
    attrs = {
        "threshold_layer": [float(t.layer) for t in plan.thresholds],
        "threshold_end": [float(t.end) for t in plan.thresholds],
        "rel_floor": REL_FLOOR[cfg.run.dtype],
        "rank_rule": cfg.rank.rule,
        **starts.attrs,
    }
    n_lam, n_eta = len(cfg.optimizer.lam), len(cfg.optimizer.eta)
    per_traj = {
        name: (("lam", "traj"), values.reshape(n_lam, n_eta, -1)[:, 0])
        for name, values in extra.items()
    }
    ds = build_dataset(
        cfg, records, attrs, wall_time=wall_time, extra_vars=per_traj, steps=steps, traj=traj
    )
    for name, text in (
        ("gd_grad_norm", "gradient norm of L_lam at the trajectory's GD minimum (its start)"),
        ("gd_steps", "GD steps to the trajectory's start"),
        ("gd_loss", "L_lam at the trajectory's start"),
    ):
        if name in ds:
            ds[name].attrs["long_name"] = text
    return ds


def progress_bar(total: int, desc: str, progress: bool | None):
    """A tqdm bar counting trajectory-steps; ``progress=None`` shows it only on a terminal."""
    return tqdm(
        total=total,
        unit="traj-step",
        unit_scale=True,
        desc=desc,
        disable=None if progress is None else not progress,
        mininterval=0.5,
        smoothing=0.1,
    )


def simulate(cfg: Config, *, progress: bool | None = None, devices=None) -> xr.Dataset:
    """Run the whole lam x eta grid of ``cfg`` and return the result Dataset (README.md).

    Args:
        cfg: a validated configuration.
        progress: show a progress bar in trajectory-steps (default: only on a terminal).
        devices: devices to shard the trajectory axis over (default: all of ``jax.devices()``);
            each gets ``run.chunk_size`` lanes per call. Results do not depend on the number.

    Returns:
        An ``xarray.Dataset`` with dims (lam, eta, traj, checkpoint, layer, k).
    """
    t0 = time.perf_counter()
    n_lanes = len(cfg.optimizer.lam) * len(cfg.optimizer.eta) * cfg.run.trajectories
    check_memory(cfg, n_lanes, "simulate")
    plan = plan_run(cfg, devices)
    starts = shared_starts(cfg)
    with progress_bar(plan.n_lanes * cfg.run.steps, "simulate", progress) as bar:
        records, extra = run_chunks(plan, range(plan.n_chunks), starts, bar)
    return assemble(plan, records, extra, starts, time.perf_counter() - t0)
