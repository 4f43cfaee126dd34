"""Sweeps: a run split into jobs that each write one file; resumable, merged into one result.

A job is a range of the run's chunks (:class:`rankjump.simulate.Plan`): the lanes it runs are
exactly those :func:`rankjump.simulate.simulate` runs in the same chunks, so the merged result
equals ``simulate`` of the same configuration. The output folder holds

    sweep.json        the configuration, the job partition, the starts' digest and the sweep's
                      fingerprint (a digest of all three)
    starts.npz        the shared starting weights, when the configuration has them
    jobs/job-NNNNN.npz one file per finished job, written atomically (temporary name, rename)
    result.nc         the merged result

Every job file carries its identity (the sweep's fingerprint, its job index, chunk and lane
range) and a checksum of its arrays. Resume reuses exactly the job files whose identity and
checksum are right and recomputes the others (missing, truncated, corrupt, from another job or
another sweep), saying which and why; ``merge`` refuses a folder with such a file, naming it, so
foreign data is never merged. A lost or edited ``sweep.json`` is rebuilt on resume from the
configuration and the job files' identities, and a lost or stale ``starts.npz`` is recomputed
(or, when recomputing gives other weights than the finished jobs used, refused). How jobs are run
is the executor's business: :class:`InlineExecutor` runs them one after another in this process;
:class:`rankjump.cluster.SubmititExecutor` submits the same :func:`run_job` calls to Slurm (or to
local processes).
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
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

log = logging.getLogger(__name__)

FORMAT = "rankjump-sweep-2"  # the manifest's and job files' layout
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


def _digest(*parts) -> str:
    """SHA-256 of JSON values and NumPy arrays (dtype, shape and bytes), in order."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype.str}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).reshape(-1).view(np.uint8))
        else:
            h.update(json.dumps(part, sort_keys=True).encode())
        h.update(b"\0")
    return h.hexdigest()


def _fingerprint(m: dict) -> str:
    """The sweep's fingerprint: its configuration, job partition and starts."""
    return _digest(FORMAT, m["config"], m["chunk"], m["chunks_per_job"], m["starts"])


def _manifest(cfg: Config, chunk: int, chunks_per_job: int, starts: str | None) -> dict:
    m = {
        "format": FORMAT,
        "config": config_to_toml(cfg),
        "chunk": chunk,
        "chunks_per_job": chunks_per_job,
        "starts": starts,
    }
    plan = plan_run(cfg, chunk=chunk)
    m["n_jobs"] = len(plan_jobs(plan.n_chunks, chunks_per_job))
    m["fingerprint"] = _fingerprint(m)
    return m


def _write_manifest(out: Path, m: dict) -> None:
    text = json.dumps(m, indent=1)
    _atomic_write(out / MANIFEST, lambda f: f.write(text.encode()))


