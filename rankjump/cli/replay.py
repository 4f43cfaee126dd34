"""The `rankjump replay FILE --cell LAM,ETA --traj T` subcommand
(:mod:`rankjump.simulation.replays`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rankjump.results.io import check_output_file

__all__ = ["add_parser", "run"]


def _cell(text: str) -> tuple[float, float]:
    """argparse type for --cell: "LAM,ETA"."""
    parts = text.split(",")
    try:
        lam, eta = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LAM,ETA (two numbers)") from None
    return lam, eta


def run(args: argparse.Namespace) -> int:
    """Runs `rankjump replay`: writes the replay and its figure, prints what they show."""
    import numpy as np

    from rankjump.plots.replay import collapse_summary, plot_replay
    from rankjump.results.io import load_result, save_result
    from rankjump.simulation.replays import replay

    out = Path(args.out)
    replaced = check_output_file(out)
    source = load_result(args.file)
    lam, eta = args.cell
    ds = replay(
        source,
        lam,
        eta,
        args.traj,
        start=getattr(args, "from"),
        stop=args.to,
        every=args.every,
        progress=None if not args.quiet else False,
    )
    ds.attrs["replay_source"] = str(args.file)
    original = source.sel(lam=ds["lam"], eta=ds["eta"], traj=ds["traj"])
    common = ds.isel(checkpoint=np.flatnonzero(np.isin(ds["step"], original["step"])))
    original = original.isel(checkpoint=slice(0, common.sizes["checkpoint"]))
    same = all(
        np.array_equal(common[v].values, original[v].values, equal_nan=True)
        for v in ("rank", "layer_rank", "sv", "param_norm2", "loss")
    )
    save_result(ds, out)
    figure = out.with_suffix(".png")
    plot_replay(ds).savefig(figure)
    a = ds.attrs
    summary = collapse_summary(ds)
    print(
        f"replayed trajectory {a['replay_traj']} of (lam {float(ds['lam'][0]):g}, eta "
        f"{float(ds['eta'][0]):g}): steps {a['replay_from']} to {a['replay_to']} every "
        f"{a['replay_every']} step(s); at the file's {common.sizes['checkpoint']} checkpoints up "
        f"to step {a['replay_to']} the replay {'equals' if same else 'DIFFERS FROM'} the file"
    )
    entry = summary["entry_step"]
    if entry is not None:
        print(
            f"entered rank < {summary['mode']} at step {entry}; mode {summary['mode']} of each "
            f"layer last above half its size at the window's start at steps "
            f"{summary['half_steps']}, first below the layer threshold at steps "
            f"{summary['below_steps']} and below it for good from steps "
            f"{summary['settled_steps']} (None: above it at the window's end); 1/(2 eta lam) = "
            f"{summary['decay_steps']:.0f} steps"
        )
    print(f"{'replaced' if replaced else 'wrote'} {out} and {figure}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers `replay` on a subparsers object; the parser's default `func` is `run`."""
    p = sub.add_parser(
        "replay",
        help="one trajectory of a result again, finely over a window, to see a jump",
        description="Rerun one trajectory of a result file from its recorded configuration "
        "(the same path: checkpoints at the file's steps equal its records) with checkpoints "
        "every N steps over a window, per-layer singular values and the sampled entries. "
        "Default window: around the trajectory's first drop below its start rank.",
    )
    p.add_argument("file", metavar="RESULT.nc")
    p.add_argument("--cell", type=_cell, required=True, metavar="LAM,ETA", help="the cell")
    p.add_argument("--traj", type=int, required=True, metavar="T", help="trajectory index")
    p.add_argument("--from", type=int, metavar="STEP", help="window start (a checkpoint)")
    p.add_argument("--to", type=int, metavar="STEP", help="window end (a checkpoint)")
    p.add_argument(
        "--every", type=int, metavar="N", help="fine checkpoint stride, dividing record_every"
    )
    p.add_argument(
        "--out", required=True, metavar="FILE", help="replay result (netCDF); figure: FILE.png"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p
