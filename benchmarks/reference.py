"""Plain Monte Carlo references for rare jump probabilities, run in jobs that continue across
sessions and machines, with only their summaries kept.

A reference is one (lam, eta) cell of a configuration (`run.trajectories` is the total it aims
for, `run.steps` the horizon T, `run.record_every` the resolution of first entries). Its ledger,
a small JSON file meant to be committed, holds the configuration and, per finished job (a range
of `--job-trajectories` trajectories, trajectory t with the key of `rankjump simulate`), how many
trajectories diverged and at which checkpoint each of the others first entered B_target (every
layer's rank at most the start rank - 1). Each run of this script continues with the next jobs
the ledger lacks, for as long as `--minutes` allows, and rewrites the ledger after every job
(atomically), so an interrupted run loses at most the job in progress; raising
`run.trajectories` in CELL.toml extends a finished reference (trajectory t's key does not depend
on the total, so the jobs done stay valid). The jobs compute exactly
what `rankjump simulate` computes for those trajectories: the reference is a simulation of all
`run.trajectories`, summarized, done a piece at a time.

    python benchmarks/reference.py CELL.toml --ledger notebooks/data/reference_NAME.json \
        [--minutes 60] [--job-trajectories 65536]
    python benchmarks/reference.py --show notebooks/data/reference_NAME.json

`--show` prints P(enter B_target within T) for every checkpoint T with its 95% Wilson interval,
the entries and the trajectories done.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import rankjump as rj
from rankjump.simulation import plan_run, run_chunks, shared_starts
from rankjump.stats import binomial_ci

LEDGER_VERSION = 1


def _same_cell(old, cfg) -> bool:
    """Whether a ledger's configuration is ``cfg`` in every section plain Monte Carlo reads (the
    [rare] section, and fields added since with their defaults, do not count), but for
    ``run.trajectories``: trajectory t has the same key whatever the total, so a reference is
    extended by asking for more."""
    sections = ("task", "network", "optimizer", "rank")
    same_run = dataclasses.replace(old.run, trajectories=cfg.run.trajectories) == cfg.run
    return same_run and all(getattr(old, name) == getattr(cfg, name) for name in sections)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write(path: Path, ledger: dict) -> None:
    """The ledger written to a temporary file beside it, then renamed over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(ledger, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


def _new_ledger(cfg, job_trajectories: int) -> dict:
    toml = rj.config_to_toml(cfg)
    return {
        "version": LEDGER_VERSION,
        "config": toml,
        "config_digest": _digest(toml),
        "job_trajectories": job_trajectories,
        "jobs": {},
    }


def _check_cell(cfg) -> None:
    if len(cfg.optimizer.lam) != 1 or len(cfg.optimizer.eta) != 1:
        raise SystemExit("reference: the configuration must hold one (lam, eta) cell")
    if cfg.run.steps % cfg.run.record_every:
        raise SystemExit("reference: run.steps must be a multiple of run.record_every")


def run_job(plan, starts, job: int, per_job: int, target: int) -> dict:
    """Job ``job``: trajectories [job * per_job, (job + 1) * per_job), their summary."""
    if per_job % plan.chunk:
        raise SystemExit(f"--job-trajectories must be a multiple of the chunk ({plan.chunk})")
    first = job * per_job // plan.chunk
    chunks = range(first, min(first + per_job // plan.chunk, plan.n_chunks))
    t0, c0 = time.perf_counter(), time.process_time()
    records, _ = run_chunks(plan, chunks, starts)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rank = np.asarray(records.rank)[:, 1:]  # checkpoints after the start
    alive = np.asarray(records.alive)
    diverged = ~alive[:, -1]
    inside = (rank >= 0) & (rank <= target)
    entered = inside.any(axis=1)
    first_entry = np.where(entered, np.argmax(inside, axis=1), -1)
    # Diverged trajectories are left out (counted), as in rankjump stats, whether or not they
    # had entered before.
    counts = np.bincount(first_entry[entered & ~diverged], minlength=rank.shape[1])
    return {
        "trajectories": int(rank.shape[0]),
        "diverged": int(diverged.sum()),
        "diverged_after_entry": int((diverged & entered).sum()),
        "first_entry_counts": counts.tolist(),
        "seconds": round(seconds, 1),  # wall clock, other work on the machine included
        "cpu_seconds": round(cpu, 1),  # this process, every core
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }


def totals(ledger: dict) -> dict:
    """Trajectories, diverged, and entries by each checkpoint over the ledger's jobs."""
    jobs = list(ledger["jobs"].values())
    n = sum(j["trajectories"] for j in jobs)
    diverged = sum(j["diverged"] for j in jobs)
    counts = np.sum([j["first_entry_counts"] for j in jobs], axis=0) if jobs else np.zeros(1)
    return {"trajectories": n, "diverged": diverged, "cumulative": np.cumsum(counts).astype(int)}


def show(ledger: dict) -> str:
    cfg = rj.loads_config(ledger["config"])
    t = totals(ledger)
    n = t["trajectories"] - t["diverged"]
    every = cfg.run.record_every
    lines = [
        f"lam {cfg.optimizer.lam[0]:g}, eta {cfg.optimizer.eta[0]:g}: {len(ledger['jobs'])} jobs,"
        f" {t['trajectories']} of {cfg.run.trajectories} trajectories, {t['diverged']} diverged",
        f"{'T':>8} {'entered':>8} {'P(T)':>10} {'95% Wilson interval':>24}",
    ]
    for k, entered in enumerate(t["cumulative"]):
        lo, hi = binomial_ci(int(entered), n)
        lines.append(f"{(k + 1) * every:>8} {entered:>8} {entered / n:>10.3g} [{lo:.3g}, {hi:.3g}]")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", metavar="CELL.toml")
    parser.add_argument("--ledger", metavar="FILE.json")
    parser.add_argument("--show", metavar="FILE.json", help="print a ledger's P(T) and stop")
    parser.add_argument(
        "--minutes", type=float, default=60.0, help="stop after the job that passes it"
    )
    parser.add_argument("--job-trajectories", type=int, default=65536)
    args = parser.parse_args(argv)
    if args.show:
        print(show(json.loads(Path(args.show).read_text())))
        return 0
    if not (args.config and args.ledger):
        parser.error("CELL.toml and --ledger are needed (or --show FILE.json)")
    cfg = rj.load_config(args.config)
    _check_cell(cfg)
    path = Path(args.ledger)
    ledger = (
        json.loads(path.read_text()) if path.exists() else _new_ledger(cfg, args.job_trajectories)
    )
    old = rj.loads_config(ledger["config"])
    if not _same_cell(old, cfg):
        raise SystemExit(f"reference: {path} holds another configuration's reference")
    had = old.run.trajectories
    if cfg.run.trajectories < had:
        raise SystemExit(
            f"reference: run.trajectories = {cfg.run.trajectories} is below the {had} of {path}; "
            "a reference only grows"
        )
    if cfg.run.trajectories > had:  # the jobs done stay; a last job cut short by the old total
        toml = rj.config_to_toml(cfg)  # is made again whole
        ledger.update(config=toml, config_digest=_digest(toml))
        short = [
            k for k, j in ledger["jobs"].items() if j["trajectories"] < ledger["job_trajectories"]
        ]
        for k in short:
            del ledger["jobs"][k]
    per_job = ledger["job_trajectories"]
    n_jobs = -(-cfg.run.trajectories // per_job)
    deadline = time.monotonic() + 60 * args.minutes
    with rj.runtime.float64_scope():
        plan = plan_run(cfg)
        starts = shared_starts(plan)
        target = int(starts.attrs["start_rank"][0]) - 1
        ledger["target_rank"] = target
        for job in range(n_jobs):
            if str(job) in ledger["jobs"]:
                continue
            if time.monotonic() > deadline:
                break
            ledger["jobs"][str(job)] = run_job(plan, starts, job, per_job, target)
            _write(path, ledger)
            done = ledger["jobs"][str(job)]
            print(
                f"job {job} of {n_jobs}: {sum(done['first_entry_counts'])} entered,"
                f" {done['diverged']} diverged, {done['seconds']:.0f} s",
                flush=True,
            )
    print(show(ledger))
    return 0


if __name__ == "__main__":
    sys.exit(main())
