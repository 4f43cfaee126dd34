"""``rankjump bench``: throughput against PyTorch peers (:mod:`rankjump.bench`)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Registers `bench` on a subparsers object; the parser's default `func` is `run`."""
    p = sub.add_parser("bench", help="throughput against PyTorch peers (torch: the bench extra)")
    p.add_argument("--quick", action="store_true", help="fewer configurations, smaller runs")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from rankjump.bench.report import main_bench

    return main_bench(args.quick, args.json)
