"""The `rankjump rare CONFIG.toml --out FILE` subcommand (:func:`rankjump.rare.rare`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rankjump.command import add_set, config_of
from rankjump.results import check_output_file

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    """Runs `rankjump rare`: estimates every cell, writes the result, prints the table."""
    from rankjump.rare import rare
    from rankjump.results import save_result

    cfg = config_of(args)
    out = Path(args.out)
    replaced = check_output_file(out)
    r = cfg.rare
    print(
        f"rankjump rare: {r.method}, {r.runs} runs x {r.replicas} replicas (kill {r.kill}), "
        f"score {r.score}, horizon {cfg.run.steps} steps, checkpoints every "
        f"{cfg.run.record_every}"
    )
    ds = rare(cfg, progress=not args.quiet)
    save_result(ds, out)
    interval = f"{ds.attrs['level']:.0%} interval"
    print(f"\n{'lam':>8} {'eta':>8} {'p':>10} {interval:>24} {'runs done':>9} {'traj-steps':>11}")
    for lam in ds["lam"].values:
        for eta in ds["eta"].values:
            c = ds.sel(lam=lam, eta=eta)
            ci = f"[{float(c['p_lo']):.3g}, {float(c['p_hi']):.3g}]"
            done = f"{int(c['run_finished'].sum())}/{c.sizes['run']}"
            cost = int(c["run_cost"].sum())
            print(f"{lam:>8g} {eta:>8g} {float(c['p']):>10.3g} {ci:>24} {done:>9} {cost:>11.3g}")
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
