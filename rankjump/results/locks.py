"""One writer per output: an advisory lock beside a command's output, held while it runs.

Two processes given the same output (a result file, a sweep folder, a figure folder) would
otherwise both run, both print "wrote", and leave one of them with the other's file. The first
takes the lock :func:`output_lock`; the second is refused at once with an :class:`OutputInUse`
that names the first process. The lock is ``flock`` on a small file beside the output
(``.NAME.lock``, holding the owner's pid, host, command line and start time); the kernel releases
it when its process ends, however it ends (a crash, ``kill -9``), so a stale lock file never
blocks. Locks are advisory: they hold between rankjump processes on one machine, and on network
file systems only as far as those honour ``flock``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from rankjump.results.io import ResultError

__all__ = ["OutputInUse", "lock_path", "output_lock"]


class OutputInUse(ResultError):
    """Another process holds the output's lock."""


def lock_path(path: str | Path) -> Path:
    """The lock file of the output ``path``: ``.NAME.lock`` in its folder."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


def _holder(fd: int) -> str:
    """The words the lock's owner wrote in it (pid, host, command, start), given a moment to
    write them when it has only just taken the lock."""
    for _ in range(20):
        try:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        except OSError:
            break
        if text.endswith(")") or "since" in text:
            return text
        time.sleep(0.005)
    return "one that has only just started"


def _stamp() -> str:
    command = " ".join(["rankjump", *sys.argv[1:]]) if sys.argv else "python"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    return f"pid {os.getpid()} on {socket.gethostname()}, `{command}`, since {started}"


@contextlib.contextmanager
def output_lock(path: str | Path, what: str = "--out"):
    """Hold the lock of the output ``path`` for the block; refuse (:class:`OutputInUse`, naming
    the process that holds it) when another process holds it. The lock file is removed when the
    block ends.

    A folder in which no lock file can be made (read-only) is not locked: nothing can be written
    there either, and the command's own check says so.
    """
    lock = lock_path(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EROFS, errno.ENOENT, errno.EPERM):
                yield  # the output's own checks name the folder that cannot be written
                return
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _holder(fd)
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise OutputInUse(
                f"{what} {path}: in use by another rankjump process ({holder}); wait for it to "
                "end or choose another path"
            ) from None
        # The file may have been removed (by its last owner, ending) between open and flock:
        # then this lock guards nothing, and the open starts again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (_stamp() + "\n").encode("utf-8", "replace"), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while held: a process waiting on the old file starts again
        os.close(fd)
