"""Shared helpers for the core tests.

rankjump turns JAX's float64 flag on only inside its entry points (tests/runtime/test_precision.py
checks that, in a fresh process). The tests themselves build float64 references and call lower-level
functions directly, so this file turns the flag on for the test process before any test uses JAX.
Test modules import ``small_config`` from here (``from conftest import small_config``) to share
program shapes, hence compilations.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# One CPU device per test worker (pytest-xdist runs a worker per core); the tests that split the
# CPU into several devices run a fresh interpreter (tests/kernel/test_sharding.py,
# tests/runtime/test_cores.py).
os.environ.setdefault("RANKJUMP_CPU_DEVICES", "1")

import jax  # noqa: E402

# A persistent XLA compilation cache of this test process, removed when it exits: the tests
# build the same small programs again and again (a new jax.jit of the same step, the GD minimum
# program of each configuration), and a hit skips XLA's compile of the very same program. The
# chunk programs (they call back to the host) are never cached: tests share their shapes
# instead. Processes the tests start (sweeps, notebooks) compile for themselves.
if not jax.config.jax_compilation_cache_dir:
    _XLA_CACHE = tempfile.mkdtemp(prefix="rankjump-tests-xla-")
    atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rankjump import Config  # noqa: E402

jax.config.update("jax_enable_x64", True)  # float64 references in the tests (module docstring)

# pytest-xdist (--dist loadfile, --no-loadscope-reorder) hands out whole files in collection
# order, each to the first free worker: the longest files go first, so that the two workers
# finish together instead of one running a long file alone at the end.
LONGEST_FIRST = (
    "test_notebooks.py",
    "test_simulate.py",
    "test_dynamics.py",
    "test_reliability.py",
)


def pytest_collection_modifyitems(config, items):
    """Put the longest files first (LONGEST_FIRST); leave ``@pytest.mark.slow`` tests out
    unless a marker expression is given (``-m slow``)."""
    order = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: order.get(item.path.name, len(order)))  # stable
    if config.getoption("markexpr"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture
def np_rng():
    """A fixed NumPy generator for test data (reference inputs, random weights)."""
    return np.random.default_rng(20240523)


def small_config(**sections) -> Config:
    """A tiny valid configuration (5 x 4 rank-2 target, depth 3, width 4), with overrides."""
    base = Config().replace(
        task={"d_out": 5, "d_in": 4, "rank": 2, "observed": 0.6, "singular_values": [2.0, 1.0]},
        network={"depth": 3, "width": 4, "init_scale": 1.0},
        optimizer={"lam": [1e-2], "eta": [0.05]},
        run={
            "trajectories": 4,
            "steps": 200,
            "record_every": 50,
            "dtype": "float64",
            "chunk_size": 512,
        },
    )
    return base.replace(**sections) if sections else base


def np_product(ws):
    """NumPy float64 reference: A = W_L ... W_1."""
    a = ws[0]
    for w in ws[1:]:
        a = w @ a
    return a


def np_entry_grads(ws, i, j):
    """dA[i, j]/dW_l = (W_L..W_{l+1})^T e_i (W_{l-1}..W_1 e_j)^T, by explicit products."""
    grads = []
    for l in range(len(ws)):
        below = np.eye(ws[0].shape[1])
        for w in ws[:l]:
            below = w @ below
        above = np.eye(ws[-1].shape[0])
        for w in reversed(ws[l + 1 :]):
            above = above @ w
        grads.append(np.outer(above[i, :], below[:, j]))
    return grads
