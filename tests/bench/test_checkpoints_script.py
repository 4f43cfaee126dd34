"""benchmarks/checkpoints.py: its stand-in records have the real record's shapes, reach the
compiled program, and leave it as it was afterwards."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import rankjump as rj

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import checkpoints  # noqa: E402


def _shapes(ds):
    return {name: (v.dims, v.shape, v.dtype) for name, v in ds.data_vars.items()}


def test_each_variant_gives_a_result_of_the_real_records_shape_and_the_real_one_comes_back():
    cfg = checkpoints.bench_config(checkpoints.HEADLINE, 16, 40).replace(run={"record_every": 10})
    before = rj.simulate(cfg, progress=False)
    got = {}
    for name in checkpoints.VARIANTS:
        with checkpoints.variant(name):
            got[name] = rj.simulate(cfg, progress=False)
    after = rj.simulate(cfg, progress=False)
    for name in checkpoints.VARIANTS:
        assert _shapes(got[name]) == _shapes(before), name
    np.testing.assert_array_equal(got["full"]["sv"], before["sv"])
    # The stand-ins reached the program: their singular values are not the record's.
    for name in ("no spectra", "no record"):
        assert not np.allclose(got[name]["sv"], before["sv"]), name
    np.testing.assert_array_equal(got["no spectra"]["param_norm2"], before["param_norm2"])
    np.testing.assert_array_equal(after["sv"], before["sv"])
