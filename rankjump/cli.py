"""The ``rankjump`` command line: demo, simulate, sweep, replay, stats, plot, bench.

Bad input is one line on stderr naming the field or file, exit code 2, and no file written.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rankjump.command import (
    Terminated,
    add_set,
    command_context,
    config_of,
    discard_stdout,
    exit_code,
    outputs,
    what_was_written,
)
from rankjump.precision import float64_scope

__all__ = ["main"]


def _writable_folder(path: Path) -> None:
    """Fail before any compute if the output folder ``path`` cannot be made or written."""
    from rankjump.results import ResultError

    if path.exists() and not path.is_dir():
        raise ResultError(f"--out {path}: exists and is not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ResultError(f"--out {path}: {existing} is not writable")


def _simulate(args) -> int:
    from rankjump.results import check_output_file, save_result
    from rankjump.simulate import simulate

    cfg = config_of(args)
    out = Path(args.out)
    replaced = check_output_file(out)
    ds = simulate(cfg, progress=None if not args.quiet else False)
    save_result(ds, out)
    print(
        f"{'replaced' if replaced else 'wrote'} {out}  ({ds.sizes['lam']} x "
        f"{ds.sizes['eta']} cells, {ds.sizes['traj']} trajectories, "
        f"{ds.attrs['wall_time_s']:.1f} s)"
    )
    _warn_diverged(ds)
    return 0


def _sweep(args) -> int:
    from rankjump.sweep import RESULT, sweep

    cfg = config_of(args)
    out = Path(args.out)
    executor = None
    if args.executor != "inline":
        from rankjump.cluster import SubmititExecutor

        executor = SubmititExecutor(
            args.executor,
            partition=args.partition,
            time_min=args.time,
            gpus=args.gpus,
            cpus=args.cpus,
            parallel=args.parallel,
        )
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
        from rankjump.sweep import sweep_status

        done, total = sweep_status(out)
        print(
            f"rankjump sweep: {'terminated' if isinstance(err, Terminated) else 'interrupted'} "
            f"with {done} of {total} job files written; continue with "
            f"`rankjump sweep {args.config} --out {out} --resume"
            + "".join(f" --set '{x}'" for x in args.set or ())
            + "`",
            file=sys.stderr,
        )
        return exit_code(err)
    print(
        f"wrote {out / RESULT}  ({ds.sizes['lam']} x {ds.sizes['eta']} cells, "
        f"{ds.sizes['traj']} trajectories, {ds.attrs['wall_time_s']:.1f} s of compute)"
    )
    _warn_diverged(ds)
    return 0


def _warn_diverged(ds) -> None:
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


def _demo(args) -> int:
    from rankjump.demo import run_demo

    _writable_folder(Path(args.out))
    run_demo(
        Path(args.out),
        quick=args.quick,
        progress=None if not args.quiet else False,
        overrides=args.set or (),
    )
    return 0


def _bench(args) -> int:
    from rankjump.bench import main_bench

    return main_bench(args.quick, args.json)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all subcommands."""
    from rankjump import __version__, plots_cli, rare_cli, replay_cli, stats_cli

    parser = argparse.ArgumentParser(
        prog="rankjump",
        description="Monte Carlo of SGD's one-way jumps between minima of different rank.",
    )
    parser.add_argument("--version", action="version", version=f"rankjump {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="the main job on the embedded default: summary + result file")
    p.add_argument("--out", default="rankjump-demo", help="output folder (./rankjump-demo)")
    p.add_argument("--quick", action="store_true", help="a smaller run (under 30 s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_set(p)
    p.set_defaults(func=_demo)

    p = sub.add_parser("simulate", help="one run (a grid of lam x eta cells) -> result file")
    p.add_argument("config", metavar="CONFIG.toml")
    p.add_argument("--out", required=True, metavar="FILE", help="result file (netCDF) to write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_set(p)
    p.set_defaults(func=_simulate)

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
    p.set_defaults(func=_sweep)

    p = sub.add_parser("bench", help="throughput against PyTorch peers (torch: the bench extra)")
    p.add_argument("--quick", action="store_true", help="fewer configurations, smaller runs")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=_bench)

    replay_cli.add_parser(sub)
    rare_cli.add_parser(sub)
    stats_cli.add_parser(sub)
    plots_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rankjump`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from rankjump.config import ConfigError
    from rankjump.results import ResultError

    before = outputs(args) if args.command != "sweep" else {}
    try:
        with command_context(args.command), float64_scope():
            code = args.func(args)
            sys.stdout.flush()  # a write error on stdout (a full device) is raised here
        return code
    except (ConfigError, ResultError) as err:
        print(f"rankjump {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `rankjump stats FILE | head`
        discard_stdout()
        return 0
    except OSError as err:  # e.g. `rankjump stats FILE > /dev/full`
        what = (
            f"cannot write standard output ({err.strerror or type(err).__name__})"
            if err.filename is None
            else f"{err.filename}: {err.strerror or type(err).__name__}"
        )
        print(f"rankjump {args.command}: error: {what}", file=sys.stderr)
        discard_stdout()
        return 2
    except KeyboardInterrupt as err:
        how = "terminated" if isinstance(err, Terminated) else "interrupted"
        print(f"rankjump {args.command}: {how}; {what_was_written(args, before)}", file=sys.stderr)
        return exit_code(err)


if __name__ == "__main__":
    sys.exit(main())
