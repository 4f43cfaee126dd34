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


def test_a_bad_count_is_refused_by_name():
    out = _run(COUNT, RANKJUMP_CPU_DEVICES="two")
    assert out.returncode != 0
    assert "RANKJUMP_CPU_DEVICES = 'two'" in out.stderr
