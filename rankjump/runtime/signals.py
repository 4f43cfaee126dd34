"""Ctrl-C and SIGTERM that stop a run every time.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when SIGINT comes. In
a JAX program that is sometimes inside a garbage-collection or weakref callback (XLA registers
some), where Python prints "Exception ignored in ..." and carries on: the interrupt is lost and
the run goes to its end. :func:`stop_signals` makes SIGINT and SIGTERM raise as usual (SIGTERM as
:class:`Terminated`) and also remembers them, and the long loops call :func:`raise_pending`
between steps, which raises again an interrupt that was dropped.

Before a command starts (while ``rankjump``'s imports run, a few seconds) an interrupt would
land in library code that is not built for it: :func:`hold_until_command` makes the two signals
only be remembered then, and the command acts on them as it starts.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path

__all__ = [
    "Terminated",
    "as_command",
    "caught",
    "hold_until_command",
    "raise_pending",
    "stop_signals",
]


class Terminated(KeyboardInterrupt):
    """SIGTERM (a kill, a scheduler's time limit) raised as an interrupt, so that temporary
    files are removed and the command says what it left, as for Ctrl-C."""

    signal = signal.SIGTERM


_caught: list[int] = []


def _interrupt(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum, frame):
    _caught.append(signum)
    raise _interrupt(signum)


def as_command() -> bool:
    """Whether this process is the ``rankjump`` executable (or ``python -m rankjump``, whose
    ``sys.argv[0]`` reads ``-m`` while the package imports)."""
    return Path(sys.argv[0] if sys.argv else "").name in ("rankjump", "-m")


def _remember(signum, frame):
    _caught.append(signum)


def hold_until_command() -> None:
    """Remember SIGINT and SIGTERM without raising until :func:`stop_signals` takes over (the
    ``rankjump`` executable calls it first thing, so a signal during its imports stops the
    command as it starts instead of being lost in a library's import)."""
    if threading.current_thread() is threading.main_thread():
        for n in (signal.SIGINT, signal.SIGTERM):
            signal.signal(n, _remember)


def caught() -> int | None:
    """The first stopping signal that came inside :func:`stop_signals`, or None."""
    return _caught[0] if _caught else None


def raise_pending() -> None:
    """Raise the interrupt of a signal that came (inside :func:`stop_signals`) and may have been
    dropped; nothing when none came."""
    if _caught:
        raise _interrupt(_caught[0])


@contextlib.contextmanager
def stop_signals():
    """SIGINT and SIGTERM raise an interrupt while the block runs, and are remembered for
    :func:`raise_pending` (in the main thread; elsewhere Python delivers no signals, and the
    block runs as it is). A signal held by :func:`hold_until_command` stays pending. The
    handlers before it are restored at its end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {n: signal.signal(n, _handler) for n in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for n, handler in previous.items():
            signal.signal(n, handler)
        _caught.clear()
