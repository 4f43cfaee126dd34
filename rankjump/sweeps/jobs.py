"""Sweeps: a run split into jobs that each write one file; resumable, merged into one result.

A job is a range of the run's chunks (:class:`rankjump.simulation.plan.Plan`): the lanes it runs are
exactly those :func:`rankjump.simulation.runs.simulate` runs in the same chunks, so the merged
result equals ``simulate`` of the same configuration. The folder's files, and how a job file proves
it is its job of this sweep, are in :mod:`rankjump.sweeps.files`.

Resume reuses exactly the job files whose identity and checksum are right and recomputes the
others (missing, truncated, corrupt, from another job or another sweep), with a note naming each;
a lost or edited ``sweep.json`` is rebuilt from the configuration and the job files' identities;
a lost or stale ``starts.npz`` is recomputed, or refused when recomputing gives other weights
than the finished jobs used. How jobs are run is the executor's business:
:class:`InlineExecutor` runs them one after another in this process;
:class:`rankjump.sweeps.cluster.SubmititExecutor` submits the same :func:`run_job` calls to Slurm
(or to local processes).
"""

from __future__ import annotations

import collections
import logging
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import xarray as xr

from rankjump.config import Config, config_to_toml, loads_config
from rankjump.results.io import load_result
from rankjump.results.locks import output_lock
from rankjump.runtime.precision import with_float64
from rankjump.simulation.plan import Plan, check_memory, plan_run
from rankjump.simulation.runs import progress_bar, run_chunks
from rankjump.simulation.starts import shared_starts
from rankjump.sweeps.files import (
    JOBS,
    MANIFEST,
    RESULT,
    STARTS,
    Job,
    SweepError,
    check_job,
    digest,
    folder_plan,
    job_lanes,
    load_starts,
    new_manifest,
    read_job,
    read_manifest,
    read_starts,
    save_starts,
    starts_digest,
    write_job,
    write_manifest,
)
from rankjump.sweeps.merging import merge

__all__ = [
    "Executor",
    "InlineExecutor",
    "job_trajectory_steps",
    "run_job",
    "sweep",
    "sweep_status",
]

log = logging.getLogger(__name__)


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


@with_float64
def run_job(out: str | Path, job: Job, bar=None) -> Path:
    """Run one job of the sweep in ``out`` and write its file atomically (a no-op when the
    file there already is this job of this sweep).

    Everything it needs is read from ``out``, so it runs the same in this process or on a
    cluster node.
    """
    out = Path(out)
    path = out / JOBS / job.name
    m = read_manifest(out)
    plan, _ = folder_plan(out, m)
    if check_job(out, m, plan, job) is None:
        return path
    starts = load_starts(out, m, plan.cfg.network.depth)
    t0 = time.perf_counter()
    records, extra = run_chunks(plan, range(job.first, job.last), starts, bar)
    arrays = {f"rec_{k}": np.asarray(v) for k, v in records._asdict().items()}
    arrays.update({f"extra_{k}": np.asarray(v) for k, v in extra.items()})
    arrays["wall_time"] = np.asarray(time.perf_counter() - t0)
    return write_job(out, m, plan, job, arrays)


def job_trajectory_steps(out: str | Path, jobs: list[Job]) -> list[int]:
    """Trajectory-steps each of ``jobs`` of the sweep in ``out`` runs (for progress bars)."""
    plan, _ = folder_plan(Path(out))
    return [job_lanes(plan, job) * plan.cfg.run.steps for job in jobs]


def only_leftovers(out: Path) -> bool:
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
            found.append(read_job(path)[1])
        except SweepError:
            continue
    return found


def check_chunks_per_job(m_value: int, given: int | None, out: Path) -> None:
    if given not in (None, m_value):
        raise SweepError(
            f"--chunks-per-job {given}: the sweep in {out} has jobs of {m_value} chunks; "
            "resume without --chunks-per-job"
        )


def check_starts(out: Path, plan: Plan, m: dict) -> None:
    """Recompute ``starts.npz`` when it is missing or not the manifest's; refuse when the
    recomputed starts are not those the sweep's jobs were computed from."""
    if m["starts"] is None:
        return
    found = read_starts(out, plan.cfg.network.depth)
    if found is not None and starts_digest(found) == m["starts"]:
        return
    what = "missing or unreadable" if found is None else "not the starts of this sweep"
    starts = shared_starts(plan)
    if starts_digest(starts) != m["starts"]:
        raise SweepError(
            f"{out / STARTS}: {what}, and the starts recomputed from the configuration are not "
            "those the sweep's jobs used (an init file changed?); restore the file or start a "
            "new sweep folder"
        )
    save_starts(out, starts)
    log.warning("%s: %s; recomputed from the configuration", out / STARTS, what)