def _read_manifest(out: Path) -> dict:
    """The manifest of ``out``, checked against its own fingerprint (so an edit is seen)."""
    path = out / MANIFEST
    if not path.exists():
        raise SweepError(f"{path}: missing")
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SweepError(f"{path}: not a readable sweep manifest ({type(err).__name__})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise SweepError(f"{path}: not a {FORMAT} manifest (from another rankjump version?)")
    try:
        fingerprint = _fingerprint(m)
        loads_config(m["config"], source=str(path))
    except (KeyError, TypeError, ValueError):
        raise SweepError(f"{path}: incomplete sweep manifest") from None
    if m.get("fingerprint") != fingerprint:
        raise SweepError(f"{path}: edited since the sweep wrote it (fingerprint mismatch)")
    return m


def _plan(out: Path, m: dict | None = None) -> tuple[Plan, list[Job]]:
    """The plan and jobs of the sweep in ``out``, from its manifest ``m`` (read if not given).

    The chunk size is the manifest's, so a job computes the same lanes on any machine; the lane
    axis is sharded over as many local devices as divide it. The manifest is written last when a
    sweep starts, so a folder with one is complete.
    """
    m = _read_manifest(out) if m is None else m
    cfg = loads_config(m["config"], source=str(out / MANIFEST))
    devices = jax.devices()
    n_dev = max(n for n in range(1, len(devices) + 1) if m["chunk"] % n == 0)
    plan = plan_run(cfg, devices[:n_dev], chunk=m["chunk"])
    return plan, plan_jobs(plan.n_chunks, m["chunks_per_job"])


def _starts_digest(starts: Starts) -> str | None:
    if starts.weights is None:
        return None
    return _digest(starts.attrs, *(np.asarray(w) for w in starts.weights))


def _save_starts(out: Path, starts: Starts) -> None:
    if starts.weights is None:
        return
    arrays = {f"W{l + 1}": np.asarray(w) for l, w in enumerate(starts.weights)}
    attrs = np.asarray(json.dumps(starts.attrs))
    _atomic_write(out / STARTS, lambda f: np.savez(f, attrs=attrs, **arrays))


def _read_starts(out: Path, depth: int) -> Starts | None:
    """The weights in ``out/starts.npz``; None when it is missing or unreadable."""
    try:
        with open(out / STARTS, "rb") as fh, np.load(fh) as data:
            weights = tuple(data[f"W{l + 1}"] for l in range(depth))
            return Starts(weights, json.loads(str(data["attrs"])))
    except Exception:  # missing, truncated, not a zip, wrong names: all mean "no usable file"
        return None


def _load_starts(out: Path, m: dict, depth: int) -> Starts:
    """The sweep's starts, checked against the manifest's digest."""
    if m["starts"] is None:
        return Starts(None, {})
    starts = _read_starts(out, depth)
    if starts is None or _starts_digest(starts) != m["starts"]:
        raise SweepError(
            f"{out / STARTS}: missing or not the starts of this sweep; rerun it with --resume"
        )
    return starts


def _job_identity(m: dict, plan: Plan, job: Job) -> dict:
    """What a job file must say about itself to be merged into the sweep ``m``."""
    lane0 = job.first * plan.chunk
    return {
        "format": FORMAT,
        "sweep": m["fingerprint"],
        "config": _digest(m["config"]),
        "chunk": m["chunk"],
        "chunks_per_job": m["chunks_per_job"],
        "starts": m["starts"],
        "job": job.index,
        "chunks": [job.first, job.last],
        "lanes": [lane0, lane0 + _job_lanes(plan, job)],
    }


def _read_job(path: Path) -> tuple[dict, dict]:
    """A job file's arrays and identity; SweepError when it cannot be read."""
    try:
        with open(path, "rb") as fh, np.load(fh) as data:  # our handle: closed on any error
            arrays = {k: data[k] for k in data.files}
        identity = json.loads(str(arrays.pop("identity")))
        if not isinstance(identity, dict):
            raise ValueError
    except KeyError:
        raise SweepError(f"{path}: has no identity (written by an older rankjump)") from None
    except Exception as err:  # truncated or damaged: zipfile, zlib, numpy and json all raise
        raise SweepError(f"{path}: unreadable ({type(err).__name__})") from None
    return arrays, identity


def _job_problem(path: Path, want: dict, arrays: dict, identity: dict) -> str | None:
    """Why the job file at ``path`` is not the job ``want`` describes; None when it is."""
    if identity.get("checksum") != _digest(*(arrays[k] for k in sorted(arrays))):
        return f"{path}: corrupt (its checksum does not match its contents)"
    got = {k: v for k, v in identity.items() if k != "checksum"}
    if got == want:
        return None
    if got.get("sweep") == want["sweep"]:
        return f"{path}: holds job {got.get('job')} of this sweep, not job {want['job']}"
    if got.get("config") != want["config"]:
        return f"{path}: belongs to a sweep of another configuration"
    if got.get("starts") != want["starts"]:
        return f"{path}: was computed from other starting weights"
    return f"{path}: belongs to a sweep with another job partition"


def _check_job(out: Path, m: dict, plan: Plan, job: Job) -> str | None:
    """None when job ``job``'s file is there and is this job of this sweep, else why not."""
    path = out / JOBS / job.name
    if not path.exists():
        return f"{path}: missing"
    try:
        arrays, identity = _read_job(path)
    except SweepError as err:
        return str(err)
    return _job_problem(path, _job_identity(m, plan, job), arrays, identity)


def run_job(out: str | Path, job: Job, bar=None) -> Path:
    """Run one job of the sweep in ``out`` and write its file atomically (a no-op when the
    file there already is this job of this sweep).

    Everything it needs is read from ``out``, so it runs the same in this process or on a
    cluster node.
    """
    out = Path(out)
    path = out / JOBS / job.name
    m = _read_manifest(out)
    plan, _ = _plan(out, m)
    if _check_job(out, m, plan, job) is None:
        return path
    starts = _load_starts(out, m, plan.cfg.network.depth)
    t0 = time.perf_counter()
    records, extra = run_chunks(plan, range(job.first, job.last), starts, bar)
    arrays = {f"rec_{k}": np.asarray(v) for k, v in records._asdict().items()}
    arrays.update({f"extra_{k}": np.asarray(v) for k, v in extra.items()})
    arrays["wall_time"] = np.asarray(time.perf_counter() - t0)
    identity = _job_identity(m, plan, job)
    identity["checksum"] = _digest(*(arrays[k] for k in sorted(arrays)))
    identity = np.asarray(json.dumps(identity))
    _atomic_write(path, lambda f: np.savez(f, identity=identity, **arrays))
    return path


def _job_lanes(plan: Plan, job: Job) -> int:
    return sum(plan.chunk_lanes(c)[1] for c in range(job.first, job.last))


def job_trajectory_steps(out: str | Path, jobs: list[Job]) -> list[int]:
    """Trajectory-steps each of ``jobs`` of the sweep in ``out`` runs (for progress bars)."""
    plan, _ = _plan(Path(out))
    return [_job_lanes(plan, job) * plan.cfg.run.steps for job in jobs]


def _load_job(out: Path, m: dict, plan: Plan, job: Job) -> tuple[Record, dict, float]:
    """Job ``job``'s records, GD extras and wall time, after checking its identity and
    checksum (:class:`SweepError` naming the file otherwise)."""
    path = out / JOBS / job.name
    try:
        arrays, identity = _read_job(path)
        problem = _job_problem(path, _job_identity(m, plan, job), arrays, identity)
    except SweepError as err:
        problem = str(err)
    if problem:
        raise SweepError(f"{problem}; rerun the sweep with --resume to recompute it")
    records = Record(*(arrays[f"rec_{k}"] for k in Record._fields))
    extra = {k[6:]: v for k, v in arrays.items() if k.startswith("extra_")}
    return records, extra, float(arrays["wall_time"])


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
    m = _read_manifest(out)
    plan, jobs = _plan(out, m)
    missing = [j.name for j in jobs if not (out / JOBS / j.name).exists()]
    if missing:
        raise SweepError(
            f"{out}: {len(missing)} of {len(jobs)} jobs unfinished (first {missing[0]}); "
            "rerun the sweep with --resume"
        )
    cfg = plan.cfg
    starts = _load_starts(out, m, cfg.network.depth)
    first, extra, _ = _load_job(out, m, plan, jobs[0])
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
                    records, extra, job_wall = _load_job(out, m, plan, job)
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


def _only_leftovers(out: Path) -> bool:
    """Whether ``out`` holds nothing but what a sweep killed while starting leaves behind."""
    for p in out.iterdir():
        if p.name == JOBS and p.is_dir():
            if any(not q.name.startswith(".") for q in p.iterdir()):
                return False
        elif p.name != STARTS and not (p.name.startswith(".") and p.name.endswith(".tmp")):
            return False
    return True


def _identities(out: Path) -> list[dict]:
    """The identities of the readable job files in ``out`` (to rebuild a lost manifest)."""
    found = []
    for path in sorted((out / JOBS).glob("job-*.npz")):
        try:
            found.append(_read_job(path)[1])
        except SweepError:
            continue
    return found


def _chunks_per_job(m_value: int, given: int | None, out: Path) -> None:
    if given not in (None, m_value):
        raise SweepError(
            f"--chunks-per-job {given}: the sweep in {out} has jobs of {m_value} chunks; "
            "resume without --chunks-per-job"
        )


def _check_starts(out: Path, cfg: Config, m: dict) -> None:
    """Recompute ``starts.npz`` when it is missing or not the manifest's; refuse when the
    recomputed starts are not those the sweep's jobs were computed from."""
    if m["starts"] is None:
        return
    found = _read_starts(out, cfg.network.depth)
    if found is not None and _starts_digest(found) == m["starts"]:
        return
    what = "missing or unreadable" if found is None else "not the starts of this sweep"
    starts = shared_starts(cfg)
    if _starts_digest(starts) != m["starts"]:
        raise SweepError(
            f"{out / STARTS}: {what}, and the starts recomputed from the configuration are not "
            "those the sweep's jobs used (an init file changed?); restore the file or start a "
            "new sweep folder"
        )
    _save_starts(out, starts)
    log.warning("%s: %s; recomputed from the configuration", out / STARTS, what)


def _rebuild_manifest(cfg: Config, out: Path, chunks_per_job: int | None, why: str) -> None:
    """Write a manifest for ``cfg`` in ``out``, taking the job partition and starts of the job
    files there that belong to a sweep of ``cfg``, so they are reused."""
    toml = config_to_toml(cfg)
    mine = [i for i in _identities(out) if i.get("config") == _digest(toml)]
    if mine:
        counts = collections.Counter((i["chunk"], i["chunks_per_job"], i["starts"]) for i in mine)
        chunk, per_job, digest = counts.most_common(1)[0][0]
        _chunks_per_job(per_job, chunks_per_job, out)
    else:
        chunk, per_job, digest = plan_run(cfg).chunk, chunks_per_job or 1, None
    starts = _read_starts(out, cfg.network.depth)
    if starts is None or digest is None or _starts_digest(starts) != digest:
        starts = shared_starts(cfg)
        _save_starts(out, starts)
    _write_manifest(out, _manifest(cfg, chunk, per_job, _starts_digest(starts)))
    found = f"{len(mine)} job file{'s' * (len(mine) != 1)} of it found"
    log.warning("%s: %s; rebuilt from the configuration (%s)", out / MANIFEST, why, found)


def _prepare(cfg: Config, out: Path, resume: bool, chunks_per_job: int | None) -> None:
    """Create the sweep folder, or check that the one there is this sweep (``resume``)."""
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out}: exists and is not a directory")
    if not out.parent.is_dir():
        raise SweepError(f"--out {out}: directory {out.parent} does not exist")
    has_jobs = (out / JOBS).is_dir() and any((out / JOBS).glob("job-*.npz"))
    if (out / MANIFEST).exists() or has_jobs:
        if not resume:
            raise SweepError(
                f"--out {out}: already holds a sweep ({_status_words(out)}); pass --resume to "
                "continue it (its job files are checked and reused), or choose another folder"
            )
        (out / JOBS).mkdir(exist_ok=True)
        try:
            m = _read_manifest(out)
        except SweepError as err:
            _rebuild_manifest(cfg, out, chunks_per_job, str(err).split(": ", 1)[1])
            return
        if m["config"] != config_to_toml(cfg):
            raise SweepError(
                f"--out {out}: holds a sweep of another configuration; choose another folder"
            )
        _chunks_per_job(m["chunks_per_job"], chunks_per_job, out)
        _check_starts(out, cfg, m)
        return
    if out.exists() and not _only_leftovers(out):
        raise SweepError(f"--out {out}: is not empty and holds no sweep; choose another folder")
    out.mkdir(exist_ok=True)
    (out / JOBS).mkdir(exist_ok=True)
    starts = shared_starts(cfg)
    _save_starts(out, starts)
    chunk = plan_run(cfg).chunk
    _write_manifest(out, _manifest(cfg, chunk, chunks_per_job or 1, _starts_digest(starts)))


