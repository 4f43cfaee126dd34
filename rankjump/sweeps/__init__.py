"""Sweeps: a run split into resumable jobs that each write one file, merged into one result.

- :mod:`~rankjump.sweeps.jobs`: :func:`sweep` (prepare, run the jobs through an executor,
  merge), :func:`run_job`, :class:`InlineExecutor`;
- :mod:`~rankjump.sweeps.files`: the folder's files (manifest, starts, job files) and how a job
  file proves it is its job of this sweep;
- :mod:`~rankjump.sweeps.merging`: :func:`merge`, the job files streamed into one result file;
- :mod:`~rankjump.sweeps.cluster`: :class:`SubmititExecutor`, the same jobs on Slurm or as local
  processes (the ``cluster`` extra).

Sweeps sit on :mod:`rankjump.simulation`: a job runs exactly the chunks ``simulate`` runs.
"""

from rankjump.sweeps.cluster import SubmititExecutor
from rankjump.sweeps.files import (
    JOBS,
    MANIFEST,
    RESULT,
    STARTS,
    Job,
    SweepError,
    plan_jobs,
)
from rankjump.sweeps.jobs import (
    Executor,
    InlineExecutor,
    job_trajectory_steps,
    run_job,
    sweep,
    sweep_status,
)
from rankjump.sweeps.merging import merge

__all__ = [
    "JOBS",
    "MANIFEST",
    "RESULT",
    "STARTS",
    "Executor",
    "InlineExecutor",
    "Job",
    "SubmititExecutor",
    "SweepError",
    "job_trajectory_steps",
    "merge",
    "plan_jobs",
    "run_job",
    "sweep",
    "sweep_status",
]
