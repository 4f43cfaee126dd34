"""``rankjump simulate`` (one run to a result file) and ``rankjump sweep`` (the same run as
resumable jobs in a folder)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rankjump.cli.command import Terminated, add_set, config_of, exit_code, inputs_of, writing

__all__ = ["add_parser", "run_simulate", "run_sweep", "warn_diverged"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Registers `simulate` and `sweep` on a subparsers object."""
    p = sub.add_parser("simulate", help="one run (a grid of lam x eta cells) -> result file")
    p.add_argument("config", metavar="CONFIG.toml")
    p.add_argument("--out", required=True, metavar="FILE", help="result file (netCDF) to write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_set(p)
    p.set_defaults(func=run_simulate)

    p = sub.add_parser("sweep", help="a run split into resumable jobs, one file each -> DIR")
    p.add_argument("config", metavar="CONFIG.toml")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="sweep folder (result: DIR/result.nc)"
    )
    p.add_argument("--resume", action="store_true", help="continue the sweep in DIR")
    p.add_argument(
        "--chunks-per-job",
        type=int,
        metavar="N",
        help="chunks of run.chunk_size trajectories per job file (1; a resumed sweep keeps its"
        " own)",
    )
    p.add_argument(
        "--executor",
        choices=("inline", "local", "slurm"),
        default="inline",
        help="inline: jobs in this process (default); local: submitit processes on this machine;"
        " slurm: a Slurm job array (both need the cluster extra)",
    )
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--time", type=int, default=60, metavar="MIN", help="time limit per job (60)")
    p.add_argument("--gpus", type=int, default=0, metavar="N", help="GPUs per job (0)")
    p.add_argument("--cpus", type=int, metavar="N", help="CPU cores per job")
    p.add_argument(
        "--parallel", type=int, metavar="N", help="jobs at once (local: 1; slurm: unlimited)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_set(p)
    p.set_defaults(func=run_sweep)


def run_simulate(args) -> int:
    from rankjump.results.io import save_result
    from rankjump.simulation.runs import simulate

    cfg = config_of(args)
    out = Path(args.out)
    with writing({"--out": out}, inputs_of(args, cfg)) as replaced:
        ds = simulate(cfg, progress=None if not args.quiet else False)
        save_result(ds, out)
    replaced = replaced["--out"]
    print(
        f"{'replaced' if replaced else 'wrote'} {out}  ({ds.sizes['lam']} x "
        f"{ds.sizes['eta']} cells, {ds.sizes['traj']} trajectories, "
        f"{ds.attrs['wall_time_s']:.1f} s)"
    )
    warn_diverged(ds)
    return 0


def run_sweep(args) -> int:
    from rankjump.sweeps.files import RESULT
    from rankjump.sweeps.jobs import sweep, sweep_status

    cfg = config_of(args)
    out = Path(args.out)
    executor = None
    if args.executor != "inline":
        from rankjump.sweeps.cluster import SubmititExecutor

        executor = SubmititExecutor(
            args.executor,
            partition=args.partition,
            time_min=args.time,
            gpus=args.gpus,
            cpus=args.cpus,
            parallel=args.parallel,
        )
    found = sweep_status(out) if args.resume else (0, 0)
    try:
        ds = sweep(
            cfg,
            out,
            resume=args.resume,
            chunks_per_job=args.chunks_per_job,
            executor=executor,
            progress=None if not args.quiet else False,
        )
    except KeyboardInterrupt as err:
        done, total = sweep_status(out)
        written = (
            f"with {done} of {total} job files written"
            if total
            else "before the first job (no job file written)"
        )
        print(
            f"rankjump sweep: {'terminated' if isinstance(err, Terminated) else 'interrupted'} "
            f"{written}; continue with "
            f"`rankjump sweep {args.config} --out {out} --resume"
            + "".join(f" --set '{x}'" for x in args.set or ())
            + "`",
            file=sys.stderr,
        )
        return exit_code(err)
    if args.resume:
        print(
            f"resumed: {found[0]} of {found[1]} job files were already written and were checked "
            "(a damaged one is recomputed, with a note naming it); the others ran"
        )
    print(
        f"wrote {out / RESULT}  ({ds.sizes['lam']} x {ds.sizes['eta']} cells, "
        f"{ds.sizes['traj']} trajectories, {ds.attrs['wall_time_s']:.1f} s of compute)"
    )
    warn_diverged(ds)
    return 0


def warn_diverged(ds) -> None:
    """Say how many trajectories diverged and in which cells."""
    div = ds["diverged"].sum("traj")
    n_div = int(div.sum())
    if not n_div:
        return
    cells = [
        f"(lam {float(lam):g}, eta {float(eta):g}): {int(div.sel(lam=lam, eta=eta))}"
        for lam in ds["lam"].values
        for eta in ds["eta"].values
        if int(div.sel(lam=lam, eta=eta))
    ]
    print(
        f"warning: {n_div} trajectories diverged and are excluded from statistics; "
        + ", ".join(cells),
        file=sys.stderr,
    )
