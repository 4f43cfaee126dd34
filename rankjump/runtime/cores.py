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
Trajectories do not depend on the number of devices (tests/kernel/test_sharding.py).
"""

from __future__ import annotations

import os

import jax

__all__ = ["ENV", "available_cores", "use_every_core"]

ENV = "RANKJUMP_CPU_DEVICES"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def use_every_core() -> int | None:
    """Split the host CPU into one XLA device per available core (or ``$RANKJUMP_CPU_DEVICES``)
    if nothing chose a count and JAX's backend has not started; returns the count set, or None
    when it was left alone."""
    wanted = os.environ.get(ENV)
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    if jax.config.jax_num_cpu_devices != -1:
        return None
    try:
        count = int(wanted) if wanted else available_cores()
    except ValueError:
        raise ValueError(f"{ENV} = {wanted!r}: must be a whole number of devices") from None
    if count < 1:
        raise ValueError(f"{ENV} = {wanted!r}: must be at least 1")
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # the backend already runs: its devices stay
        return None
    return count