def _status_words(out: Path) -> str:
    done, total = sweep_status(out)
    if not total:
        return f"{done} job files and no readable {MANIFEST}"
    words = f"{done} of {total} jobs done"
    if done == total and (out / RESULT).exists():
        words += f", merged into {out / RESULT}"
    return words


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
        resume: continue the sweep in ``out``: job files whose identity and checksum are this
            sweep's are reused, the others recomputed (a lost ``sweep.json`` is rebuilt).
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
    m = _read_manifest(out)
    plan, jobs = _plan(out, m)
    pending = []
    for job in jobs:
        problem = _check_job(out, m, plan, job)
        if problem:
            pending.append(job)
            if not problem.endswith(": missing"):
                log.warning("%s; recomputing it", problem)
    per_lane = cfg.run.steps
    total = plan.n_lanes * per_lane
    done = total - sum(_job_lanes(plan, j) for j in pending) * per_lane
    executor = executor or InlineExecutor()
    with progress_bar(total, f"sweep ({executor.name})", progress) as bar:
        bar.update(done)
        executor.run(out, pending, bar)
    return load_result(merge(out), lazy=True)


def sweep_status(out: str | Path) -> tuple[int, int]:
    """(job files, all jobs) of the sweep in ``out``; all jobs is 0 without a readable manifest.

    Job files are counted, not checked (resume checks them).
    """
    out = Path(out)
    done = len(list((out / JOBS).glob("job-*.npz"))) if (out / JOBS).is_dir() else 0
    try:
        return done, int(_read_manifest(out)["n_jobs"])
    except SweepError:
        return done, 0
