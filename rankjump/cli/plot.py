"""The `rankjump plot FILE --out DIR` subcommand: the standard figures of a result file.

For a `rankjump rare` result FILE it writes rare_probability (:func:`rankjump.plots.save_rare`),
with the plain Monte Carlo proportions of the `--beside` simulate results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def _formats(text: str) -> tuple[str, ...]:
    """argparse type for --format: comma-separated extensions matplotlib can write."""
    from matplotlib.figure import Figure

    known = Figure().canvas.get_supported_filetypes()
    formats = tuple(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    bad = [f for f in formats if f not in known]
    if bad or not formats:
        raise argparse.ArgumentTypeError(
            f"{(bad or [text])[0]!r} is not a format; choose from {', '.join(sorted(known))}"
        )
    return formats


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers `plot` on a subparsers object; the parser's default `func` is `run`.

    Args:
        subparsers: The object `ArgumentParser.add_subparsers()` returned.

    Returns:
        The new `plot` parser.
    """
    parser = subparsers.add_parser(
        "plot",
        help="the standard figures as PNG (and PDF)",
        description="Jump probability, ln P fit, rank occupancy, singular values, transition "
        "counts and final ranks of a result file, written into a folder; for a `rankjump rare` "
        "result, its ln p against 1/(eta lam) (rare_probability), plain Monte Carlo beside it.",
    )
    parser.add_argument(
        "file", metavar="FILE", help="result file (netCDF) of rankjump simulate or rankjump rare"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the figures")
    parser.add_argument(
        "--gd", metavar="GD_FILE", help="result of a GD run on the same cells (e.g. demo's gd.nc)"
    )
    parser.add_argument(
        "--beside",
        nargs="+",
        action="extend",
        default=[],
        metavar="MC_FILE",
        help="with a rare FILE: simulate results whose jump proportions are drawn beside it",
    )
    parser.add_argument(
        "--format",
        type=_formats,
        default=("png", "pdf"),
        metavar="png,pdf",
        help="comma-separated file formats (png,pdf)",
    )
    parser.set_defaults(func=run)
    return parser


def _error(message: str) -> int:
    print(f"rankjump plot: error: {message}", file=sys.stderr)
    return 2


def _done(paths: list[Path]) -> int:
    """Prints the files written, one a line."""
    for path in paths:
        print(path)
    return 0


def _make_out(out: Path) -> str | None:
    """Creates the --out folder; the one-line problem when it cannot be made."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"--out {out}: {err.strerror or err}"
    return None


def _run_rare(args: argparse.Namespace, ds) -> int:
    """`rankjump plot RARE_FILE`: rare_probability, beside the --beside simulate results."""
    from rankjump.plots import save_rare
    from rankjump.plots.rare_points import rare_event
    from rankjump.results.io import ResultError, load_result
    from rankjump.results.locks import output_lock

    if args.gd:
        return _error(f"--gd {args.gd}: goes with a simulate result; {args.file} is a rare one")
    try:
        rare_event(ds)  # the attrs and variables the figure reads
    except ValueError as err:
        return _error(f"{args.file}: {err}")
    try:
        beside = [load_result(path) for path in args.beside]
    except ResultError as err:
        return _error(f"--beside {err}")
    if problem := _make_out(Path(args.out)):
        return _error(problem)
    labels = [Path(path).name for path in args.beside]  # the legend's names of the files
    if len(set(labels)) < len(labels):
        labels = list(args.beside)
    try:
        with output_lock(Path(args.out)):  # a second plot into the folder is refused
            paths = save_rare(ds, args.out, beside, args.format, labels=labels)
    except ValueError as err:  # a --beside result the statistics refuse; the label names it
        return _error(f"--beside {err}")
    return _done(paths)


def run(args: argparse.Namespace) -> int:
    """Runs `rankjump plot`: writes the figures and prints their paths, one a line.

    Args:
        args: Parsed arguments of the `plot` parser.

    Returns:
        0 on success; 2 (after one line on stderr) for a missing, unreadable or foreign result
        file, a --beside file that is not a simulate result, --beside without a rare FILE, or
        an output folder that cannot be made.
    """
    from rankjump.plots import save_all
    from rankjump.results.io import ResultError, load_result, result_kind
    from rankjump.results.locks import output_lock

    try:
        ds = load_result(args.file, kinds=("simulate", "rare"))
        if result_kind(ds) == "rare":
            return _run_rare(args, ds)
        gd = load_result(args.gd) if args.gd else None
    except ResultError as err:
        return _error(str(err))
    if args.beside:
        return _error(f"--beside goes with a `rankjump rare` result; {args.file} is a simulation")
    out = Path(args.out)
    if problem := _make_out(out):
        return _error(problem)
    try:
        with output_lock(out):  # a second plot into the folder is refused
            paths = save_all(ds, out, gd=gd, formats=args.format)
    except ValueError as err:  # a file that loads but lacks the schema the statistics need
        return _error(f"{args.file}: {err}")
    return _done(paths)
