"""Sweep jobs on a Slurm cluster, or as separate processes on this machine, through submitit.

Needs the ``cluster`` extra (``pip install "rankjump[cluster]"``). Every job is the same
:func:`rankjump.sweeps.jobs.run_job` call the in-process executor makes: it reads the configuration
and the shared starts from the sweep folder and writes its job file atomically, so a job that is
killed, preempted or run twice leaves no partial result, and ``--resume`` skips finished ones.
submitit's own files (pickled calls, logs) go to ``DIR/submitit``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rankjump.sweeps.files import Job, SweepError
from rankjump.sweeps.jobs import job_trajectory_steps, run_job

__all__ = ["SubmititExecutor"]


class SubmititExecutor:
    """Runs sweep jobs through submitit.

    Args:
        cluster: "slurm" (a Slurm job array) or "local" (submitit's local executor: each job a
            separate process on this machine, the path the Slurm jobs take).
        partition: Slurm partition.
        time_min: time limit of each job, in minutes.
        gpus: GPUs per job (the lane axis is sharded over all GPUs a job sees).
        cpus: CPU cores per job.
        parallel: jobs running at once (Slurm: the array's parallelism; local: default 1).
    """

    def __init__(
        self,
        cluster: str = "slurm",
        *,
        partition: str | None = None,
        time_min: int = 60,
        gpus: int = 0,
        cpus: int | None = None,
        parallel: int | None = None,
    ):
        if cluster not in ("slurm", "local"):
            raise SweepError(f"--executor {cluster}: must be slurm or local")
        for name, value, low in (("time", time_min, 1), ("gpus", gpus, 0), ("cpus", cpus, 1)):
            if value is not None and value < low:
                raise SweepError(f"--{name} = {value}: must be >= {low}")
        if parallel is not None and parallel < 1:
            raise SweepError(f"--parallel = {parallel}: must be >= 1")
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise SweepError(
                f'--executor {cluster} needs submitit: pip install "rankjump[cluster]"'
            ) from None
        if cluster == "slurm" and shutil.which("sbatch") is None and shutil.which("srun") is None:
            raise SweepError("--executor slurm: no Slurm here (sbatch and srun not found on PATH)")
        self.cluster = cluster
        self.partition = partition
        self.time_min = time_min
        self.gpus = gpus
        self.cpus = cpus
        self.parallel = parallel

    @property
    def name(self) -> str:
        return self.cluster

    def _executor(self, out: Path):
        import submitit

        try:
            ex = submitit.AutoExecutor(folder=out / "submitit", cluster=self.cluster)
        except RuntimeError as err:  # e.g. no srun: not on a Slurm cluster
            raise SweepError(f"--executor {self.cluster}: {err}") from None
        params = {
            "timeout_min": self.time_min,
            "name": "rankjump-sweep",
            "gpus_per_node": self.gpus,
        }
        if self.cpus is not None:
            params["cpus_per_task"] = self.cpus
        if self.cluster == "slurm":
            if self.partition is not None:
                params["slurm_partition"] = self.partition
            if self.parallel is not None:
                params["slurm_array_parallelism"] = self.parallel
        ex.update_parameters(**params)
        return ex, submitit.helpers.as_completed

    def run(self, out: Path, jobs: list[Job], bar) -> None:
        """Submit the jobs (a Slurm array, or waves of ``parallel`` local processes) and wait."""
        out = Path(out)
        if not jobs:
            return
        ex, as_completed = self._executor(out)
        wave = len(jobs) if self.cluster == "slurm" else (self.parallel or 1)
        for first in range(0, len(jobs), wave):
            part = jobs[first : first + wave]
            handles = ex.map_array(run_job, [str(out)] * len(part), part)
            owner = {h.job_id: job for h, job in zip(handles, part, strict=True)}
            size = dict(zip(part, job_trajectory_steps(out, part), strict=True))
            try:
                for handle in as_completed(handles, poll_frequency=1.0):
                    job = owner[handle.job_id]
                    try:
                        handle.result()
                    except Exception as err:
                        first_line = str(err).strip().splitlines()[-1:] or [type(err).__name__]
                        raise SweepError(
                            f"{job.name} failed on {self.cluster} ({first_line[0][:200]}); "
                            f"log: {handle.paths.stderr}"
                        ) from None
                    bar.update(size[job])
            except BaseException:
                for h in handles:
                    if not h.done():
                        h.cancel(check=False)
                raise
