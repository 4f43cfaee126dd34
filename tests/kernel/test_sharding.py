"""Sharding the trajectory axis over devices gives results identical to one device.

The host platform is split into 4 CPU devices with XLA_FLAGS, which must be set before JAX starts
its backend, so the comparison runs in a fresh interpreter. Its 4 checkpoints run on the 4
devices side by side: the timeout turns a deadlock between devices (as LAPACK calls at the
checkpoints had) into a failure within minutes instead of a hung suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
import jax
import numpy as np
import rankjump as rj
sys.path.insert(0, {tests!r})
from conftest import small_config

assert len(jax.devices()) == 4, jax.devices()
cfg = small_config(
    optimizer={{"lam": [1e-3, 2e-3], "eta": [0.02, 0.05]}},
    run={{"trajectories": 7, "steps": 60, "record_every": 20, "chunk_size": 3,
          "dtype": "float32"}},
)
four = rj.simulate(cfg, progress=False)
one = rj.simulate(cfg, progress=False, devices=jax.devices()[:1])
for name in ("rank", "layer_rank", "end_rank", "sv", "loss", "param_norm2", "imbalance"):
    assert np.array_equal(four[name].values, one[name].values, equal_nan=True), name
print("identical")
"""


def test_four_devices_equal_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    tests = str(Path(__file__).parents[1])
    root = str(Path(__file__).parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(tests=tests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "identical" in out.stdout
