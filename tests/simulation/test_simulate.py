"""Tests of rankjump.simulation.runs and rankjump.results.io: batching invariances, recompilation,
rank invariance of exactly low-rank starts, divergence, and the result file.

Compilation dominates the cost here (several seconds a program on two cores), so the tests share
a few program shapes: most runs use the Structure of ``small_config()`` (float64, depth 3, 200
steps, checkpoints every 50) with chunks of 4 lanes.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from conftest import small_config

from rankjump import (
    ConfigError,
    ResultError,
    load_result,
    loads_config,
    save_result,
    simulate,
)
from rankjump.dynamics import LANES_LAST_MAX_BATCH, TaskArrays, lanes_last, new_hyper, new_state
from rankjump.kernel import (
    CPU_OPTIONS,
    compiled_advance,
    compiler_options,
    new_lane_params,
    options_for,
    run_lanes,
    tile_for,
    trace_count,
)
from rankjump.model.network import init_gaussian, layer_shapes
from rankjump.model.ranks import thresholds_for
from rankjump.model.tasks import make_task
from rankjump.model.theory import mode_minima
from rankjump.simulation.minima import gd_minimum
from rankjump.simulation.plan import structure_for
from rankjump.simulation.starts import load_weights, save_weights

RECORD_VARS = (
    "rank",
    "layer_rank",
    "end_rank",
    "sv",
    "loss",
    "data_loss",
    "param_norm2",
    "imbalance",
    "diverged",
    "diverged_step",
)
INT_VARS = ("rank", "layer_rank", "end_rank", "diverged", "diverged_step")


@functools.cache
def _sim(cfg):
    """simulate(cfg), memoised across the tests of this module (configs are hashable)."""
    return simulate(cfg, progress=False)


def _assert_records_equal(got: xr.Dataset, want: xr.Dataset, rtol: float, atol: float = 0.0):
    for name in RECORD_VARS:
        g, w = np.asarray(got[name]), np.asarray(want[name])
        assert g.shape == w.shape, name
        if name in INT_VARS:
            np.testing.assert_array_equal(g, w, err_msg=name)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=name)


# ------------------------------------------------------------------ jit(vmap) == Python loop


def _single_lane(cfg):
    """The un-vmapped one-trajectory program and its inputs, rebuilt as simulate builds them."""
    task = make_task(cfg.task)
    net, opt, run = cfg.network, cfg.optimizer, cfg.run
    s = structure_for(cfg)
    dtype = jnp.dtype(run.dtype)
    arrays = TaskArrays.of(task, dtype)

    def params(lam, eta):
        thr = thresholds_for(cfg.rank.threshold, lam, task.y, net.depth, cfg.rank.safety, run.dtype)
        hyper = new_hyper(
            lam=[lam],
            eta=[eta],
            label_noise=opt.label_noise,
            temperature=opt.temperature,
            dtype=dtype,
        )
        return new_lane_params(
            hyper=hyper,
            thr_layer=thr.layer,
            thr_end=thr.end,
            init_scale=net.init_scale,
            diverge_norm2=run.diverge_norm2,
            dtype=dtype,
        )

    def lane(key, start, p, arrays, s):
        no_schedule, k0 = jnp.zeros(0, jnp.int32), jnp.zeros((), jnp.int32)
        return run_lanes(key, start, p, arrays, no_schedule, k0, s, batched=False)[0]

    return jax.jit(lane, static_argnums=4), s, arrays, params


# float32: a vmapped and an un-vmapped program may round differently; singular values are then
# resolved to about 1e-6 of the largest one (docs/theory.md), hence the absolute tolerance.
@pytest.mark.parametrize(
    ("dtype", "rtol", "atol"),
    [("float64", 1e-12, 0.0), pytest.param("float32", 2e-5, 1e-6, marks=pytest.mark.slow)],
)
def test_vmapped_chunk_equals_loop_of_single_lanes(dtype, rtol, atol):
    cfg = small_config(run={"dtype": dtype})
    ds = _sim(cfg)
    lane, s, arrays, params = _single_lane(cfg)
    root = jax.random.PRNGKey(cfg.run.seed)
    p = params(cfg.optimizer.lam[0], cfg.optimizer.eta[0])
    for t in range(cfg.run.trajectories):
        rec = lane(jax.random.fold_in(root, t), None, p, arrays, s)
        cell = ds.isel(lam=0, eta=0, traj=t)
        assert not cell.diverged
        np.testing.assert_array_equal(np.asarray(rec.rank), cell["rank"].values)
        np.testing.assert_array_equal(np.asarray(rec.layer_rank), cell["layer_rank"].values)
        np.testing.assert_array_equal(np.asarray(rec.end_rank), cell["end_rank"].values)
        for name in ("sv", "loss", "data_loss", "param_norm2", "imbalance"):
            got = np.asarray(getattr(rec, name))
            assert got.dtype == np.dtype(dtype) == cell[name].dtype
            np.testing.assert_allclose(got, cell[name].values, rtol=rtol, atol=atol, err_msg=name)
    # The trajectories really differ (distinct keys), and the loss went down from step 0.
    sv_end = ds["sv"].values[0, 0, :, -1, 0]
    assert np.unique(sv_end).size == cfg.run.trajectories
    assert np.all(ds["loss"].values[..., -1] < ds["loss"].values[..., 0])


# ------------------------------------------------------------------ records vs NumPy


def _np_product(ws):
    a = ws[0]
    for w in ws[1:]:
        a = w @ a
    return a


def _gaussian_starts(cfg):
    """Trajectory t's Gaussian start: key_init = split(fold_in(root, t))[0] (simulate.py)."""
    shapes = layer_shapes(cfg.task.d_out, cfg.task.d_in, cfg.network.width, cfg.network.depth)
    root = jax.random.PRNGKey(cfg.run.seed)
    starts = []
    for t in range(cfg.run.trajectories):
        key_init, _ = jax.random.split(jax.random.fold_in(root, t))
        ws = init_gaussian(key_init, shapes, 1.0, jnp.float64)
        starts.append([cfg.network.init_scale * np.asarray(w) for w in ws])
    return starts