def rebuild_manifest(plan: Plan, out: Path, chunks_per_job: int | None, why: str) -> None:
    """Write a manifest for ``cfg`` in ``out``, taking the job partition and starts of the job
    files there that belong to a sweep of ``cfg``, so they are reused."""
    cfg = plan.cfg
    toml = config_to_toml(cfg)
    mine = [i for i in _identities(out) if i.get("config") == digest(toml)]
    if mine:
        counts = collections.Counter((i["chunk"], i["chunks_per_job"], i["starts"]) for i in mine)
        chunk, per_job, starts_id = counts.most_common(1)[0][0]
        check_chunks_per_job(per_job, chunks_per_job, out)
    else:
        chunk, per_job, starts_id = plan.chunk, chunks_per_job or 1, None
    starts = read_starts(out, cfg.network.depth)
    if starts is None or starts_id is None or starts_digest(starts) != starts_id:
        starts = shared_starts(plan)
        save_starts(out, starts)
    write_manifest(out, new_manifest(cfg, chunk, per_job, starts_digest(starts)))
    found = f"{len(mine)} job file{'s' * (len(mine) != 1)} of it found"
    log.warning("%s: %s; rebuilt from the configuration (%s)", out / MANIFEST, why, found)


def _prepare(plan: Plan, out: Path, resume: bool, chunks_per_job: int | None) -> None:
    """Create the sweep folder, or check that the one there is this sweep (``resume``)."""
    cfg = plan.cfg
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
            m = read_manifest(out)
        except SweepError as err:
            rebuild_manifest(plan, out, chunks_per_job, str(err).split(": ", 1)[1])
            return
        # Parsed, not as text: a field added since the sweep began reads as its default.
        if loads_config(m["config"], source=str(out / MANIFEST)) != cfg:
            raise SweepError(
                f"--out {out}: holds a sweep of another configuration; choose another folder"
            )
        check_chunks_per_job(m["chunks_per_job"], chunks_per_job, out)
        check_starts(out, plan, m)
        return
    if out.exists() and not only_leftovers(out):
        raise SweepError(f"--out {out}: is not empty and holds no sweep; choose another folder")
    out.mkdir(exist_ok=True)
    (out / JOBS).mkdir(exist_ok=True)
    starts = shared_starts(plan)
    save_starts(out, starts)
    write_manifest(out, new_manifest(cfg, plan.chunk, chunks_per_job or 1, starts_digest(starts)))


def _status_words(out: Path) -> str:
    done, total = sweep_status(out)
    if not total:
        return f"{done} job files and no readable {MANIFEST}"
    words = f"{done} of {total} jobs done"
    if done == total and (out / RESULT).exists():
        words += f", merged into {out / RESULT}"
    return words


@with_float64
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
            Another process running a sweep there is refused
            (:func:`rankjump.results.locks.output_lock`).
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
    plan = plan_run(cfg)
    lanes_held = (chunks_per_job or 1) * cfg.run.chunk_size * len(plan.devices)
    check_memory(plan, lanes_held, "sweep")
    with output_lock(out):  # one sweep at a time in a folder: the others are refused
        _prepare(plan, out, resume, chunks_per_job)
        m = read_manifest(out)
        plan, jobs = folder_plan(out, m)
        pending = []
        for job in jobs:
            problem = check_job(out, m, plan, job)
            if problem:
                pending.append(job)
                if not problem.endswith(": missing"):
                    log.warning("%s; recomputing it", problem)
        per_lane = cfg.run.steps
        total = plan.n_lanes * per_lane
        done = total - sum(job_lanes(plan, j) for j in pending) * per_lane
        executor = executor or InlineExecutor()
        with progress_bar(total, f"sweep ({executor.name})", progress) as bar:
            bar.update(done)
            executor.run(out, pending, bar)
        merged = merge(out)
    return load_result(merged, lazy=True)


def sweep_status(out: str | Path) -> tuple[int, int]:
    """(job files, all jobs) of the sweep in ``out``; all jobs is 0 without a readable manifest.

    Job files are counted, not checked (resume checks them).
    """
    out = Path(out)
    done = len(list((out / JOBS).glob("job-*.npz"))) if (out / JOBS).is_dir() else 0
    try:
        return done, int(read_manifest(out)["n_jobs"])
    except SweepError:
        return done, 0
