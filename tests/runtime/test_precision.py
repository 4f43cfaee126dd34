"""``import rankjump`` leaves JAX's float64 flag as it finds it, and the entry points still compute
in float64 where asked. Run in a fresh process: the test process itself has float64 on
(tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import pytest

from rankjump.runtime.precision import float64_scope, with_float64

SCRIPT = textwrap.dedent(
    """
    import jax
    import numpy as np
    import rankjump
    from rankjump import Config, simulate

    assert not jax.config.jax_enable_x64, "import rankjump switched float64 on"
    base = Config().replace(
        task={"d_out": 5, "d_in": 4, "rank": 2, "observed": 0.6, "singular_values": [2.0, 1.0]},
        network={"depth": 3, "width": 4, "init_scale": 1.0},
        optimizer={"lam": [1e-2], "eta": [0.05]},
        run={"trajectories": 4, "steps": 100, "record_every": 50, "dtype": "float64"},
    )
    # One float64 run (a GD minimum start, then SGD) and one float32 run: two programs.
    ds = simulate(base.replace(network={"init": "gd_minimum", "gd_eta": 0.05}), progress=False)
    assert ds["sv"].dtype == np.float64 and ds["loss"].dtype == np.float64, ds["sv"].dtype
    assert max(ds.attrs["gd_grad_norm"]) < 1e-10, ds.attrs["gd_grad_norm"]  # needs float64
    assert not jax.config.jax_enable_x64, "simulate left float64 on"
    f32 = simulate(base.replace(run={"dtype": "float32"}), progress=False)
    assert f32["sv"].dtype == np.float32
    assert not jax.config.jax_enable_x64
    print("ok")
    """
)


def test_import_leaves_float64_off_and_entry_points_still_compute_in_float64():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_scope_restores_the_flag_it_found():
    before = jax.config.jax_enable_x64  # on in the test process (conftest)
    with jax.enable_x64(False):
        with float64_scope():
            assert jax.config.jax_enable_x64
        assert not jax.config.jax_enable_x64
        assert with_float64(lambda: jax.config.jax_enable_x64)() is True
        assert not jax.config.jax_enable_x64
    assert jax.config.jax_enable_x64 == before


@pytest.mark.parametrize("flag", [False, True])
def test_the_scope_is_a_no_op_on_results(flag):
    """A float32 computation gives the same bits inside and outside the scope."""
    x = jax.numpy.linspace(0, 1, 7, dtype=jax.numpy.float32)
    with jax.enable_x64(flag):
        plain = jax.jit(lambda v: jax.numpy.sin(v) * 3)(x)
        with float64_scope():
            scoped = jax.jit(lambda v: jax.numpy.sin(v) * 3)(x)
    assert scoped.dtype == plain.dtype == jax.numpy.float32
    assert bool((scoped == plain).all())