def _np_record(ws, task, lam, thr_layer, thr_end, k_max, floor=1e-13):
    """NumPy version of one checkpoint record: ranks, singular values, losses, imbalance."""
    a = _np_product(ws)
    sv = np.linalg.svd(a, compute_uv=False)
    layer_rank = []
    for w in ws:
        ls = np.linalg.svd(w, compute_uv=False)
        layer_rank.append(int(np.sum(ls > max(thr_layer, floor * ls[0]))))
    data = np.mean((a[task.rows, task.cols] - task.y) ** 2)
    n2 = sum(np.sum(w * w) for w in ws)
    imb = np.sqrt(
        sum(np.sum((hi.T @ hi - lo @ lo.T) ** 2) for lo, hi in zip(ws[:-1], ws[1:], strict=True))
    )
    return {
        "rank": max(layer_rank),  # the default rule, all_layers
        "layer_rank": layer_rank,
        "end_rank": int(np.sum(sv > max(thr_end, floor * sv[0]))),
        "sv": sv[:k_max],
        "loss": data + lam * n2,
        "data_loss": data,
        "param_norm2": n2,
        "imbalance": imb,
    }


def _assert_record(cell, k, want, rtol):
    for name, value in want.items():
        got = cell[name].values[k]
        if name.endswith("rank"):
            np.testing.assert_array_equal(got, value, err_msg=name)
        else:
            np.testing.assert_allclose(got, value, rtol=rtol, atol=1e-14, err_msg=name)


