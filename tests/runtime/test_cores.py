"""``import rankjump`` splits the CPU into one XLA device per available core
(rankjump.runtime.cores). Each case runs a fresh interpreter: the device count is fixed when JAX's
backend starts. That several devices run checkpoints side by side, without deadlock and with results
identical to one device, is tests/kernel/test_sharding.py's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
TESTS = Path(__file__).parents[1]
COUNT = "import jax, rankjump; print(len(jax.devices('cpu')))"


def _run(code: str, timeout: float = 120, prefix=(), **env):
    """Run ``code`` in a fresh interpreter with a clean device environment plus ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "RANKJUMP_CPU_DEVICES")}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS)])
    return subprocess.run(
        [*prefix, sys.executable, "-c", code],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_one_device_per_available_core():
    out = _run(COUNT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout) == len(os.sched_getaffinity(0))


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")
def test_taskset_is_respected():
    out = _run(COUNT, prefix=("taskset", "-c", "0"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout) == 1


def test_a_chosen_count_is_kept():
    assert int(_run(COUNT, RANKJUMP_CPU_DEVICES="3").stdout) == 3
    flags = "--xla_force_host_platform_device_count=5"
    assert int(_run(COUNT, XLA_FLAGS=flags, RANKJUMP_CPU_DEVICES="3").stdout) == 5
    # A backend started before the import keeps its devices.
    early = "import jax; jax.devices(); import rankjump; print(len(jax.devices('cpu')))"
    assert int(_run(early).stdout) == 1


@pytest.mark.parametrize("value", ["two", "-3"])
def test_a_bad_count_is_named_by_the_import_and_refused_by_every_command(value):
    # A library import goes on with JAX's own devices and warns, naming the variable.
    out = _run(COUNT, RANKJUMP_CPU_DEVICES=value)
    assert out.returncode == 0 and int(out.stdout) == 1, out.stderr[-2000:]
    assert f"RANKJUMP_CPU_DEVICES = '{value}'" in out.stderr
    # The command answers --version, and refuses to run in one line with exit code 2.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RANKJUMP_CPU_DEVICES": value}
    version = subprocess.run(
        [sys.executable, "-m", "rankjump", "--version"], env=env, capture_output=True, text=True
    )
    run = subprocess.run(
        [sys.executable, "-m", "rankjump", "stats", "missing.nc"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert version.returncode == 0
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"rankjump stats: error: RANKJUMP_CPU_DEVICES = '{value}': "
        + (
            "must be at least 1"
            if value in ("0", "-3")
            else "must be a whole number of CPU devices (e.g. 1)"
        )
    ]


def test_a_bad_xla_device_count_is_refused_by_every_command():
    flags = "--xla_force_host_platform_device_count=0"
    run = subprocess.run(
        [sys.executable, "-m", "rankjump", "--version"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": flags},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and run.stdout.startswith("rankjump ")
    run = subprocess.run(
        [sys.executable, "-m", "rankjump", "stats", "missing.nc"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": flags},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("rankjump stats: error: XLA_FLAGS = ") and "device_count" in line
