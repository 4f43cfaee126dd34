"""The ``rankjump`` command line: demo, simulate, sweep, replay, stats, plot, bench.

Bad input is one line on stderr naming the field or file, exit code 2, and no file written.
"""

from __future__ import annotations

import argparse
import os
import sys

from rankjump.cli.command import (
    Terminated,
    command_context,
    discard_stdout,
    exit_code,
    outputs,
    what_was_written,
)
from rankjump.runtime.cores import environment_problem
from rankjump.runtime.precision import float64_scope
from rankjump.runtime.signals import raise_pending

__all__ = ["entry", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all subcommands."""
    from rankjump import __version__
    from rankjump.cli import bench, demo, plot, rare, replay, simulate, stats

    parser = argparse.ArgumentParser(
        prog="rankjump",
        description="Monte Carlo of SGD's one-way jumps between minima of different rank.",
    )
    parser.add_argument("--version", action="version", version=f"rankjump {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for command in (demo, simulate, bench, replay, rare, stats, plot):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rankjump`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from rankjump.config import ConfigError
    from rankjump.results.io import ResultError

    if problem := environment_problem():
        print(f"rankjump {args.command}: error: {problem}", file=sys.stderr)
        return 2
    before = outputs(args) if args.command != "sweep" else {}
    try:
        with command_context(args.command), float64_scope():
            raise_pending()  # a signal that came while the command was starting
            code = args.func(args)
            if code < 128:  # a command that stopped on a signal has said so
                raise_pending()  # a signal whose interrupt a callback swallowed
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


def entry() -> None:
    """The ``rankjump`` executable: :func:`main`, and after a signal an immediate exit with its
    code (the interpreter's shutdown can crash in XLA's threads when a run was cut short, and
    everything there is to write has been written by then)."""
    code = main()
    if code >= 128:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