def test_checkpoint_zero_records_match_numpy():
    cfg = small_config()
    ds = _sim(cfg)
    task = make_task(cfg.task)
    lam = cfg.optimizer.lam[0]
    thr_layer, thr_end = ds.attrs["threshold_layer"][0], ds.attrs["threshold_end"][0]
    assert ds["step"].values.tolist() == [0, 50, 100, 150, 200]
    for t, ws in enumerate(_gaussian_starts(cfg)):
        want = _np_record(ws, task, lam, thr_layer, thr_end, cfg.k_max)
        _assert_record(ds.isel(lam=0, eta=0, traj=t), 0, want, rtol=1e-12)
    # Every checkpoint: loss = data loss + lam ||theta||^2.
    np.testing.assert_allclose(
        ds["loss"].values, ds["data_loss"].values + lam * ds["param_norm2"].values, rtol=1e-13
    )


def test_gd_simulation_follows_numpy_gd_step_by_step():
    # GD is deterministic: simulate must take exactly `steps` steps of docs/theory.md's update,
    # recording every `record_every`. The reference is NumPy float64 from the same starts.
    cfg = small_config(
        optimizer={"kind": "gd", "lam": [2e-2], "eta": [0.07]}, run={"trajectories": 2}
    )
    ds = _sim(cfg)
    task = make_task(cfg.task)
    lam, eta, n = 2e-2, 0.07, task.n_observed
    thr_layer, thr_end = ds.attrs["threshold_layer"][0], ds.attrs["threshold_end"][0]
    mask = np.zeros((cfg.task.d_out, cfg.task.d_in))
    np.add.at(mask, (task.rows, task.cols), 1.0)
    target = np.zeros_like(mask)
    target[task.rows, task.cols] = task.y
    for t, ws in enumerate(_gaussian_starts(cfg)):
        cell = ds.isel(lam=0, eta=0, traj=t)
        for step in range(cfg.run.steps + 1):
            if step % cfg.run.record_every == 0:
                want = _np_record(ws, task, lam, thr_layer, thr_end, cfg.k_max)
                _assert_record(cell, step // cfg.run.record_every, want, rtol=1e-11)
            # Full-batch gradient: (2/N) sum r dA[i,j]/dW_l = (2/N) above^T (mask * R) below^T.
            resid = mask * (_np_product(ws) - target)
            new = []
            for l, w in enumerate(ws):
                below = np.eye(cfg.task.d_in)
                for v in ws[:l]:
                    below = v @ below
                above = np.eye(cfg.task.d_out)
                for v in reversed(ws[l + 1 :]):
                    above = above @ v
                grad = (2.0 / n) * above.T @ resid @ below.T
                new.append((1 - 2 * eta * lam) * w - eta * grad)
            ws = new


def test_shared_starts_from_gd_minimum_and_from_file(tmp_path):
    # Fully observed 4 x 4 target, sigma = (3, 1.5, 0.2): the GD minimum has modes 1 and 2 at
    # docs/theory.md's closed form and mode 3 switched off. Every trajectory starts there, GD stays.
    sigmas, lam = [3.0, 1.5, 0.2], 1e-2
    cfg = small_config(
        task={
            "d_out": 4,
            "d_in": 4,
            "rank": 3,
            "observed": 1.0,
            "singular_values": sigmas,
            "seed": 1,
        },
        network={"init": "gd_minimum", "gd_eta": 0.1, "gd_tol": 1e-9},
        optimizer={"kind": "gd", "lam": [lam], "eta": [0.1]},
        run={"trajectories": 2, "steps": 100},
    )
    ds = _sim(cfg)
    assert ds.attrs["gd_grad_norm"][0] <= 1e-9 and ds.attrs["gd_steps"][0] > 0
    s_theory = mode_minima(sigmas, lam, 16, 3)
    assert s_theory[2] == 0.0
    sv = ds["sv"].values[0, 0]  # (traj, checkpoint, k)
    np.testing.assert_allclose(sv[..., :3], np.broadcast_to(s_theory, sv[..., :3].shape), atol=1e-8)
    assert np.all(ds["rank"].values == 2) and np.all(ds["end_rank"].values == 2)
    np.testing.assert_array_equal(ds["sv"].values[0, 0, 0], ds["sv"].values[0, 0, 1])

    # The same start from a weights file gives the same records.
    m = gd_minimum(make_task(cfg.task), 4, 4, cfg.network, [lam])
    path = tmp_path / "w.npz"
    save_weights(path, [w[0] for w in m.weights])
    from_file = _sim(cfg.replace(network={"init": "file", "init_file": str(path)}))
    _assert_records_equal(from_file, ds, rtol=1e-13)
    # Weights of the wrong shapes are refused, naming the field.
    shapes = layer_shapes(4, 4, 4, 3)
    with pytest.raises(ConfigError, match=r"network\.init_file = .*W2 has shape"):
        load_weights(path, [shapes[0], (5, 4), shapes[2]])
    with pytest.raises(ConfigError, match=r"network\.init_file = .*cannot read"):
        load_weights(tmp_path / "missing.npz", shapes)


# ------------------------------------------------------------------ chunking and grid invariance

GRID = {"lam": [1e-2, 3e-2], "eta": [0.05, 0.08]}


def _grid(dtype, chunk_size):
    """The 2 x 2 grid with 10 trajectories a cell (40 lanes) in chunks of ``chunk_size``."""
    return small_config(
        optimizer=GRID, run={"trajectories": 10, "chunk_size": chunk_size, "dtype": dtype}
    )


@pytest.mark.parametrize(
    ("dtype", "rtol"),
    [("float64", 1e-13), pytest.param("float32", 1e-5, marks=pytest.mark.slow)],
)
def test_chunk_size_and_grid_do_not_change_trajectories(dtype, rtol):
    # 2 x 2 cells x 10 trajectories = 40 lanes: chunks of 30 (the last one padded) or ten of 4
    # (the module's shared program shape).
    grid30 = _sim(_grid(dtype, 30))
    grid4 = _sim(_grid(dtype, 4))
    _assert_records_equal(grid30, grid4, rtol=rtol)
    assert not grid30["diverged"].any()
    # One cell run alone, with more trajectories (16, four chunks of 4): its first 10 are the
    # grid's cell (lam = 3e-2, eta = 0.05), since trajectory t always uses fold_in(root, t).
    alone = _sim(
        small_config(
            optimizer={"lam": [3e-2], "eta": [0.05]},
            run={"trajectories": 16, "chunk_size": 4, "dtype": dtype},
        )
    )
    cell = grid30.sel(lam=[3e-2], eta=[0.05])
    _assert_records_equal(alone.isel(traj=slice(0, 10)), cell, rtol=rtol)
    # Common random numbers: the cells differ (lam, eta matter) ...
    assert not np.allclose(grid30["loss"].values[0, 0], grid30["loss"].values[1, 0])
    assert not np.allclose(grid30["loss"].values[0, 0], grid30["loss"].values[0, 1])
    # ... but share the initial state (same key for trajectory t in every cell).
    init_sv = grid30["sv"].values[..., 0, :]
    np.testing.assert_array_equal(init_sv, np.broadcast_to(init_sv[0, 0], init_sv.shape))


@pytest.mark.parametrize(
    ("dtype", "rtol"), [("float64", 0.0), pytest.param("float32", 1e-6, marks=pytest.mark.slow)]
)
def test_cache_tiles_do_not_change_trajectories(monkeypatch, dtype, rtol):
    # 40 lanes in chunks of 30, each stepped whole or in tiles of 8 (the CPU's cache tiling):
    # 4 tiles, the last padded with copies of the chunk's last lane, which are then dropped.
    # Whole: the default tile of these small networks is larger than the chunk (the run of the
    # test above).
    cfg = _grid(dtype, 30)
    assert tile_for(30, 8) == 8
    assert tile_for(30, structure_for(cfg).tile) == 30
    whole = _sim(cfg)
    monkeypatch.setattr("rankjump.simulation.plan.tile_lanes", lambda shapes, dt: 8)
    assert structure_for(cfg).tile == 8
    tiled = simulate(cfg, progress=False)
    _assert_records_equal(tiled, whole, rtol=rtol)
    assert not whole["diverged"].any()


@pytest.mark.parametrize(
    ("kind", "batch", "every"),
    [
        ("sgd", 1, (10, 50, 200)),
        pytest.param("label_noise", 2, (50, 200), marks=pytest.mark.slow),
        ("sgd", LANES_LAST_MAX_BATCH + 2, (50, 200)),
        pytest.param("langevin", 1, (50, 200), marks=pytest.mark.slow),
    ],
)
def test_record_every_does_not_change_trajectories(kind, batch, every):
    # The sample of global step n depends only on (run.seed, trajectory, n), and the lazy scale
    # is renormalized exactly: float64 records at the common checkpoints (the first, the last) are
    # identical whatever record_every, bit for bit. Small batches step lanes-last, large ones and
    # the dense Langevin step vmapped, each kind with its own draws. Steps are drawn in blocks of
    # 10 (record_every 10) or 25 (50, 200), renormalized after each; at lam = 0.05 the scale
    # falls below 1/2 every 70 to 140 steps, so the renormalizations do move powers of two.
    # Chunks of 4 lanes: record_every 50 is the module's shared program shape.
    extra = {"temperature": 1e-4} if kind == "langevin" else {}
    extra = {"label_noise": 0.1} if kind == "label_noise" else extra
    # small_config observes 12 entries; all 20 leave room for a batch of 18.
    task = {"observed": 1.0} if batch > 12 else {}
    runs = {
        r: _sim(
            small_config(
                task=task,
                optimizer={
                    "kind": kind,
                    "batch_size": batch,
                    "lam": [0.05],
                    "eta": [0.05, 0.1],
                    **extra,
                },
                run={"trajectories": 6, "chunk_size": 4, "steps": max(every), "record_every": r},
            )
        )
        for r in every
    }
    coarse = runs[max(every)]
    assert not coarse["diverged"].any()
    for r, ds in runs.items():
        common = ds.isel(checkpoint=np.flatnonzero(np.isin(ds["step"], coarse["step"])))
        assert common.sizes["checkpoint"] == 2, r
        for name in RECORD_VARS:
            np.testing.assert_array_equal(common[name].values, coarse[name].values, err_msg=name)
    # The runs did move: the trajectories differ from their start and from each other.
    sv = coarse["sv"].values[..., 0]
    assert np.all(sv[..., 1] != sv[..., 0])
    assert np.unique(sv[..., 1]).size == sv[..., 1].size


@pytest.mark.parametrize("batch", [1, LANES_LAST_MAX_BATCH + 2])
def test_lanes_at_different_steps_advance_together_as_alone(batch):
    # Splitting advances clones that branch at different checkpoints in one call: each lane's
    # samples come from its own step counter, so a lane's interval is the same, bit for bit,
    # whatever the steps of the lanes beside it. (Same batch size: XLA may round a batched
    # product of another size differently in the last bit.)
    cfg = small_config(task={"observed": 1.0}, optimizer={"batch_size": batch})
    s = structure_for(cfg)
    task = make_task(cfg.task)
    arrays = TaskArrays.of(task, jnp.float64)
    n = 4
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    weights = jax.vmap(lambda k: init_gaussian(k, s.shapes, 1.0, jnp.float64))(keys)
    steps = jnp.asarray([0, 50, 150, 1000], jnp.int32)
    state = new_state(weights=weights, step=steps)
    hyper = new_hyper(lam=1e-2, eta=0.05, dtype=jnp.float64, lanes=(n,))
    advance = compiled_advance(s)
    together = advance(state, keys, hyper, arrays)
    assert np.array_equal(together.step, steps + cfg.run.record_every)
    for t in range(n):  # lane t beside lanes at its own step (as simulate runs it)
        alone = advance(state._replace(step=jnp.full(n, steps[t])), keys, hyper, arrays)
        for a, b in zip(alone.weights, together.weights, strict=True):
            np.testing.assert_array_equal(a[t], b[t])
    # ... and the step counter matters: the same lane from another step moves elsewhere.
    shifted = advance(state._replace(step=steps + 1), keys, hyper, arrays)
    assert not np.array_equal(shifted.weights[0], together.weights[0])


@pytest.mark.parametrize("rule", ["all_layers", "any_layer", "end_to_end"])
def test_rank_rule_picks_the_recorded_rank(rule):
    # The rule only reads the per-layer and end-to-end ranks: paths are the same under every
    # rule, and `rank` is the largest per-layer rank, the smallest, or the rank of A_theta.
    # lam = eta = 0.1, 32 trajectories over 200 steps: modes die in some layers before others,
    # so the rules differ. Chunks of 4: all_layers is the module's shared program shape.
    changed = {
        "optimizer": {"lam": [0.1], "eta": [0.1]},
        "run": {"trajectories": 32, "chunk_size": 4},
    }
    ds = _sim(small_config(rank={"rule": rule}, **changed))
    reference = _sim(small_config(**changed))
    for name in ("layer_rank", "end_rank", "sv"):
        np.testing.assert_array_equal(ds[name].values, reference[name].values)
    layers = ds["layer_rank"].values
    want = {
        "all_layers": layers.max(axis=-1),
        "any_layer": layers.min(axis=-1),
        "end_to_end": ds["end_rank"].values,
    }[rule]
    np.testing.assert_array_equal(ds["rank"].values, want)
    assert (layers.max(axis=-1) != layers.min(axis=-1)).sum() > 10
    assert (layers.max(axis=-1) != ds["end_rank"].values).sum() > 10
    assert ds.attrs["rank_rule"] == ds["rank"].attrs["rule"] == rule


def test_cpu_options_reach_lanes_last_programs_only():
    # This jaxlib accepts the options; if a new one drops them the kernel still runs, slower,
    # and this test says so.
    assert compiler_options(True) == CPU_OPTIONS
    assert compiler_options(False) == {}
    assert lanes_last("sgd", 1) and lanes_last("label_noise", LANES_LAST_MAX_BATCH)
    assert lanes_last("sgd_momentum", 1)
    assert not lanes_last("sgd", LANES_LAST_MAX_BATCH + 1) and not lanes_last("gd", 1)
    s = structure_for(small_config())
    assert s.platform == "cpu" and options_for(s) == CPU_OPTIONS and s.tile > 0
    assert options_for(s._replace(kind="gd")) == {}
    assert options_for(s._replace(platform="gpu")) == {}
    assert structure_for(small_config(optimizer={"kind": "gd"})).tile == 0


# ------------------------------------------------------------------ recompilation guard


def test_changing_lam_or_eta_does_not_recompile():
    # small_config() is the shared program shape (4 lanes) of this module.
    cfg = small_config()
    first = _sim(cfg)
    before = trace_count()
    second = simulate(
        cfg.replace(
            optimizer={"lam": [3e-3], "eta": [0.07]}, network={"init_scale": 0.8}, task={"seed": 5}
        ),
        progress=False,
    )
    # Other numbers are traced too, and a fixed chunk shape serves any number of trajectories.
    simulate(
        cfg.replace(rank={"threshold": 0.01, "safety": 0.3}, run={"diverge_norm2": 1e6, "seed": 3}),
        progress=False,
    )
    simulate(cfg.replace(run={"trajectories": 8, "chunk_size": 4}), progress=False)
    assert trace_count() == before
    # Not a cache hit on the numbers: the new values were used.
    assert not np.allclose(first["loss"].values, second["loss"].values)
    assert second["lam"].values.tolist() == [3e-3]
    # A static change (the number of steps) does trace a new program: the counter works.
    simulate(cfg.replace(run={"steps": 150}), progress=False)
    assert trace_count() == before + 1


# ------------------------------------------------------------------ invariance of rank-r starts


def test_balanced_rank_one_start_stays_rank_one_under_sgd():
    # Rank-2 target; an exactly balanced rank-1 start must stay at rank <= 1 for 3000 SGD steps
    # (docs/theory.md, invariance), on every layer at every checkpoint.
    cfg = small_config(
        network={"init": "balanced", "init_rank": 1}, run={"steps": 3000, "record_every": 100}
    )
    ds = _sim(cfg)
    assert ds.sizes["checkpoint"] == 31
    assert not ds["diverged"].any()
    assert ds["rank"].values.max() <= 1 and ds["layer_rank"].values.max() <= 1
    assert ds["end_rank"].values.max() <= 1
    # The kept mode is alive and fits the top target mode (sigma_1 = 2).
    assert np.all(ds["rank"].values[..., -1] == 1)
    assert np.all(ds["sv"].values[..., -1, 0] > 1.5)
    # The extra singular values of A stay below the end-to-end threshold (and at rounding level).
    thr_end = ds.attrs["threshold_end"][0]
    assert 1e-9 < thr_end < 1e-6
    assert np.all(ds["sv"].values[..., 1:] < thr_end)
    assert np.all(ds["sv"].values[..., 1:] < 1e-14)


@pytest.mark.slow
def test_gaussian_start_is_counted_above_rank_one():
    # Control for the test above: the same run from a Gaussian start is counted at rank > 1
    # throughout, so the rank assertions there can fail.
    cfg = small_config(run={"steps": 3000, "record_every": 100})
    control = _sim(cfg)
    assert np.all(control["rank"].values >= 2)
    assert np.all(control["sv"].values[..., -1, 1] > 0.1)


# ------------------------------------------------------------------ divergence


def test_divergence_is_flagged_and_isolated():
    # Two cells in ONE chunk of 4 lanes: eta = 0.05 and eta = 20 (diverges), two trajectories
    # each.
    cfg = small_config(optimizer={"eta": [0.05, 20.0]}, run={"trajectories": 2, "chunk_size": 4})
    ds = _sim(cfg)
    bad = ds.sel(eta=20.0)
    assert bad["diverged"].all()
    steps = ds["step"].values
    for t in range(2):
        first = int(bad["diverged_step"].values[0, t])
        assert first > 0 and first in steps
        dead = steps >= first
        rank = bad["rank"].values[0, t]
        assert np.all(rank[dead] == -1) and np.all(rank[~dead] >= 0)
        assert np.all(bad["layer_rank"].values[0, t][dead] == -1)
        assert np.all(bad["end_rank"].values[0, t][dead] == -1)
        assert np.all(np.isnan(bad["sv"].values[0, t][dead]))
        assert np.all(np.isnan(bad["loss"].values[0, t][dead]))
        assert np.all(np.isfinite(bad["loss"].values[0, t][~dead]))
    good = ds.sel(eta=[0.05])
    assert not good["diverged"].any()
    assert np.all(good["diverged_step"].values == -1)
    # The small-eta cell equals, bit for bit, its run in a chunk without diverging lanes (4
    # trajectories of eta = 0.05: the first two are the same).
    alone = _sim(small_config())
    _assert_records_equal(good, alone.isel(traj=slice(0, 2)), rtol=0.0)


def test_run_seed_takes_its_whole_range():
    # run.seed takes 0 .. 2**32 - 1: the largest value runs, on paths of its own; one more is
    # refused in one line naming run.seed.
    with pytest.raises(ConfigError, match=r"^run\.seed = 4294967296: must be <= 4294967295$"):
        small_config(run={"seed": 2**32})
    top = _sim(small_config(run={"seed": 2**32 - 1}))
    base = _sim(small_config())
    assert not top["diverged"].any() and top.sizes["traj"] == 4
    assert not np.array_equal(top["sv"].values[..., 0, :], base["sv"].values[..., 0, :])
    assert not np.array_equal(top["loss"].values[..., -1], base["loss"].values[..., -1])


# ------------------------------------------------------------------ momentum end to end


def test_simulate_with_momentum_from_the_command_line(tmp_path):
    # `rankjump simulate` with kind sgd_momentum records ranks, and its file says the kind and
    # the momentum; the run is the lanes-last chunk step of the kind, trajectories differ from
    # plain SGD's at the same eta.
    from rankjump.cli.main import main
    from rankjump.config import config_to_toml

    cfg = small_config(optimizer={"kind": "sgd_momentum", "momentum": 0.5})
    path = tmp_path / "cfg.toml"
    path.write_text(config_to_toml(cfg))
    out = tmp_path / "m.nc"
    assert main(["simulate", str(path), "--out", str(out), "--quiet"]) == 0
    ds = load_result(out)
    back = loads_config(ds.attrs["config"])
    assert back.optimizer.kind == "sgd_momentum" and back.optimizer.momentum == 0.5
    assert ds["rank"].dims == ("lam", "eta", "traj", "checkpoint")
    assert np.all(ds["rank"].values >= 1) and not ds["diverged"].any()
    plain = _sim(small_config())
    np.testing.assert_array_equal(ds["sv"].values[..., 0, :], plain["sv"].values[..., 0, :])
    assert not np.allclose(ds["loss"].values[..., -1], plain["loss"].values[..., -1])


def test_momentum_configuration_is_checked():
    assert small_config(optimizer={"kind": "sgd_momentum"}).optimizer.momentum == 0.9
    assert small_config().optimizer.momentum is None
    bad = [
        ({"momentum": 0.5}, 'optimizer.momentum = 0.5: only used with kind = "sgd_momentum"'),
        ({"kind": "sgd_momentum", "momentum": 1.0}, "optimizer.momentum = 1.0: must be < 1"),
        ({"kind": "sgd_momentum", "momentum": -0.1}, "optimizer.momentum = -0.1: must be >= 0.0"),
    ]
    for body, message in bad:
        with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
            small_config(optimizer=body)


# ------------------------------------------------------------------ result file


def _diverged_result():
    return _sim(
        small_config(optimizer={"eta": [0.05, 20.0]}, run={"trajectories": 2, "chunk_size": 4})
    )


def test_result_file_round_trip(tmp_path):
    ds = _diverged_result()
    path = save_result(ds, tmp_path / "r.nc")
    assert path == tmp_path / "r.nc" and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]  # no temporary left
    back = load_result(path)
    assert set(back.data_vars) == set(ds.data_vars)
    for name in ds.data_vars:
        assert back[name].dims == ds[name].dims, name
        assert back[name].dtype == ds[name].dtype, name
        np.testing.assert_array_equal(back[name].values, ds[name].values, err_msg=name)
    for name in ds.coords:
        np.testing.assert_array_equal(back[name].values, ds[name].values, err_msg=name)
    assert back["diverged"].values.any() and np.isnan(back["sv"].values).any()
    assert loads_config(back.attrs["config"]) == small_config(
        optimizer={"eta": [0.05, 20.0]}, run={"trajectories": 2, "chunk_size": 4}
    )
    assert back.attrs["jax_version"] == jax.__version__
    np.testing.assert_array_equal(
        np.atleast_1d(back.attrs["threshold_layer"]), ds.attrs["threshold_layer"]
    )
    assert back.attrs["producer"] == "rankjump"


def test_load_result_rejects_bad_files(tmp_path):
    text = tmp_path / "notes.nc"
    text.write_text("this is not netCDF\n")
    with pytest.raises(ResultError, match="not a readable netCDF"):
        load_result(text)
    with pytest.raises(ResultError, match="no such result file"):
        load_result(tmp_path / "missing.nc")
    # A netCDF file that is not a rankjump result.
    other = tmp_path / "other.nc"
    xr.Dataset({"x": ("a", np.arange(3.0))}).to_netcdf(other, engine="h5netcdf")
    with pytest.raises(ResultError, match="not a rankjump result"):
        load_result(other)


def test_save_result_into_missing_directory_raises_and_writes_nothing(tmp_path):
    ds = _diverged_result()
    target = tmp_path / "nope" / "r.nc"
    with pytest.raises(ResultError, match="does not exist"):
        save_result(ds, target)
    assert not target.parent.exists()
    assert list(tmp_path.iterdir()) == []
