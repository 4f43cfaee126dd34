"""The `rankjump stats FILE` subcommand: a readable table of `rankjump.stats.analysis.analyze`, or
JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rankjump.model.ranks import RULE_TEXT
from rankjump.results.io import ResultError, load_result, result_kind
from rankjump.stats.analysis import ON_CHOICES, analyze
from rankjump.stats.intervals import CI_METHODS
from rankjump.stats.reports import CellReport, Proportion, RankSet, Report, UpwardCheck

__all__ = ["add_parser", "format_report", "run"]

_EVENTS_SHOWN = 5
_JUMPED_SHOWN = 5  # trajectories that went below the start rank, listed per cell


def _level(text: str) -> float:
    """argparse type for --level: a float in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers `stats` on a subparsers object; the parser's default `func` is `run`.

    Args:
        subparsers: The object `ArgumentParser.add_subparsers()` returned.

    Returns:
        The new `stats` parser.
    """
    parser = subparsers.add_parser(
        "stats",
        help="transition table, probabilities with CIs, upward check",
        description="Jump statistics of a result file, one block per (lam, eta) cell.",
    )
    parser.add_argument(
        "file", metavar="FILE", help="result file (netCDF) of rankjump simulate or rankjump rare"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    # Defaults are None so that options given with a rare result, which have no meaning there,
    # are refused (run fills in the simulate defaults).
    parser.add_argument(
        "--on",
        choices=ON_CHOICES,
        help="rank as recorded (the file's rank rule; the default), or another rule recomputed "
        "from the layer ranks: all_layers (largest; also layer_rank), any_layer (smallest), "
        "end_to_end",
    )
    parser.add_argument("--ci", choices=CI_METHODS, help="interval method (wilson)")
    parser.add_argument(
        "--level",
        type=_level,
        help="confidence level (0.95; a rare result's intervals are made again at it from its "
        "runs' estimates, default its own)",
    )
    parser.add_argument(
        "--after",
        type=int,
        metavar="STEP",
        help="count 'after' upward moves from this step instead of from entering a lower rank set",
    )
    parser.add_argument(
        "--start-rank",
        type=int,
        metavar="R",
        help="rank-set statistics among trajectories starting at rank R (default: the most common)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs `rankjump stats`: prints the table (or JSON) on stdout.

    Args:
        args: Parsed arguments of the `stats` parser.

    Returns:
        0 on success; 2 (after one line on stderr) for a file that
        :func:`rankjump.results.io.load_result` refuses (the same line as every command's),
        whose ranks the analysis cannot read, or with an option that a rare result has no use
        for (``--on``, ``--ci``, ``--after``, ``--start-rank``; ``--level`` on a rate-method one).
    """
    path = Path(args.file)
    try:
        ds = load_result(path, kinds=("simulate", "rare"))
    except ResultError as err:
        print(f"rankjump stats: error: {err}", file=sys.stderr)
        return 2
    if result_kind(ds) == "rare":  # splitting estimates: their own table
        return _run_rare(args, ds)
    try:
        report = analyze(
            ds,
            on=args.on or "rank",
            ci=args.ci or "wilson",
            level=args.level or 0.95,
            after=args.after,
            start_rank=args.start_rank,
        )
    except ValueError as exc:
        print(f"rankjump stats: error: {path}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), allow_nan=False))
    else:
        print(format_report(report, title=str(args.file)))
    return 0


# Options about a simulate result's trajectories (attribute, flag), which a rare result has not.
_SIMULATE_ONLY = (
    ("on", "--on"),
    ("ci", "--ci"),
    ("after", "--after"),
    ("start_rank", "--start-rank"),
)


def _run_rare(args: argparse.Namespace, ds) -> int:
    """`rankjump stats RARE_FILE`: the table (or JSON) of splitting estimates, at --level when
    given; 2 for an option that does not apply to them."""
    from rankjump.cli.rare_table import format_rare, rare_to_dict
    from rankjump.stats.rare_levels import rare_at_level

    given = [flag for name, flag in _SIMULATE_ONLY if getattr(args, name) is not None]
    if given:
        print(
            f"rankjump stats: error: {', '.join(given)}: not for {args.file}, a rare result "
            "(splitting estimates: t intervals over its runs, no trajectories' ranks); of these "
            "options only --level applies to it",
            file=sys.stderr,
        )
        return 2
    if args.level is not None and args.level != ds.attrs["level"]:
        try:
            ds = rare_at_level(ds, args.level)
        except ValueError as err:
            print(
                f"rankjump stats: error: --level {args.level:g}: {args.file}: {err}",
                file=sys.stderr,
            )
            return 2
    if args.json:
        print(json.dumps(_plain(rare_to_dict(ds)), allow_nan=False))
    else:
        print(f"{args.file}\n" + format_rare(ds))
    return 0


def _plain(x):
    """NumPy values inside nested lists and dicts as Python ones (for JSON)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "tolist"):  # a NumPy scalar or array
        return _plain(x.tolist()) if getattr(x, "ndim", 0) else x.item()
    return x


def _fmt(x: float | None, spec: str = ".4f") -> str:
    """A number for the table: ``spec`` (four decimals by default), but a probability below 0.001
    with three significant digits (51 of 262,143 is 0.000195, not 0.0002)."""
    if x is None or x != x:
        return "-"
    if spec == ".4f" and 0 < abs(x) < 1e-3:
        return format(x, ".3g")
    return format(x, spec)


def _row(label: str, p: Proportion, extra: str = "") -> str:
    ci = f"[{_fmt(p.ci[0])}, {_fmt(p.ci[1])}]"
    return f"    {label:<12}{p.count:>9}{_fmt(p.p):>10}   {ci:<18}   {extra}".rstrip()


def _upward_lines(check: UpwardCheck, level: str, late_label: str) -> list[str]:
    rows = [
        ("all", check.count, check.transitions, check.upper_bound),
        (
            late_label,
            check.after_entry_count,
            check.after_entry_transitions,
            check.after_entry_upper_bound,
        ),
    ]
    return [f"  {'upward moves':<34}{'count':>9}{'transitions':>14}   {level} upper bound"] + [
        f"    {label:<32}{count:>9}{total:>14}   {_fmt(bound, '.3g')}"
        for label, count, total, bound in rows
    ]


def _band(rank_sets: dict[int, RankSet]) -> list[RankSet]:
    """The rank sets worth a row, r descending: counts strictly between none and all, plus the
    lowest r reached by all and the highest reached by none (the count falls as r does)."""
    sets = sorted(rank_sets.values(), key=lambda s: -s.r)
    counts = [s.reached.count for s in sets]
    full = [s.reached.count == s.reached.n for s in sets]
    return [
        s
        for i, s in enumerate(sets)
        if not (full[i] and i + 1 < len(sets) and full[i + 1])
        and not (counts[i] == 0 and i > 0 and counts[i - 1] == 0)
    ]


def _jumped_lines(cell: CellReport, title: str) -> list[str]:
    """Which trajectories went below the start rank (the first few, when), and the command that
    replays one of them."""
    if not cell.jumped:
        return []
    first = ", ".join(f"{t} (step {s})" for t, s in cell.jumped[:_JUMPED_SHOWN])
    more = f", ... {len(cell.jumped) - _JUMPED_SHOWN} more (--json lists all)"
    t = cell.jumped[0][0]
    return [
        f"  went below rank {cell.start_rank}: {len(cell.jumped)} trajectories: {first}"
        + (more if len(cell.jumped) > _JUMPED_SHOWN else ""),
        f"    see one step by step: rankjump replay {title or 'FILE'} --cell {cell.lam:g},"
        f"{cell.eta:g} --traj {t} --out jump{t}.nc",
    ]


def _cell_lines(cell: CellReport, level: str, late_label: str, title: str = "") -> list[str]:
    spread = ", ".join(f"{r}: {c}" for r, c in sorted(cell.start_ranks.items(), reverse=True))
    start = "-" if cell.start_rank is None else cell.start_rank
    unobserved = f"   unobserved = {cell.unobserved}" if cell.unobserved else ""
    lines = [
        f"cell lam = {cell.lam:g}, eta = {cell.eta:g}",
        f"  trajectories  n = {cell.n}   diverged (excluded) = {cell.diverged}"
        f"   censored early (records end before the last step) = {cell.incomplete}{unobserved}",
        f"  start rank    {start}   (spread {spread or '-'})",
        f"  {'final rank':<14}{'count':>9}{'p':>10}   {level} CI",
    ]
    finals = sorted(cell.final_rank.items(), reverse=True)
    lines += [_row(f"rank {r}", p) for r, p in finals if p.count]
    among = (
        "" if cell.conditioned == cell.n else f" (the {cell.conditioned} starting at rank {start})"
    )
    lines.append(
        f"  {'reached B_r':<14}{'count':>9}{'p':>10}   {level + ' CI':<18}   median first passage"
        + among
    )
    shown = _band(cell.rank_sets)
    for s in shown:
        median = s.median_first_passage
        passage = (
            f"step {median:g}"
            if median is not None
            else "median not reached (fewer than half)"
            if s.reached.count
            else "none reached"
        )
        lines.append(_row(f"r <= {s.r}", s.reached, passage))
    if len(shown) < len(cell.rank_sets):
        lines.append(
            "    (rows of other r left out: every trajectory reached them, or none did; --json "
            "lists them all)"
        )
    lines += _jumped_lines(cell, title)
    lines += _upward_lines(cell.upward, level, late_label)
    for event in cell.events[:_EVENTS_SHOWN]:
        when = "after" if event.after_entry else "before"
        lines.append(
            f"    upward move: traj {event.traj}, step {event.from_step} -> {event.step},"
            f" rank {event.from_rank} -> {event.to_rank} ({when})"
        )
    if len(cell.events) > _EVENTS_SHOWN:
        lines.append(f"    ... {len(cell.events) - _EVENTS_SHOWN} more upward moves (see --json)")
    return lines


def _rule_text(report: Report) -> str:
    """How the ranks were judged, for the header."""
    if report.rule is None:
        return " (a file from before rank rules: the smallest per-layer rank, rule any_layer)"
    return f" (rule {report.rule}: {RULE_TEXT[report.rule]})"


def format_report(report: Report, title: str = "") -> str:
    """The readable table: a header, one block per cell, the pooled upward check.

    Args:
        report: The analysis to print.
        title: Shown in the first line (the file name).

    Returns:
        The table, lines joined by newlines.
    """
    level = f"{100 * report.level:g}%"
    late_label = (
        "after entering a lower rank set"
        if report.after is None
        else f"from step {report.after} on"
    )
    lines = [
        f"rankjump stats {title}".rstrip(),
        f"on = {report.on}{_rule_text(report)}",
        f"intervals: {report.ci_method}, {level} two-sided; upper bounds: one-sided {level}"
        f" Clopper-Pearson, 1 - {1 - report.level:g}^(1/n) at count 0",
        "",
    ]
    for cell in report.cells:
        lines += _cell_lines(cell, level, late_label, title) + [""]
    lines.append(f"pooled over {len(report.cells)} cells")
    lines += _upward_lines(report.pooled, level, late_label)
    return "\n".join(lines)
