"""Writes that are never seen half done: a temporary name renamed into place, signals held.

Result files (:func:`rankjump.results.io.save_result`), sweep job files and manifests are written
through :func:`atomic_path`, the short writes of a sweep also inside :func:`deferred_signals`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path

__all__ = ["atomic_path", "deferred_signals"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """A temporary name beside ``path`` to write to: renamed onto ``path`` (replacing a file
    there) when the block ends without an error, removed otherwise, so no half-written file is
    ever seen under ``path``. The file gets the permissions the user's umask gives new files."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def deferred_signals():
    """Hold SIGINT and SIGTERM until the block ends, then act on the first one that came (in
    the main thread; elsewhere Python delivers no signals, and the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    handlers = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    for n in handlers:
        signal.signal(n, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for n, handler in handlers.items():
            signal.signal(n, handler)
        if caught:
            signal.raise_signal(caught[0])
