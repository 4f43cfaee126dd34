"""What every ``rankjump`` command shares around its work: SIGTERM raised like Ctrl-C, the
library's notes printed, standard output that cannot be written, and words for what an
interrupted command left at its ``--out``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

__all__ = [
    "Terminated",
    "add_set",
    "command_context",
    "config_of",
    "discard_stdout",
    "exit_code",
    "outputs",
    "what_was_written",
]


class Terminated(KeyboardInterrupt):
    """SIGTERM (a kill, a scheduler's time limit) raised as an interrupt, so that temporary
    files are removed and the command says what it left, as for Ctrl-C."""

    signal = signal.SIGTERM


def _raise_terminated(signum, frame):
    raise Terminated


def exit_code(err: KeyboardInterrupt) -> int:
    """128 + the signal number, as a shell reports a process stopped by it."""
    return 128 + int(getattr(err, "signal", signal.SIGINT))


class _Notes(logging.Handler):
    """Prints the library's notes (e.g. a sweep's recomputed job files) as command output."""

    def __init__(self, command: str):
        super().__init__(logging.INFO)
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        print(f"rankjump {self.command}: note: {record.getMessage()}", file=sys.stderr)


@contextlib.contextmanager
def command_context(command: str):
    """SIGTERM raised as :class:`Terminated`, and library notes printed, while a command runs."""
    notes = _Notes(command)
    logger = logging.getLogger("rankjump")
    logger.addHandler(notes)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        yield
    finally:
        logger.removeHandler(notes)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def discard_stdout() -> None:
    """Point standard output's descriptor at /dev/null, so that the interpreter's last flush
    of what could not be written (a closed pipe, a full device) does not fail again at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. captured in a test)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def outputs(args) -> dict:
    """(inode, mtime) of the files at a command's ``--out`` (a file, or a folder's files)."""
    out = getattr(args, "out", None)
    try:
        if out is None or not Path(out).exists():
            return {}
        out = Path(out)
        files = [out] if out.is_file() else [p for p in out.iterdir() if p.is_file()]
        return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}
    except OSError:  # an unreadable folder: the command itself says what is wrong
        return {}


def what_was_written(args, before: dict) -> str:
    """Words for what an interrupted command left at its ``--out``, from what was there
    before it ran (``before``, from :func:`outputs`)."""
    new = [p for p, stamp in outputs(args).items() if before.get(p) != stamp]
    if not new:
        return "no result file was written" if args.command != "demo" else "no file was written"
    if len(new) == 1:
        return f"{new[0]} was written before it stopped"
    return f"{len(new)} files were written in {args.out} before it stopped"


def config_of(args):
    """The command's configuration: its file with the ``--set`` changes."""
    from rankjump.config import load_config
    from rankjump.config.overrides import with_overrides

    return with_overrides(load_config(args.config), args.set or ())


def add_set(p: argparse.ArgumentParser) -> None:
    """The ``--set SECTION.KEY=VALUE`` option of the commands that run a configuration."""
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="change a configuration field (a TOML value, e.g. run.steps=1000 or "
        "optimizer.eta=[0.1,0.2]); repeatable; recorded in the result",
    )
