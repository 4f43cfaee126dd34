"""Helpers shared by test modules of several folders: sweep and simulate results to compare,
hand-made result Datasets for the figures, and bad configurations with the messages they get."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr
from conftest import small_config

from rankjump import demo_config, load_result, save_result, simulate
from rankjump.config import config_to_toml

# 2 x 2 cells x 6 trajectories = 24 lanes in 6 chunks of 4.
GRID = small_config(
    optimizer={"lam": [1e-2, 2e-2], "eta": [0.05, 0.1]},
    run={"trajectories": 6, "chunk_size": 4},
)


# The demo's minimum (rank 3, ||theta||^2 about 17) at a small eta, in float64, with the fewest
# replicas, paths and steps that run every stage of the three rare methods (AMS unless a test
# names another).
TINY_RARE = demo_config().replace(
    optimizer={"eta": [0.05]},
    run={"steps": 400, "record_every": 200, "trajectories": 1, "dtype": "float64"},
    rare={
        "method": "ams",
        "paths": 8,
        "replicas": 4,
        "kill": 1,
        "runs": 2,
        "window": 40,
        "pool": 8,
        "burn_in": 0,
        "commit_steps": 200,
    },
)


@functools.cache
def simulated(cfg):
    """simulate(cfg), saved and loaded back as a sweep's merged file is (memoised)."""
    path = Path(tempfile.mkdtemp()) / "simulate.nc"
    return load_result(save_result(simulate(cfg, progress=False), path))


def assert_same_result(got: xr.Dataset, want: xr.Dataset) -> None:
    """Same variables, values (bit for bit), coordinates and attributes apart from wall time."""
    assert set(got.data_vars) == set(want.data_vars)
    for name in want.variables:
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)
        assert got[name].dims == want[name].dims, name
    drop = {"wall_time_s"}
    assert {k: v for k, v in got.attrs.items() if k not in drop} == {
        k: v for k, v in want.attrs.items() if k not in drop
    }


K = 4  # stored singular values


def make_ds(
    rank: np.ndarray,
    lam: list[float],
    eta: list[float],
    diverged: np.ndarray | None = None,
    record_every: int = 100,
) -> xr.Dataset:
    """A result Dataset with results.build_dataset's schema from (lam, eta, traj, ckpt) ranks.

    Singular values: modes below the rank sit at 1e-7 (the float32 floor), the others at 1..K.
    """
    rank = np.asarray(rank, dtype=np.int32)
    n_lam, n_eta, n_traj, n_ck = rank.shape
    diverged = np.zeros(rank.shape[:3], bool) if diverged is None else diverged
    cell = ("lam", "eta", "traj")
    steps = np.arange(n_ck, dtype=np.int64) * record_every
    k = np.arange(K)
    sv = np.where(k < rank[..., None], 4.0 - k, 1e-7).astype(np.float32)
    zeros = np.zeros(rank.shape, np.float32)
    cfg = small_config(
        optimizer={"lam": lam, "eta": eta},
        run={"trajectories": n_traj, "steps": (n_ck - 1) * record_every, "record_every": 100},
    )
    ds = xr.Dataset(
        {
            "rank": (cell + ("checkpoint",), rank),
            "layer_rank": (cell + ("checkpoint", "layer"), np.repeat(rank[..., None], 3, -1)),
            "end_rank": (cell + ("checkpoint",), rank),
            "sv": (cell + ("checkpoint", "k"), sv),
            "loss": (cell + ("checkpoint",), zeros),
            "data_loss": (cell + ("checkpoint",), zeros),
            "param_norm2": (cell + ("checkpoint",), zeros),
            "imbalance": (cell + ("checkpoint",), zeros),
            "diverged": (cell, diverged),
            "diverged_step": (cell, np.where(diverged, steps[-1], -1)),
        },
        coords={
            "lam": np.asarray(lam, float),
            "eta": np.asarray(eta, float),
            "traj": np.arange(n_traj),
            "step": ("checkpoint", steps),
            "layer": np.arange(1, 4),
            "k": np.arange(1, K + 1),
        },
    )
    ds.attrs.update(
        config=config_to_toml(cfg),
        producer="rankjump",
        wall_time_s=1.0,
        threshold_layer=[1e-3] * n_lam,
        threshold_end=[1e-9] * n_lam,
        rel_floor=1e-5,
    )
    return ds


def jumps(n_traj: int, n_ck: int, counts: np.ndarray, at: int = 2, start: int = 3) -> np.ndarray:
    """(lam, eta, traj, ckpt) ranks: in each cell the first counts[i, j] trajectories drop to
    start - 1 at checkpoint `at`, the rest stay at start."""
    counts = np.asarray(counts)
    rank = np.full(counts.shape + (n_traj, n_ck), start)
    for idx, c in np.ndenumerate(counts):
        rank[idx][:c, at:] = start - 1
    return rank


