"""The `rankjump replay FILE --cell LAM,ETA --traj T` subcommand
(:mod:`rankjump.simulation.replays`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rankjump.cli.command import writing
from rankjump.results.io import ResultError

__all__ = ["add_parser", "run"]

COMPARED = ("rank", "layer_rank", "sv", "param_norm2", "loss")  # a replay's records = the file's


def _first_difference(replayed, original) -> str | None:
    """Where the replay's records first differ from the file's at their common checkpoints
    (variable and step), or None when they are equal."""
    import numpy as np

    for name in COMPARED:
        a, b = replayed[name].values, original[name].values
        if a.shape != b.shape:
            return f"{name} has {a.shape} values, the file {b.shape}"
        equal = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else a == b
        if not equal.all():
            k = int(np.argwhere(~equal.reshape(len(a), -1).all(axis=1))[0, 0])
            return f"{name} first at step {int(replayed['step'][k])}"
    return None


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
    figure = out.with_suffix(".png")
    files = {"--out": out, "the figure (--out with .png)": figure}
    with writing(files, {"the source": Path(args.file)}) as replaced:
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
        differs = _first_difference(common, original)
        if differs and not args.allow_mismatch:
            raise ResultError(
                f"{args.file}: the replay of trajectory {args.traj} differs from the file's "
                f"records ({differs}): the file or its configuration was edited, or it was "
                "made on other hardware or by another rankjump; nothing written "
                "(--allow-mismatch writes the replay anyway)"
            )
        save_result(ds, out)
        plot_replay(ds).savefig(figure)
    replaced = replaced["--out"] or replaced["the figure (--out with .png)"]
    same = not differs
    a = ds.attrs
    summary = collapse_summary(ds)
    print(
        f"replayed trajectory {a['replay_traj']} of (lam {float(ds['lam'][0]):g}, eta "
        f"{float(ds['eta'][0]):g}): steps {a['replay_from']} to {a['replay_to']} every "
        f"{a['replay_every']} step(s); at the file's {common.sizes['checkpoint']} checkpoints up "
        f"to step {a['replay_to']} the replay {'equals' if same else 'DIFFERS FROM'} the file"
        + ("" if same else f" ({differs}; written as --allow-mismatch asks)")
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
    p.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="write the replay even where it differs from the file's records (other hardware)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p
