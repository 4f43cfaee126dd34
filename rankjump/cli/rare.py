"""The `rankjump rare CONFIG.toml --out FILE` subcommand
(:func:`rankjump.rare_events.grid.rare`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rankjump.cli.command import add_set, config_of
from rankjump.cli.rare_table import format_rare, rare_to_dict
from rankjump.results.io import check_output_file

__all__ = ["add_parser", "format_rare", "rare_to_dict", "run"]


def run(args: argparse.Namespace) -> int:
    """Runs `rankjump rare`: estimates every cell, writes the result, prints the table."""
    from rankjump.rare_events.grid import rare
    from rankjump.results.io import save_result

    cfg = config_of(args)
    out = Path(args.out)
    replaced = check_output_file(out)
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
    print(
        f"rankjump rare: {r.method}, {runs} x {r.replicas} replicas (kill {r.kill}), "
        f"horizon {cfg.run.steps} steps, {how}"
    )
    ds = rare(cfg, progress=None if not args.quiet else False)  # bars on a terminal only
    save_result(ds, out)
    print("\n" + format_rare(ds))
    print(f"{'replaced' if replaced else 'wrote'} {out}  ({ds.attrs['wall_time_s']:.1f} s)")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `rare` on the command's subparsers."""
    p = subparsers.add_parser(
        "rare", help="jump probabilities too small for plain Monte Carlo, by splitting -> FILE"
    )
    p.add_argument("config", metavar="CONFIG.toml")
    p.add_argument("--out", required=True, metavar="FILE", help="result file (netCDF) to write")
    p.add_argument("--quiet", action="store_true", help="no per-cell progress lines")
    add_set(p)
    p.set_defaults(func=run)
    return p
