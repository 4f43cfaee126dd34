"""``simulate``: every chunk of a run through the compiled kernel, assembled into a result.

The plan (:mod:`rankjump.simulation.plan`) fixes the lanes and chunks, the starts
(:mod:`rankjump.simulation.starts`) where they begin; each chunk is one call of
:func:`rankjump.kernel.compiled_chunk`, its lane axis sharded over the devices. A sweep
(:mod:`rankjump.sweeps.jobs`) runs the same chunks as separate jobs.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from rankjump.config import Config
from rankjump.dynamics import State, TaskArrays
from rankjump.kernel import PROGRESS, Record, compiled_chunk
from rankjump.model.ranks import REL_FLOOR
from rankjump.results.schema import build_dataset
from rankjump.runtime.precision import with_float64
from rankjump.simulation.plan import Plan, check_memory, lane_keys, plan_run
from rankjump.simulation.starts import MinimaCache, Starts, eta_edge, shared_starts

__all__ = [
    "GD_VARS",
    "assemble",
    "progress_bar",
    "run_chunks",
    "run_lanes_of",
    "simulate",
]

GD_VARS = ("gd_grad_norm", "gd_steps", "gd_loss")


@with_float64
def run_chunks(
    plan: Plan, chunks, starts: Starts, progress=None, minima: MinimaCache | None = None
) -> tuple[Record, dict]:
    """Run the given chunks of a plan.

    Args:
        plan: from :func:`rankjump.simulation.plan.plan_run`. chunks: chunk indices, in the order
        their records are returned. starts: from :func:`rankjump.simulation.starts.shared_starts`
        (the same for every chunk of the run). progress: an object with ``update(n)`` (a tqdm bar),
        told the trajectory-steps done as
            the scan advances (a host callback at each checkpoint).
        minima: per-trajectory GD minima already computed (default: a new cache shared by these
            chunks).

    Returns:
        ``(records, extra)``: NumPy records with axes (lane, checkpoint, ...) for the real lanes
        of the chunks in order, and per-lane arrays of the per-trajectory GD minima (``gd_*``,
        empty without them).
    """
    if minima is None:
        minima = MinimaCache.shared(plan.cfg, plan.task, plan.chunk)
    outputs, extras = [], []
    for c in chunks:
        lanes, n_valid = plan.chunk_lanes(c)
        rec, extra, _ = run_lanes_of(plan, lanes, n_valid, starts, progress, minima=minima)
        outputs.append(rec)
        extras.append(extra)
    records = Record(*(np.concatenate(parts) for parts in zip(*outputs, strict=True)))
    extra = {name: np.concatenate([e[name] for e in extras]) for name in (extras or [{}])[0]}
    return records, extra


def _lane_starts(plan: Plan, lanes, n_valid: int, starts: Starts, minima):
    """The starting weights of ``lanes`` (None when the kernel draws them) and the GD minima's
    per-lane values (``gd_*``, for per-trajectory minima)."""
    cfg, dtype = plan.cfg, np.dtype(plan.cfg.run.dtype)
    li = plan.lane_lam[lanes]
    if cfg.network.init == "gd_minimum" and cfg.network.gd_start == "per_trajectory":
        if minima is None:
            minima = MinimaCache.shared(cfg, plan.task, plan.chunk)
        found = minima.minima(list(zip(li.tolist(), plan.lane_traj[lanes].tolist(), strict=True)))
        weights = tuple(
            np.stack([m[0][l] for m in found]).astype(dtype)
            for l in range(len(plan.structure.shapes))
        )
        info = np.array([m[1] for m in found[:n_valid]], np.float64)
        extra = dict(zip(GD_VARS, info.T, strict=True))
        extra["gd_steps"] = extra["gd_steps"].astype(np.int64)
        return weights, extra
    if starts.weights is not None:
        return tuple(np.asarray(w[li], dtype) for w in starts.weights), {}
    return None, {}


@with_float64
def run_lanes_of(
    plan: Plan,
    lanes,
    n_valid: int,
    starts: Starts,
    progress=None,
    k0: int = 0,
    state: State | None = None,
    minima: MinimaCache | None = None,
) -> tuple[Record, dict, State]:
    """Run some lanes of a plan (one call of the compiled program).

    Args:
        plan: from :func:`rankjump.simulation.plan.plan_run`.
        lanes: lane indices (``plan.chunk`` of them, the padding last).
        n_valid: how many of ``lanes`` are real (records are returned for these only).
        starts: from :func:`rankjump.simulation.starts.shared_starts`.
        progress: a tqdm-like bar, told the trajectory-steps done.
        k0: the first interval: the run starts at global step ``k0 * record_every``.
        state: the lanes' :class:`State` at that step (from an earlier call), instead of the
            plan's starts: the run then continues exactly where that call stopped.
        minima: per-trajectory GD minima already computed (a new cache when needed and None).

    Returns:
        ``(records, extra, state)``: NumPy records (lane, checkpoint, ...) of the real lanes,
        their per-trajectory GD minima (``gd_*``, empty without them) and the final state of
        every lane.
    """
    s, opt, dtype = plan.structure, plan.cfg.optimizer, jnp.dtype(plan.cfg.run.dtype)
    mesh = Mesh(np.array(plan.devices), ("lanes",))
    on_lanes = NamedSharding(mesh, PartitionSpec("lanes"))
    replicated = NamedSharding(mesh, PartitionSpec())
    lanes = np.asarray(lanes)
    extra = {}
    if state is None:
        lane_starts, extra = _lane_starts(plan, lanes, n_valid, starts, minima)
    else:
        lane_starts = state
    on_interval = _progress_listener(progress, n_valid * s.record_every, k0)
    with PROGRESS.listening(on_interval), jax.default_matmul_precision("highest"):
        # highest: no TF32 on GPUs, so CPU and GPU agree
        try:
            rec, final = compiled_chunk(s, mesh)(
                jax.device_put(lane_keys(plan.cfg.run.seed, plan.lane_traj[lanes]), on_lanes),
                jax.device_put(lane_starts, on_lanes),
                jax.device_put(plan.lane_params(lanes), on_lanes),
                jax.device_put(TaskArrays.of(plan.task, dtype), replicated),
                jax.device_put(jnp.asarray(opt.schedule_steps, jnp.int32), replicated),
                jax.device_put(jnp.asarray(k0, jnp.int32), replicated),
            )
        except jax.errors.JaxRuntimeError as err:
            # Ctrl-C while the progress callback runs arrives wrapped: hand it on as itself.
            if "KeyboardInterrupt" in str(err):
                raise KeyboardInterrupt from None
            raise
        records = jax.tree_util.tree_map(lambda x: np.asarray(x)[:n_valid], rec)
    on_interval(k0 + s.n_intervals - 1)  # complete the count if callbacks were dropped
    return records, extra, final


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
    ``traj``: see :func:`rankjump.results.schema.build_dataset`)."""
    cfg = plan.cfg
    attrs = {
        "threshold_layer": [float(t.layer) for t in plan.thresholds],
        "threshold_end": [float(t.end) for t in plan.thresholds],
        "rel_floor": REL_FLOOR[cfg.run.dtype],
        "rank_rule": cfg.rank.rule,
        **starts.attrs,
    }
    if starts.weights is not None:
        attrs["eta_edge"] = [
            eta_edge([w[k] for w in starts.weights], plan.task) for k in range(len(plan.thresholds))
        ]
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


@with_float64
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
    plan = plan_run(cfg, devices)
    check_memory(plan, n_lanes, "simulate")
    starts = shared_starts(plan)
    with progress_bar(plan.n_lanes * cfg.run.steps, "simulate", progress) as bar:
        records, extra = run_chunks(plan, range(plan.n_chunks), starts, bar)
    return assemble(plan, records, extra, starts, time.perf_counter() - t0)