# (name, configuration dict, a regular expression the message must match). Every message must
# name the offending field (or section).
BAD = [
    (
        "unknown key",
        {"network": {"dept": 3}},
        r"network\.dept.*unknown.*did you mean network\.depth",
    ),
    ("unknown key, no close match", {"run": {"zzzzzz": 1}}, r"run\.zzzzzz.*unknown key.*steps"),
    ("unknown section", {"netwrk": {"depth": 3}}, r"\[netwrk\].*unknown section.*\[network\]"),
    ("section not a table", {"run": 3}, r"\[run\]"),
    ("depth 0", {"network": {"depth": 0}}, r"network\.depth = 0: must be >= 1"),
    ("observed 0", {"task": {"observed": 0.0}}, r"task\.observed = 0\.0: must be > 0"),
    ("observed 1.5", {"task": {"observed": 1.5}}, r"task\.observed = 1\.5: must be <= 1"),
    ("observed too small", {"task": {"observed": 0.001}}, r"task\.observed = 0\.001"),
    ("negative lam", {"optimizer": {"lam": [1e-3, -0.1]}}, r"optimizer\.lam = -0\.1: must be >= 0"),
    ("eta 0", {"optimizer": {"eta": [0.0]}}, r"optimizer\.eta = 0\.0: must be > 0"),
    ("empty eta", {"optimizer": {"eta": []}}, r"optimizer\.eta"),
    ("rank > min(d)", {"task": {"d_out": 4, "d_in": 3, "rank": 4}}, r"task\.rank = 4: .*<= .* 3"),
    (
        "record_every",
        {"run": {"steps": 100, "record_every": 30}},
        r"run\.record_every = 30: must divide run\.steps = 100",
    ),
    ("dtype float16", {"run": {"dtype": "float16"}}, r"run\.dtype = 'float16': must be one of"),
    ("depth 2.5", {"network": {"depth": 2.5}}, r"network\.depth = 2\.5: must be an integer"),
    ("depth true", {"network": {"depth": True}}, r"network\.depth = true: must be an integer"),
    ("lam string", {"optimizer": {"lam": "x"}}, r"optimizer\.lam = 'x'"),
    (
        "lam list of strings",
        {"optimizer": {"lam": ["x"]}},
        r"optimizer\.lam = 'x': must be a number",
    ),
    ("eta nan", {"optimizer": {"eta": [float("nan")]}}, r"optimizer\.eta = nan: must be finite"),
    ("width string", {"network": {"width": "10"}}, r"network\.width = '10': must be an integer"),
    (
        "singular_values length",
        {"task": {"rank": 2, "singular_values": [1.0]}},
        r"task\.singular_values has 1 values: must have rank = 2",
    ),
    (
        "singular_values negative",
        {"task": {"rank": 1, "singular_values": [-1.0]}},
        r"task\.singular_values = -1\.0: must be > 0",
    ),
    (
        "batch > observed",
        {
            "task": {"d_out": 2, "d_in": 2, "rank": 1, "observed": 0.5},
            "optimizer": {"batch_size": 3},
        },
        r"optimizer\.batch_size = 3: must be <= the number of observed entries \(2\)",
    ),
    ("threshold bogus", {"rank": {"threshold": "bogus"}}, r"rank\.threshold = 'bogus': must be"),
    ("threshold negative", {"rank": {"threshold": -1.0}}, r"rank\.threshold = -1\.0: must be > 0"),
    (
        "2 eta lam >= 1",
        {"optimizer": {"lam": [0.5], "eta": [1.0]}},
        r"optimizer\.eta, optimizer\.lam: 2 \* eta \* lam = 1 must be < 1",
    ),
    ("balanced without init_rank", {"network": {"init": "balanced"}}, r"network\.init_rank"),
    (
        "init_rank too big",
        {"network": {"init": "balanced", "init_rank": 11}},
        r"network\.init_rank = 11: must be <= min\(d_out, d_in, width\) = 10",
    ),
    ("file without init_file", {"network": {"init": "file"}}, r"network\.init_file"),
    ("unknown init", {"network": {"init": "xavier"}}, r"network\.init = 'xavier': must be one of"),
    ("label_noise 0", {"optimizer": {"kind": "label_noise"}}, r"optimizer\.label_noise"),
    ("langevin T 0", {"optimizer": {"kind": "langevin"}}, r"optimizer\.temperature"),
    ("safety > 1", {"rank": {"safety": 2.0}}, r"rank\.safety = 2\.0: must be <= 1"),
    (
        "sv and norm",
        {"task": {"rank": 1, "singular_values": [1.0], "target_norm": 2.0}},
        r"task\.target_norm",
    ),
]
