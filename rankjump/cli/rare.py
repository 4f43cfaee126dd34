"""The `rankjump rare CONFIG.toml --out FILE` subcommand
(:func:`rankjump.rare_events.grid.rare`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rankjump.cli.command import (
    Terminated,
    add_set,
    config_of,
    exit_code,
    inputs_of,
    writing,
)
from rankjump.cli.rare_table import format_rare, rare_to_dict
from rankjump.config import ConfigError

__all__ = ["add_parser", "format_rare", "rare_to_dict", "run"]


def run(args: argparse.Namespace) -> int:
    """Runs `rankjump rare`: estimates every cell, writes the result, prints the table.

    Every finished cell is kept in ``OUT.partial.npz`` until the result is saved
    (:mod:`rankjump.rare_events.partial`): a run stopped by a signal or a late error says so and
    how to continue it (``--resume``), which reuses those cells."""
    from rankjump.config import config_to_toml
    from rankjump.rare_events.grid import rare
    from rankjump.rare_events.partial import load_cells, partial_path
    from rankjump.rare_events.settings import check_rare
    from rankjump.results.io import ResultError, save_result

    cfg = config_of(args)
    out = Path(args.out)
    partial = partial_path(out)
    files = {"--out": out, "the record of finished cells": partial}
    with writing(files, inputs_of(args, cfg)) as replaced:
        if partial.exists() and not args.resume:
            raise ResultError(
                f"--out {out}: {partial} holds the finished cells of a run that stopped before "
                "its end; pass --resume to continue it (its cells are reused where the "
                "configuration is the same), or remove the file to start afresh"
            )
        kept = len(load_cells(partial, config_to_toml(cfg))) if partial.exists() else 0
        check_rare(cfg)  # what the configuration alone decides, before the first line
        print(_header(cfg) + (f"; {kept} finished cell(s) kept in {partial}" if kept else ""))
        try:
            ds = rare(cfg, progress=None if not args.quiet else False, partial=partial)
        except KeyboardInterrupt as err:
            how = "terminated" if isinstance(err, Terminated) else "interrupted"
            print(f"rankjump rare: {how}; {_kept(args, partial)}", file=sys.stderr)
            return exit_code(err)
        except (ConfigError, ResultError) as err:
            if not _anything_kept(partial):
                raise
            raise type(err)(f"{err}; {_kept(args, partial)}") from None
        except Exception:  # a failure after finished cells: say where they are, then fail
            if _anything_kept(partial):
                print(f"rankjump rare: {_kept(args, partial)}", file=sys.stderr)
            raise
        save_result(ds, out)
        partial.unlink(missing_ok=True)
    print("\n" + format_rare(ds))
    print(
        f"{'replaced' if replaced['--out'] else 'wrote'} {out}  ({ds.attrs['wall_time_s']:.1f} s)"
    )
    return 0


def _header(cfg) -> str:
    """The line that says how the run estimates."""
    r = cfg.rare
    how = (
        f"windows of {r.window} steps scored every {r.window_every}, kick at {r.kick:g} x the "
        f"start value, {r.pool} basin replicas after {r.burn_in} steps"
        if r.method == "rate"
        else f"score {r.score}, checkpoints every {cfg.run.record_every}"
    )
    runs = (
        f"runs in batches of {r.auto_batch} until a cell passes the diagnostics (at most "
        f"{r.max_runs}" + (f", {r.budget:.3g} trajectory-steps" if r.budget else "") + ")"
        if r.runs == "auto"
        else f"{r.runs} runs"
    )
    if r.method == "flux":
        return (
            f"rankjump rare: flux, {runs} x {r.paths} plain paths, horizon {cfg.run.steps} "
            f"steps, looked at every {cfg.run.record_every}, kick at {r.kick:g} x the start "
            f"value, {r.commit_reps} continuations of each kick"
        )
    return (
        f"rankjump rare: {r.method}, {runs} x {r.replicas} replicas (kill {r.kill}), "
        f"horizon {cfg.run.steps} steps, {how}"
    )


def _anything_kept(partial: Path) -> bool:
    """Whether a stopped run left finished cells, or finished batches of a cell, in ``partial``."""
    from rankjump.rare_events.partial import count_cells

    return bool(count_cells(partial) or count_cells(partial, "batches"))


def _kept(args, partial: Path) -> str:
    """Words for the finished cells a stopped run left, and how to continue it."""
    from rankjump.rare_events.partial import count_cells

    n, batches = count_cells(partial), count_cells(partial, "batches")
    if not n and not batches:
        return "no cell had finished (nothing was written)"
    again = f"rankjump rare {args.config} --out {args.out} --resume" + "".join(
        f" --set '{x}'" for x in args.set or ()
    )
    what = [f"{n} finished cell(s)"] if n else []
    what += [f"{batches} finished batch(es) of runs of the cell it was in"] if batches else []
    return f"{' and '.join(what)} kept in {partial}; continue with `{again}`"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `rare` on the command's subparsers."""
    p = subparsers.add_parser(
        "rare",
        help="jump probabilities too small for plain Monte Carlo, by flux or splitting -> FILE",
    )
    p.add_argument("config", metavar="CONFIG.toml")
    p.add_argument("--out", required=True, metavar="FILE", help="result file (netCDF) to write")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a run that stopped: reuse the finished cells kept in FILE.partial.npz",
    )
    p.add_argument("--quiet", action="store_true", help="no per-cell progress lines")
    add_set(p)
    p.set_defaults(func=run)
    return p
