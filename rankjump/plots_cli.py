"""The `rankjump plot FILE --out DIR` subcommand: the standard figures of a result file."""

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
        "counts and final ranks of a result file, written into a folder.",
    )
    parser.add_argument("file", metavar="FILE", help="result file (netCDF) of rankjump simulate")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the figures")
    parser.add_argument(
        "--gd", metavar="GD_FILE", help="result of a GD run on the same cells (e.g. demo's gd.nc)"
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


def run(args: argparse.Namespace) -> int:
    """Runs `rankjump plot`: writes the figures and prints their paths, one a line.

    Args:
        args: Parsed arguments of the `plot` parser.

    Returns:
        0 on success; 2 (after one line on stderr) for a missing, unreadable or foreign result
        file or an output folder that cannot be made.
    """
    from rankjump.plots import save_all
    from rankjump.results import ResultError, load_result

    try:
        ds = load_result(args.file)
        gd = load_result(args.gd) if args.gd else None
    except ResultError as err:
        print(f"rankjump plot: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"rankjump plot: error: --out {out}: {err.strerror or err}", file=sys.stderr)
        return 2
    try:
        paths = save_all(ds, out, gd=gd, formats=args.format)
    except ValueError as err:  # a file that loads but lacks the schema the statistics need
        print(f"rankjump plot: error: {args.file}: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
