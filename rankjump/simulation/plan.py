"""The run plan: everything the kernel needs from a configuration and the devices.

A :class:`Plan` fixes the lanes of a run in order (lam-major, then eta, then trajectory), their
chunks, the static :class:`rankjump.kernel.Structure` and the traced per-lane values
(:meth:`Plan.lane_params`); :func:`check_memory` refuses a run that would not fit before
anything is allocated. Trajectory t uses the key ``fold_in(root, t)`` in every cell (common
random numbers, :func:`lane_keys`), so its path depends neither on the chunk nor on the lanes
beside it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rankjump.config import Config
from rankjump.dynamics import hyper_for
from rankjump.kernel import LaneParams, Structure, new_lane_params
from rankjump.kernel.layout import block_size, tile_lanes
from rankjump.model.network import layer_shapes
from rankjump.model.ranks import thresholds_for
from rankjump.model.tasks import Task, make_task
from rankjump.results.io import ResultError

__all__ = [
    "Plan",
    "check_memory",
    "lane_keys",
    "plan_run",
    "record_bytes",
    "structure_for",
    "thresholds",
]


class Plan(NamedTuple):
    """Everything fixed about a run: the lanes in order, the chunking and the traced values.

    Lanes are ordered lam-major, then eta, then trajectory. Chunk c holds lanes
    ``c * chunk .. (c + 1) * chunk - 1`` (wrapped around to pad the last one), so a sweep job that
    runs some chunks computes exactly what :func:`rankjump.simulation.runs.simulate` computes for
    them.
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

    def lane_params(self, lanes) -> LaneParams:
        """The traced values of ``lanes`` (NumPy arrays in the run's dtype): lam and eta per
        schedule phase, the rank thresholds of their lam, and the configuration's scalars."""
        cfg, lanes = self.cfg, np.asarray(lanes)
        opt, run, dtype = cfg.optimizer, cfg.run, np.dtype(cfg.run.dtype)
        li, ei = self.lane_lam[lanes], self.lane_eta[lanes]
        lam_phases = np.outer(opt.lam, opt.factors("lam")).astype(dtype)  # (lam, phase)
        eta_phases = np.outer(opt.eta, opt.factors("eta")).astype(dtype)
        hyper = hyper_for(cfg, lam_phases[li], eta_phases[ei], lanes=lanes.shape)
        return new_lane_params(
            hyper=hyper,
            thr_layer=np.asarray([t.layer for t in self.thresholds], dtype)[li],
            thr_end=np.asarray([t.end for t in self.thresholds], dtype)[li],
            init_scale=cfg.network.init_scale,
            diverge_norm2=run.diverge_norm2,
            dtype=dtype,
            lanes=lanes.shape,
        )


def thresholds(cfg: Config, task: Task) -> list:
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


def structure_for(cfg: Config, devices=None) -> Structure:
    """The static settings of ``cfg`` on ``devices`` (default: all): they pick the program."""
    run, opt, net = cfg.run, cfg.optimizer, cfg.network
    devices = jax.devices() if devices is None else devices
    platform = devices[0].platform
    shapes = layer_shapes(cfg.task.d_out, cfg.task.d_in, net.width, net.depth)
    s = Structure(
        kind=opt.kind,
        shapes=shapes,
        batch_size=opt.batch_size,
        n_intervals=run.steps // run.record_every,
        record_every=run.record_every,
        block=block_size(run.record_every),
        dtype=run.dtype,
        k_max=cfg.k_max,
        init=net.init if net.init in ("gaussian", "balanced") else "given",
        init_rank=net.init_rank or 0,
        n_phases=opt.n_phases,
        platform=platform,
        rule=cfg.rank.rule,
    )
    return s._replace(tile=tile_lanes(shapes, run.dtype) if s.layout.cache_tiles else 0)


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
        cfg=cfg,
        task=task,
        structure=structure_for(cfg, devices=devices),
        thresholds=thresholds(cfg, task),
        lane_lam=lane_lam,
        lane_eta=lane_eta,
        lane_traj=lane_traj,
        chunk=chunk,
        devices=devices,
    )


def lane_keys(seed: int, traj) -> jax.Array:
    """The keys of trajectories ``traj``: ``fold_in(PRNGKey(seed), t)`` (the same in every cell)."""
    root = jax.random.PRNGKey(seed)
    return jax.vmap(functools.partial(jax.random.fold_in, root))(jnp.asarray(traj, jnp.uint32))


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


def check_memory(plan: Plan, lanes_held: int, command: str) -> None:
    """Refuse, before anything is allocated, a run of ``plan`` whose records (``lanes_held``
    lanes held at once, twice: the records and the Dataset made of them) and one chunk's arrays
    would not fit in the memory available now."""
    cfg = plan.cfg
    run = cfg.run
    weights = sum(r * c for r, c in plan.structure.shapes) * np.dtype(run.dtype).itemsize
    chunk = min(run.chunk_size, lanes_held) * len(plan.devices)
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
