"""Every core of the machine in one process: the host CPU split into one XLA device per core.

XLA runs a program on one CPU device in one thread (a chunk's lanes are too few for its
intra-op parallelism to help), so a process with one CPU device uses one core. rankjump shards
a chunk's lanes over the devices (:func:`rankjump.kernel.compiled_chunk`), and a checkpoint
makes no LAPACK call (:mod:`rankjump.model.spectra`), so several CPU devices work side by side.

``import rankjump`` calls :func:`use_every_core`: when JAX's backend has not started yet and
neither ``XLA_FLAGS`` (``--xla_force_host_platform_device_count``) nor
``jax.config.jax_num_cpu_devices`` sets a count, the CPU is split into one device per core this
process may run on (``os.sched_getaffinity``: ``taskset`` is respected). The environment
variable ``RANKJUMP_CPU_DEVICES`` sets the count instead (``1``: one device, as plain JAX).
A count that is not a whole number of at least 1, there or in ``XLA_FLAGS``, is not an error at
import (``rankjump --version`` still answers): the import warns and leaves JAX alone, and every
``rankjump`` command refuses it in one line (:func:`environment_problem`).
Trajectories do not depend on the number of devices (tests/kernel/test_sharding.py).
"""

from __future__ import annotations

import os
import re
import warnings

import jax

from rankjump.runtime.signals import as_command

__all__ = ["ENV", "available_cores", "environment_problem", "use_every_core"]

ENV = "RANKJUMP_CPU_DEVICES"
_XLA_COUNT = re.compile(r"--xla_force_host_platform_device_count(?:=(\S*))?")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _count_problem(name: str, text: str) -> str | None:
    """Why ``text`` is not a device count (a whole number of at least 1), or None."""
    try:
        count = int(text)
    except ValueError:
        return f"{name} = {text!r}: must be a whole number of CPU devices (e.g. 1)"
    if count < 1:
        return f"{name} = {text!r}: must be at least 1"
    return None


def environment_problem() -> str | None:
    """The one-line problem with the device count the environment sets (``$RANKJUMP_CPU_DEVICES``,
    or ``--xla_force_host_platform_device_count`` in ``$XLA_FLAGS``), or None when it is sound."""
    wanted = os.environ.get(ENV)
    if wanted:
        if problem := _count_problem(ENV, wanted.strip()):
            return problem
    for match in _XLA_COUNT.finditer(os.environ.get("XLA_FLAGS", "")):
        value = match.group(1)
        if value is None or (problem := _count_problem("XLA_FLAGS", value)):
            return (
                f"XLA_FLAGS = {os.environ['XLA_FLAGS']!r}: "
                "--xla_force_host_platform_device_count must be a whole number of at least 1"
            )
    return None


def use_every_core() -> int | None:
    """Split the host CPU into one XLA device per available core (or ``$RANKJUMP_CPU_DEVICES``)
    if nothing chose a count and JAX's backend has not started; returns the count set, or None
    when it was left alone (also when the environment's count is unsound: then with a warning
    that names the variable, and commands refuse to run)."""
    if problem := environment_problem():
        if not as_command():
            # a library user is told here; the command says it in its one line
            warnings.warn(f"{problem}; the CPU devices are left as JAX sets them", stacklevel=2)
        return None
    wanted = os.environ.get(ENV)
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    if jax.config.jax_num_cpu_devices != -1:
        return None
    count = int(wanted) if wanted else available_cores()
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # the backend already runs: its devices stay
        return None
    return count
