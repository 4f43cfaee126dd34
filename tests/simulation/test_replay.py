"""Tests of rankjump.replay: a replayed trajectory follows the original path bit for bit, its
fine checkpoints and sampled entries are the kernel's, the default window, and bad requests."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from conftest import np_entry_grads, np_product, small_config

from rankjump import load_result, save_result, save_weights, simulate
from rankjump.cli.main import main
from rankjump.model.tasks import make_task
from rankjump.plots.replay import collapse_summary, plot_replay, sample_excess
from rankjump.simulation.replays import ReplayError, jump_window, replay

RECORD_VARS = ("rank", "layer_rank", "end_rank", "sv", "loss", "data_loss", "param_norm2")
LAM, ETA = 1e-2, 0.05


def _config(tmp_path, **run):
    """small_config started from a weights file (known to NumPy), 400 steps every 100."""
    rng = np.random.default_rng(7)
    shapes = [(4, 4), (4, 4), (5, 4)]
    weights = [rng.standard_normal(s) / 2 for s in shapes]
    path = tmp_path / "start.npz"
    save_weights(path, weights)
    cfg = small_config(
        network={"init": "file", "init_file": str(path)},
        optimizer={"lam": [LAM], "eta": [ETA, 0.08]},
        run={"steps": 400, "record_every": 100, "trajectories": 3, **run},
    )
    return cfg, weights


@pytest.mark.parametrize("dtype", ["float64", pytest.param("float32", marks=pytest.mark.slow)])
def test_replay_equals_the_original_at_its_checkpoints(tmp_path, dtype):
    cfg, _ = _config(tmp_path, dtype=dtype)
    ds = simulate(cfg, progress=False)
    rep = replay(ds, LAM, 0.08, traj=2, start=100, stop=300, every=10, progress=False)
    assert rep.sizes["checkpoint"] == 2 + 20  # 0, 100 coarse; 110 .. 300 fine
    np.testing.assert_array_equal(rep["step"][:4], [0, 100, 110, 120])
    original = ds.sel(lam=[LAM], eta=[0.08], traj=[2]).isel(checkpoint=slice(0, 4))
    common = rep.isel(checkpoint=np.flatnonzero(np.isin(rep["step"], original["step"])))
    assert common.sizes["checkpoint"] == 4
    for name in RECORD_VARS:
        np.testing.assert_array_equal(common[name].values, original[name].values, err_msg=name)
    # The fine checkpoints are new points of the path, and the layers' singular values come
    # with them (their largest is the layer's spectral norm, so at most its Frobenius norm).
    assert np.unique(rep["param_norm2"].values).size == rep.sizes["checkpoint"]
    layer_sv = rep["layer_sv"].values[0, 0, 0]
    assert layer_sv.shape == (22, 3, cfg.k_max)
    frob2 = (layer_sv**2).sum(axis=-1).sum(axis=-1)
    np.testing.assert_allclose(frob2, rep["param_norm2"].values[0, 0, 0], rtol=1e-4)


def test_replay_samples_are_the_entries_the_kernel_used(tmp_path):
    # NumPy float64 SGD from the start file with the replay's sampled entries reproduces the
    # replay's fine records: the entries are the ones the kernel drew.
    cfg, weights = _config(tmp_path)
    ds = simulate(cfg, progress=False)
    rep = replay(ds, LAM, ETA, traj=1, start=0, stop=100, every=1, progress=False)
    task = make_task(cfg.task)
    target = {(i, j): y for i, j, y in zip(task.rows, task.cols, task.y, strict=True)}
    rows, cols = rep["sample_row"].values[:, 0], rep["sample_col"].values[:, 0]
    assert rows.shape == (100,) and all((i, j) in target for i, j in zip(rows, cols, strict=True))
    ws = [w.copy() for w in weights]
    want_sv, want_n2 = [], []
    for i, j in zip(rows, cols, strict=True):
        r = np_product(ws)[i, j] - target[(i, j)]
        grads = np_entry_grads(ws, i, j)
        ws = [(1 - 2 * ETA * LAM) * w - 2 * ETA * r * g for w, g in zip(ws, grads, strict=True)]
        want_sv.append(np.linalg.svd(np_product(ws), compute_uv=False)[: cfg.k_max])
        want_n2.append(sum((w * w).sum() for w in ws))
    got = rep.isel(lam=0, eta=0, traj=0, checkpoint=slice(1, None))
    np.testing.assert_allclose(got["sv"].values, want_sv, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["param_norm2"].values, want_n2, rtol=1e-12)


def test_default_window_holds_the_collapse_and_the_entry():
    steps = np.arange(0, 1100, 100)
    rank = np.array([3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2])
    sv = np.zeros((11, 4))
    sv[:, 2] = [1.0, 0.9, 1.1, 0.8, 0.05, 0.01, 1e-3, 1e-4, 1e-5, 1e-5, 1e-5]
    assert jump_window(rank, sv, steps, 100) == (300, 800)  # last at half size, entry + 100
    with pytest.raises(ReplayError, match="never drops below its start rank 3"):
        jump_window(np.full(11, 3), sv, steps, 100)


def test_replay_command_writes_the_file_and_figure(tmp_path, capsys):
    cfg, _ = _config(tmp_path)
    # Both etas, as in the other tests here: the same program (6 lanes); the replay is at 0.08.
    ds = simulate(cfg.replace(optimizer={"lam": [0.05]}), progress=False)
    rank = ds["rank"].sel(lam=0.05, eta=0.08).values
    jumped = [t for t in range(3) if np.any(rank[t] < rank[t, 0])]
    assert jumped, "the setting must make a trajectory drop a rank"
    save_result(ds, tmp_path / "run.nc")
    out = tmp_path / "jump.nc"
    code = main(
        ["replay", str(tmp_path / "run.nc"), "--cell", "0.05,0.08", "--traj", str(jumped[0]),
         "--out", str(out), "--quiet"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "the replay equals the file" in printed and "entered rank <" in printed
    rep = load_result(out)
    assert rep.attrs["replay_traj"] == jumped[0]
    assert out.with_suffix(".png").stat().st_size > 10_000
    summary = collapse_summary(rep)
    assert summary["entry_step"] is not None and summary["decay_steps"] == pytest.approx(125.0)
    edges, ratio = sample_excess(rep, "sample_col")
    assert ratio.shape == (4, len(edges) - 1)
    assert plot_replay(rep).axes[0].get_yscale() == "log"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cell", "0.5,0.08", "--traj", "0"], "lam = 0.5 is not in the result"),
        (["--cell", "0.01,0.08", "--traj", "7"], "--traj 7: the result has trajectories 0 .. 2"),
        (["--cell", "0.01,0.08", "--traj", "0", "--from", "50", "--to", "200"], "--from 50"),
        (["--cell", "0.01,0.08", "--traj", "0", "--from", "200", "--to", "100"], "--to 100"),
        (["--cell", "0.01,0.08", "--traj", "0", "--from", "0", "--to", "200", "--every", "30"],
         "--every 30: must divide"),
        (["--cell", "0.01", "--traj", "0"], "expected LAM,ETA"),
        (["--cell", "0.01,0.08", "--traj", "0", "--from", "0", "--to", "400", "--old"],
         "drew its samples differently"),
    ],
)  # fmt: skip
def test_replay_command_refuses_bad_requests(tmp_path, capsys, args, message):
    cfg, _ = _config(tmp_path)
    ds = simulate(cfg, progress=False)
    if "--old" in args:  # a file from a rankjump that drew its samples otherwise
        args = [a for a in args if a != "--old"]
        ds.attrs.pop("sample_streams")
    save_result(ds, tmp_path / "run.nc")
    out = tmp_path / "jump.nc"
    with pytest.raises(SystemExit) if "LAM,ETA" in message else contextlib.nullcontext():
        code = main(["replay", str(tmp_path / "run.nc"), *args, "--out", str(out), "--quiet"])
        assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]
    assert len(err) == 1 or "LAM,ETA" in message  # argparse prints its usage first
    assert not out.exists()
