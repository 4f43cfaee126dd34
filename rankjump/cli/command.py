"""What every ``rankjump`` command shares around its work: Ctrl-C and SIGTERM that always stop
it, the library's notes printed, standard output that cannot be written, the files it writes
checked and locked before it computes, and words for what an interrupted command left at its
``--out``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from rankjump.runtime.signals import Terminated, stop_signals

__all__ = [
    "RECORDED",
    "Terminated",
    "add_set",
    "check_recorded",
    "command_context",
    "config_of",
    "discard_stdout",
    "exit_code",
    "inputs_of",
    "outputs",
    "what_was_written",
    "writing",
]

RECORDED = ("network.init_file", "the source")  # inputs whose path the result records


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
    """SIGINT and SIGTERM raised as interrupts that are never lost
    (:func:`rankjump.runtime.signals.stop_signals`), and library notes printed, while a command
    runs."""
    notes = _Notes(command)
    logger = logging.getLogger("rankjump")
    logger.addHandler(notes)
    try:
        with stop_signals():
            yield
    finally:
        logger.removeHandler(notes)


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


def _same_path(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (the same inode where both exist, else the same
    path once links and ``..`` are resolved)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def inputs_of(args, cfg=None) -> dict[str, Path]:
    """The files a command reads, by the words that name them: its configuration file and the
    start weights it names (``network.init_file``)."""
    found = {}
    if getattr(args, "config", None):
        found[args.config] = Path(args.config)
    if cfg is not None and cfg.network.init == "file" and cfg.network.init_file:
        found["network.init_file"] = Path(cfg.network.init_file)
    return found


def check_recorded(name: str, path: str | Path) -> None:
    """Refuse, before any compute, a path the result will record (start weights, a replay's
    source) that is not valid UTF-8: netCDF attributes are UTF-8 text, so the save would fail."""
    from rankjump.results.io import ResultError

    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ResultError(
            f"{name} {str(path)!a}: the path is not valid UTF-8, and the result file records it "
            "(netCDF attributes are UTF-8 text); rename the file or its folder"
        ) from None


@contextlib.contextmanager
def writing(outputs: dict[str, Path], inputs: dict[str, Path]):
    """Check, before any compute, every file a command will write, and hold their locks while
    it runs; yields, per output, whether a file is there (it will be replaced).

    Refused with a :class:`~rankjump.results.io.ResultError` naming the path: an output that
    cannot be written (:func:`~rankjump.results.io.check_output_file`), one that is one of the
    command's inputs (``inputs``: its configuration, start weights, source result) or another of
    its outputs, and one that another process is writing
    (:func:`~rankjump.results.locks.output_lock`).

    Args:
        outputs: the paths the command writes, by the words that name them (``"--out"``, ``"the
            figure"``).
        inputs: the paths it reads, by the words that name them.
    """
    from rankjump.results.io import ResultError, check_output_file
    from rankjump.results.locks import output_lock

    for what in RECORDED:
        if what in inputs:
            check_recorded(what, inputs[what])
    names = list(outputs)
    for i, name in enumerate(names):
        path = outputs[name]
        for other in names[:i]:
            if _same_path(path, outputs[other]):
                raise ResultError(
                    f"{other} {outputs[other]}: {name} would be written to the same path; "
                    "choose another name"
                )
        for what, source in inputs.items():
            if _same_path(path, source):
                label = what if what == str(source) else f"{what} {source}"
                raise ResultError(
                    f"{name} {path}: is also this command's input ({label}), which writing it "
                    "would destroy; choose another path"
                )
    replaced = {name: check_output_file(path, name) for name, path in outputs.items()}
    with contextlib.ExitStack() as locks:
        for name, path in outputs.items():
            locks.enter_context(output_lock(path, name))
        yield replaced
