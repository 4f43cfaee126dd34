"""Merging a finished sweep's job files into one result file, streamed job by job."""

from __future__ import annotations

from pathlib import Path

import h5netcdf
import numpy as np
import xarray as xr

from rankjump.config import config_to_toml
from rankjump.kernel import Record
from rankjump.results.atomic import atomic_path
from rankjump.results.schema import checkpoint_steps, lane_variables
from rankjump.simulation.plan import Plan
from rankjump.simulation.runs import assemble
from rankjump.simulation.starts import Starts
from rankjump.sweeps.files import (
    JOBS,
    RESULT,
    SweepError,
    folder_plan,
    load_job,
    load_starts,
    read_manifest,
)

__all__ = ["merge"]


_TRAJ_CHUNK = 512  # trajectories per HDF5 chunk of the merged file


def merge(out: str | Path) -> Path:
    """Merge the job files of a finished sweep in ``out`` into ``out/result.nc``.

    The file is written job by job (an HDF5 file with a resizable trajectory axis), so memory
    holds one job's records at a time, whatever the number of trajectories; it is written under
    a temporary name and renamed, like every result file. Every job file's identity and
    checksum are checked as it is read: a file that is not its job of this sweep stops the merge
    (:class:`SweepError` naming it) and nothing is written.
    """
    out = Path(out)
    m = read_manifest(out)
    plan, jobs = folder_plan(out, m)
    missing = [j.name for j in jobs if not (out / JOBS / j.name).exists()]
    if missing:
        raise SweepError(
            f"{out}: {len(missing)} of {len(jobs)} jobs unfinished (first {missing[0]}); "
            "rerun the sweep with --resume"
        )
    cfg = plan.cfg
    starts = load_starts(out, m, cfg.network.depth)
    first, extra, _ = load_job(out, m, plan, jobs[0])
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
    try:
        with atomic_path(path) as tmp:
            template.to_netcdf(tmp, engine="h5netcdf", unlimited_dims=["traj"], encoding=encoding)
            wall = 0.0
            with h5netcdf.File(tmp, "a") as f:
                f.resize_dimension("traj", n_traj)
                f.variables["traj"][:] = np.arange(n_traj)
                lane = 0
                steps = checkpoint_steps(cfg)
                for job in jobs:
                    records, extra, job_wall = load_job(out, m, plan, job)
                    wall += job_wall
                    _write_lanes(f, plan, lane, lane_variables(records, steps), extra)
                    lane += records.rank.shape[0]
                f.attrs["wall_time_s"] = wall
    except OSError as err:
        raise SweepError(
            f"{path}: cannot write ({err.strerror or type(err).__name__}); the finished jobs "
            f"are kept in {out / JOBS}: rerun the sweep with --resume to merge them"
        ) from None
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
