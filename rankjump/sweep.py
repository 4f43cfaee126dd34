"""Sweeps: a run split into jobs that each write one file; resumable, merged into one result.

A job is a range of the run's chunks (:class:`rankjump.simulate.Plan`): the lanes it runs are
exactly those :func:`rankjump.simulate.simulate` runs in the same chunks, so the merged result
equals ``simulate`` of the same configuration. The output folder holds

    sweep.json        the configuration and the job partition (checked on --resume)
    starts.npz        the shared starting weights, when the configuration has them
    jobs/job-NNNNN.npz one file per finished job, written atomically (temporary name, rename)
    result.nc         the merged result

Resume skips jobs whose file exists; a file exists only once it is complete. How jobs are run
is the executor's business: :class:`InlineExecutor` runs them one after another in this process;
:class:`rankjump.cluster.SubmititExecutor` submits the same :func:`run_job` calls to Slurm (or to
local processes).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import NamedTuple, Protocol

import h5netcdf
import jax
import numpy as np
import xarray as xr

from rankjump.config import Config, config_to_toml, loads_config
from rankjump.kernel import Record
from rankjump.results import (
    ResultError,
    atomic_path,
    checkpoint_steps,
    lane_variables,
    load_result,
)
from rankjump.simulate import (
    Plan,
    Starts,
    assemble,
    check_memory,
    plan_run,
    progress_bar,
    run_chunks,
    shared_starts,
)

__all__ = [
    "Executor",
    "Job",
    "InlineExecutor",
    "SweepError",
    "job_trajectory_steps",
    "merge",
    "plan_jobs",
    "run_job",
    "sweep",
]

MANIFEST = "sweep.json"
STARTS = "starts.npz"
JOBS = "jobs"
RESULT = "result.nc"


class SweepError(ResultError):
    """The output folder does not fit the sweep (another configuration, a corrupt job file...)."""


class Job(NamedTuple):
    """One unit of work: chunks ``first .. last - 1`` of the run plan."""

    index: int
    first: int
    last: int

    @property
    def name(self) -> str:
        return f"job-{self.index:05d}.npz"


def plan_jobs(n_chunks: int, chunks_per_job: int) -> list[Job]:
    """Consecutive ranges of ``chunks_per_job`` chunks (the last may be shorter)."""
    return [
        Job(i, c, min(c + chunks_per_job, n_chunks))
        for i, c in enumerate(range(0, n_chunks, chunks_per_job))
    ]


class Executor(Protocol):
    """Runs the pending jobs of a sweep folder; ``bar.update(n)`` counts trajectory-steps."""

    name: str

    def run(self, out: Path, jobs: list[Job], bar) -> None: ...


class InlineExecutor:
    """Runs the jobs one after another in this process (progress inside each job's scan)."""

    name = "inline"

    def run(self, out: Path, jobs: list[Job], bar) -> None:
        for job in jobs:
            run_job(out, job, bar)


def _atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, synced, then rename it into
    place (:func:`rankjump.results.atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _manifest(cfg: Config, chunk: int, chunks_per_job: int, n_jobs: int) -> dict:
    return {
        "config": config_to_toml(cfg),
        "chunk": chunk,
        "chunks_per_job": chunks_per_job,
        "n_jobs": n_jobs,
    }


def _read_manifest(out: Path) -> dict:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise SweepError(f"{out / MANIFEST}: not a readable sweep manifest ({err})") from None


def _plan(out: Path) -> tuple[Plan, list[Job]]:
    """The plan and jobs of the sweep in ``out``, from its manifest.

    The chunk size is the manifest's, so a job computes the same lanes on any machine; the lane
    axis is sharded over as many local devices as divide it. The manifest is written last when a
    sweep starts, so a folder with one is complete.
    """
    m = _read_manifest(out)
    cfg = loads_config(m["config"], source=str(out / MANIFEST))
    devices = jax.devices()
    n_dev = max(n for n in range(1, len(devices) + 1) if m["chunk"] % n == 0)
    plan = plan_run(cfg, devices[:n_dev], chunk=m["chunk"])
    return plan, plan_jobs(plan.n_chunks, m["chunks_per_job"])


def _save_starts(out: Path, starts: Starts) -> None:
    if starts.weights is None:
        return
    arrays = {f"W{l + 1}": np.asarray(w) for l, w in enumerate(starts.weights)}
    attrs = np.asarray(json.dumps(starts.attrs))
    _atomic_write(out / STARTS, lambda f: np.savez(f, attrs=attrs, **arrays))


def _load_starts(out: Path, depth: int) -> Starts:
    path = out / STARTS
    if not path.exists():
        return Starts(None, {})
    with np.load(path) as data:
        weights = tuple(data[f"W{l + 1}"] for l in range(depth))
        return Starts(weights, json.loads(str(data["attrs"])))


def run_job(out: str | Path, job: Job, bar=None) -> Path:
    """Run one job of the sweep in ``out`` and write its file atomically (a no-op if it exists).

    Everything it needs is read from ``out``, so it runs the same in this process or on a
    cluster node.
    """
    out = Path(out)
    path = out / JOBS / job.name
    if path.exists():
        return path
    plan, _ = _plan(out)
    starts = _load_starts(out, plan.cfg.network.depth)
    t0 = time.perf_counter()
    records, extra = run_chunks(plan, range(job.first, job.last), starts, bar)
    wall = np.asarray(time.perf_counter() - t0)
    arrays = {f"rec_{k}": v for k, v in records._asdict().items()}
    arrays.update({f"extra_{k}": v for k, v in extra.items()})
    _atomic_write(path, lambda f: np.savez(f, wall_time=wall, **arrays))
    return path


def _job_lanes(plan: Plan, job: Job) -> int:
    return sum(plan.chunk_lanes(c)[1] for c in range(job.first, job.last))


def job_trajectory_steps(out: str | Path, jobs: list[Job]) -> list[int]:
    """Trajectory-steps each of ``jobs`` of the sweep in ``out`` runs (for progress bars)."""
    plan, _ = _plan(Path(out))
    return [_job_lanes(plan, job) * plan.cfg.run.steps for job in jobs]


def _load_job(out: Path, plan: Plan, job: Job) -> tuple[Record, dict, float]:
    path = out / JOBS / job.name
    try:
        with np.load(path) as data:
            records = Record(*(data[f"rec_{k}"] for k in Record._fields))
            extra = {k[6:]: data[k] for k in data.files if k.startswith("extra_")}
            wall = float(data["wall_time"])
    except (OSError, ValueError, KeyError) as err:
        raise SweepError(
            f"{path}: unreadable job file ({type(err).__name__}); delete it and rerun with --resume"
        ) from None
    if records.rank.shape[:2] != (_job_lanes(plan, job), plan.cfg.run.n_checkpoints):
        raise SweepError(f"{path}: holds the wrong number of lanes; delete it and rerun")
    return records, extra, wall


_TRAJ_CHUNK = 512  # trajectories per HDF5 chunk of the merged file


def merge(out: str | Path) -> Path:
    """Merge the job files of a finished sweep in ``out`` into ``out/result.nc``.

    The file is written job by job (an HDF5 file with a resizable trajectory axis), so memory
    holds one job's records at a time, whatever the number of trajectories; it is written under
    a temporary name and renamed, like every result file.
    """
    out = Path(out)
    plan, jobs = _plan(out)
    missing = [j.name for j in jobs if not (out / JOBS / j.name).exists()]
    if missing:
        raise SweepError(
            f"{out}: {len(missing)} of {len(jobs)} jobs unfinished (first {missing[0]}); "
            "rerun the sweep with --resume"
        )
    cfg = plan.cfg
    starts = _load_starts(out, cfg.network.depth)
    first, extra, _ = _load_job(out, plan, jobs[0])
    template = _template(plan, first, extra, starts)
    n_traj = cfg.run.trajectories
    encoding = {
        name: {
            "zlib": True,
            "complevel": 4,
            "chunksizes": tuple(
                min(n_traj, _TRAJ_CHUNK) if d == "traj" else (1 if d in ("lam", "eta") else n)
                for d, n in template[name].sizes.items()
            ),
        }
        for name in template.data_vars
    }
    # The trajectory coordinate needs chunks too: one chunk per value costs memory per chunk.
    encoding["traj"] = {"chunksizes": (min(n_traj, 1 << 16),)}
    path = out / RESULT
    with atomic_path(path) as tmp:
        template.to_netcdf(tmp, engine="h5netcdf", unlimited_dims=["traj"], encoding=encoding)
        wall = 0.0
        with h5netcdf.File(tmp, "a") as f:
            f.resize_dimension("traj", n_traj)
            f.variables["traj"][:] = np.arange(n_traj)
            lane = 0
            steps = checkpoint_steps(cfg)
            for job in jobs:
                records, extra, job_wall = _load_job(out, plan, job)
                wall += job_wall
                _write_lanes(f, plan, lane, lane_variables(records, steps), extra)
                lane += records.rank.shape[0]
            f.attrs["wall_time_s"] = wall
    return path


def _template(plan: Plan, records: Record, extra: dict, starts: Starts) -> xr.Dataset:
    """The result's schema (variables, dtypes, coordinates, attributes) with one trajectory."""
    cfg = plan.cfg
    n_cells = len(cfg.optimizer.lam) * len(cfg.optimizer.eta)
    one = Record(*(np.zeros((n_cells, *x.shape[1:]), x.dtype) for x in records))
    one_extra = {k: np.zeros(n_cells, v.dtype) for k, v in extra.items()}
    small = plan._replace(cfg=cfg.replace(run={"trajectories": 1}))
    ds = assemble(small, one, one_extra, starts, 0.0)
    ds.attrs["config"] = config_to_toml(cfg)
    return ds


def _write_lanes(f, plan: Plan, lane0: int, variables: dict, extra: dict) -> None:
    """Write per-lane values for lanes lane0, lane0 + 1, ... into their cells' slices."""
    n_traj, n_eta = plan.cfg.run.trajectories, len(plan.cfg.optimizer.eta)
    n = len(next(iter(variables.values()))[1])
    start = 0
    while start < n:
        cell, t0 = divmod(lane0 + start, n_traj)
        stop = min(n, start + n_traj - t0)  # the run of lanes in this cell
        i, j = divmod(cell, n_eta)
        t1 = t0 + stop - start
        for name, (_, values) in variables.items():
            part = np.asarray(values[start:stop])
            f.variables[name][i, j, t0:t1] = part.astype(f.variables[name].dtype)
        if j == 0:  # per-trajectory GD minima: the same in every eta cell
            for name, values in extra.items():
                f.variables[name][i, t0:t1] = values[start:stop]
        start = stop


def _only_leftovers(out: Path) -> bool:
    """Whether ``out`` holds nothing but what a sweep killed while starting leaves behind."""
    for p in out.iterdir():
        if p.name == JOBS and p.is_dir():
            if any(not q.name.startswith(".") for q in p.iterdir()):
                return False
        elif p.name != STARTS and not (p.name.startswith(".") and p.name.endswith(".tmp")):
            return False
    return True


def _prepare(cfg: Config, out: Path, resume: bool, chunks_per_job: int | None) -> None:
    """Create the sweep folder, or check that the one there is this sweep (``resume``)."""
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out}: exists and is not a directory")
    if not out.parent.is_dir():
        raise SweepError(f"--out {out}: directory {out.parent} does not exist")
    if (out / MANIFEST).exists():
        m = _read_manifest(out)
        if not resume:
            done = len(list((out / JOBS).glob("job-*.npz")))
            if done == m.get("n_jobs") and (out / RESULT).exists():
                raise SweepError(
                    f"--out {out}: holds a finished sweep (result: {out / RESULT}); choose another "
                    "folder, or pass --resume to merge it again"
                )
            raise SweepError(
                f"--out {out}: already holds a sweep ({done} of {m.get('n_jobs')} jobs done); "
                "pass --resume to continue it, or choose another folder"
            )
        if m.get("config") != config_to_toml(cfg):
            raise SweepError(
                f"--out {out}: holds a sweep of another configuration; choose another folder"
            )
        if chunks_per_job not in (None, m.get("chunks_per_job")):
            raise SweepError(
                f"--chunks-per-job {chunks_per_job}: the sweep in {out} has jobs of "
                f"{m.get('chunks_per_job')} chunks; resume without --chunks-per-job"
            )
        return
    if out.exists() and not _only_leftovers(out):
        raise SweepError(f"--out {out}: is not empty and holds no sweep; choose another folder")
    out.mkdir(exist_ok=True)
    (out / JOBS).mkdir(exist_ok=True)
    plan = plan_run(cfg)
    chunks_per_job = chunks_per_job or 1
    n_jobs = len(plan_jobs(plan.n_chunks, chunks_per_job))
    _save_starts(out, shared_starts(cfg))
    manifest = json.dumps(_manifest(cfg, plan.chunk, chunks_per_job, n_jobs), indent=1)
    _atomic_write(out / MANIFEST, lambda f: f.write(manifest.encode()))


def sweep(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    chunks_per_job: int | None = None,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> xr.Dataset:
    """Run ``cfg`` as a sweep in the folder ``out`` and write ``out/result.nc``.

    Args:
        cfg: a validated configuration.
        out: the sweep folder (created; it must be new, or hold this sweep with ``resume``).
        resume: continue a sweep in ``out``, skipping the jobs whose file exists.
        chunks_per_job: chunks of ``run.chunk_size`` lanes per job file (default 1; a resumed
            sweep keeps its own, and a different value is refused).
        executor: how jobs run (default :class:`InlineExecutor`).
        progress: progress bar in trajectory-steps (default: only on a terminal).

    Returns:
        The merged result ``out/result.nc``, opened lazily: its values equal ``simulate(cfg)``.
    """
    if chunks_per_job is not None and chunks_per_job < 1:
        raise SweepError(f"--chunks-per-job = {chunks_per_job}: must be >= 1")
    out = Path(out)
    check_memory(cfg, (chunks_per_job or 1) * cfg.run.chunk_size * len(jax.devices()), "sweep")
    _prepare(cfg, out, resume, chunks_per_job)
    plan, jobs = _plan(out)
    pending = [j for j in jobs if not (out / JOBS / j.name).exists()]
    per_lane = cfg.run.steps
    total = plan.n_lanes * per_lane
    done = total - sum(_job_lanes(plan, j) for j in pending) * per_lane
    executor = executor or InlineExecutor()
    with progress_bar(total, f"sweep ({executor.name})", progress) as bar:
        bar.update(done)
        executor.run(out, pending, bar)
    return load_result(merge(out), lazy=True)


def sweep_status(out: str | Path) -> tuple[int, int]:
    """(finished jobs, all jobs) of the sweep in ``out``; (0, 0) before it has a manifest."""
    out = Path(out)
    if not (out / MANIFEST).exists():
        return 0, 0
    m = _read_manifest(out)
    return len(list((out / JOBS).glob("job-*.npz"))), int(m["n_jobs"])
