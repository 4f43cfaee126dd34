"""The files of a sweep folder: the manifest, the shared starts and the job files.

    sweep.json         the configuration, the job partition, the starts' digest and the sweep's
                       fingerprint (a digest of all three, so an edit is seen)
    starts.npz         the shared starting weights, when the configuration has them
    jobs/job-NNNNN.npz one file per finished job: its arrays, its identity (the sweep's
                       fingerprint, its job index, chunks and lane range) and their checksum
    result.nc          the merged result (:mod:`rankjump.sweeps.merging`)

Each is written under a temporary name and renamed. A job file is taken for its job only when
its identity and checksum are right (:func:`check_job`); :func:`load_job` refuses any other.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from rankjump.config import Config, config_to_toml, loads_config
from rankjump.kernel import Record
from rankjump.results.atomic import atomic_path, deferred_signals
from rankjump.results.io import ResultError
from rankjump.simulation.plan import Plan, plan_run
from rankjump.simulation.starts import Starts

__all__ = [
    "JOBS",
    "MANIFEST",
    "RESULT",
    "STARTS",
    "Job",
    "SweepError",
    "check_job",
    "digest",
    "folder_plan",
    "job_lanes",
    "load_job",
    "load_starts",
    "new_manifest",
    "plan_jobs",
    "read_job",
    "read_manifest",
    "read_starts",
    "save_starts",
    "starts_digest",
    "write_job",
    "write_manifest",
]

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


def atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, synced, then rename it into
    place (:func:`rankjump.results.io.atomic_path`). Ctrl-C or SIGTERM during these short writes
    takes effect once the file is in place: an interrupt inside the archive writer can otherwise
    surface as another error from its cleanup."""
    with deferred_signals(), atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def digest(*parts) -> str:
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
    return digest(FORMAT, m["config"], m["chunk"], m["chunks_per_job"], m["starts"])


def new_manifest(cfg: Config, chunk: int, chunks_per_job: int, starts: str | None) -> dict:
    """The manifest of a sweep of ``cfg`` in jobs of ``chunks_per_job`` chunks of ``chunk``
    lanes, from the starts with digest ``starts`` (None: no shared starts)."""
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


def write_manifest(out: Path, m: dict) -> None:
    text = json.dumps(m, indent=1)
    atomic_write(out / MANIFEST, lambda f: f.write(text.encode()))


def read_manifest(out: Path) -> dict:
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


def folder_plan(out: Path, m: dict | None = None) -> tuple[Plan, list[Job]]:
    """The plan and jobs of the sweep in ``out``, from its manifest ``m`` (read if not given).

    The chunk size is the manifest's, so a job computes the same lanes on any machine; the lane
    axis is sharded over as many local devices as divide it. The manifest is written last when a
    sweep starts, so a folder with one is complete.
    """
    m = read_manifest(out) if m is None else m
    cfg = loads_config(m["config"], source=str(out / MANIFEST))
    devices = jax.devices()
    n_dev = max(n for n in range(1, len(devices) + 1) if m["chunk"] % n == 0)
    plan = plan_run(cfg, devices[:n_dev], chunk=m["chunk"])
    return plan, plan_jobs(plan.n_chunks, m["chunks_per_job"])


def job_lanes(plan: Plan, job: Job) -> int:
    return sum(plan.chunk_lanes(c)[1] for c in range(job.first, job.last))


def starts_digest(starts: Starts) -> str | None:
    if starts.weights is None:
        return None
    return digest(starts.attrs, *(np.asarray(w) for w in starts.weights))


def save_starts(out: Path, starts: Starts) -> None:
    if starts.weights is None:
        return
    arrays = {f"W{l + 1}": np.asarray(w) for l, w in enumerate(starts.weights)}
    attrs = np.asarray(json.dumps(starts.attrs))
    atomic_write(out / STARTS, lambda f: np.savez(f, attrs=attrs, **arrays))


def read_starts(out: Path, depth: int) -> Starts | None:
    """The weights in ``out/starts.npz``; None when it is missing or unreadable."""
    try:
        with open(out / STARTS, "rb") as fh, np.load(fh) as data:
            weights = tuple(data[f"W{l + 1}"] for l in range(depth))
            return Starts(weights, json.loads(str(data["attrs"])))
    except Exception:  # missing, truncated, not a zip, wrong names: all mean "no usable file"
        return None


def load_starts(out: Path, m: dict, depth: int) -> Starts:
    """The sweep's starts, checked against the manifest's digest."""
    if m["starts"] is None:
        return Starts(None, {})
    starts = read_starts(out, depth)
    if starts is None or starts_digest(starts) != m["starts"]:
        raise SweepError(
            f"{out / STARTS}: missing or not the starts of this sweep; rerun it with --resume"
        )
    return starts


def job_identity(m: dict, plan: Plan, job: Job) -> dict:
    """What a job file must say about itself to be merged into the sweep ``m``."""
    lane0 = job.first * plan.chunk
    return {
        "format": FORMAT,
        "sweep": m["fingerprint"],
        "config": digest(m["config"]),
        "chunk": m["chunk"],
        "chunks_per_job": m["chunks_per_job"],
        "starts": m["starts"],
        "job": job.index,
        "chunks": [job.first, job.last],
        "lanes": [lane0, lane0 + job_lanes(plan, job)],
    }


def read_job(path: Path) -> tuple[dict, dict]:
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
    if identity.get("checksum") != digest(*(arrays[k] for k in sorted(arrays))):
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


def _examine(out: Path, m: dict, plan: Plan, job: Job) -> tuple[str | None, dict]:
    """(why job ``job``'s file is not this job of this sweep or None when it is, its arrays)."""
    path = out / JOBS / job.name
    if not path.exists():
        return f"{path}: missing", {}
    try:
        arrays, identity = read_job(path)
    except SweepError as err:
        return str(err), {}
    return _job_problem(path, job_identity(m, plan, job), arrays, identity), arrays


def check_job(out: Path, m: dict, plan: Plan, job: Job) -> str | None:
    """None when job ``job``'s file is there and is this job of this sweep, else why not."""
    return _examine(out, m, plan, job)[0]


def write_job(out: Path, m: dict, plan: Plan, job: Job, arrays: dict) -> Path:
    """Write job ``job``'s ``arrays`` with its identity and their checksum, atomically."""
    identity = job_identity(m, plan, job)
    identity["checksum"] = digest(*(arrays[k] for k in sorted(arrays)))
    identity = np.asarray(json.dumps(identity))
    path = out / JOBS / job.name
    atomic_write(path, lambda f: np.savez(f, identity=identity, **arrays))
    return path


def load_job(out: Path, m: dict, plan: Plan, job: Job) -> tuple[Record, dict, float]:
    """Job ``job``'s records, GD extras and wall time, after checking its identity and
    checksum (:class:`SweepError` naming the file otherwise)."""
    problem, arrays = _examine(out, m, plan, job)
    if problem:
        raise SweepError(f"{problem}; rerun the sweep with --resume to recompute it")
    records = Record(*(arrays[f"rec_{k}"] for k in Record._fields))
    extra = {k[6:]: v for k, v in arrays.items() if k.startswith("extra_")}
    return records, extra, float(arrays["wall_time"])
