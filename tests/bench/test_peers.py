"""Tests of rankjump.bench.peers and rankjump.bench.peer_steps: the torch peers against a NumPy
float64 reference of the SGD step (docs/theory.md).

The reference applies, for B sampled observed entries (i, j),

    W_l <- (1 - 2 eta lam) W_l - (2 eta / B) sum_batch r_ij a_l b_l^T

with b_1 = e_j, b_{l+1} = W_l b_l, a_L = e_i, a_{l-1} = W_l^T a_l and r_ij = A[i, j] - y_ij, all
vectors computed from the weights before the step. It shares no code with the peers (which use
autograd on the full product). GD is the same step with every observed entry in the batch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rankjump.bench import peers
from rankjump.bench.peer_steps import batched_steps, naive_steps
from rankjump.model.network import layer_shapes
from rankjump.runtime.cores import available_cores

torch = pytest.importorskip("torch")

LAM, ETA = 0.05, 0.1
# (d_out, d_in, width, depth): never square, so a transposed shape fails loudly.
GEOMETRIES = [(3, 5, 4, 1), (5, 3, 4, 2), (4, 6, 3, 3), (5, 4, 3, 4)]


# ------------------------------------------------------------------ NumPy reference


def _ref_step(ws, rows, cols, y, batch, lam, eta):
    depth = len(ws)
    grads = [np.zeros_like(w) for w in ws]
    for k in batch:
        i, j = rows[k], cols[k]
        b = [np.eye(ws[0].shape[1])[:, j]]  # b_1 .. b_L
        for w in ws[:-1]:
            b.append(w @ b[-1])
        a = [np.eye(ws[-1].shape[0])[:, i]]  # a_L .. a_1
        for w in ws[:0:-1]:
            a.append(w.T @ a[-1])
        a = a[::-1]
        r = a[-1] @ ws[-1] @ b[-1] - y[k]
        for l in range(depth):
            grads[l] += r * np.outer(a[l], b[l])
    decay = 1.0 - 2.0 * eta * lam
    return [decay * w - (2.0 * eta / len(batch)) * g for w, g in zip(ws, grads, strict=True)]


def _reference(ws, rows, cols, y, idx, lam, eta):
    for batch in idx:
        ws = _ref_step(ws, rows, cols, y, batch, lam, eta)
    return ws


def _problem(rng, d_out, d_in, width, depth, n_obs=7):
    shapes = layer_shapes(d_out, d_in, width, depth)
    ws = [rng.standard_normal(s) / math.sqrt(s[1]) for s in shapes]
    flat = rng.choice(d_out * d_in, size=n_obs, replace=False)
    rows, cols = np.divmod(flat, d_in)
    y = rng.standard_normal(n_obs)
    return ws, rows, cols, y


def _close(got, want, rtol=1e-12, atol=1e-12):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


# ------------------------------------------------------------------ exactness of the update


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_naive_matches_reference(np_rng, geometry):
    ws, rows, cols, y = _problem(np_rng, *geometry)
    idx = np_rng.integers(0, len(y), size=(5, 3))  # 5 steps, B = 3, with replacement
    got = naive_steps(ws, rows, cols, y, idx, LAM, ETA)
    _close(got, _reference(ws, rows, cols, y, idx, LAM, ETA))


def test_naive_float32_close_to_reference(np_rng):
    ws, rows, cols, y = _problem(np_rng, 5, 4, 3, 4)
    idx = np_rng.integers(0, len(y), size=(5, 2))
    got = naive_steps([w.astype(np.float32) for w in ws], rows, cols, y, idx, LAM, ETA)
    assert all(g.dtype == np.float32 for g in got)
    _close(got, _reference(ws, rows, cols, y, idx, LAM, ETA), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_gd_matches_reference(np_rng, geometry):
    ws, rows, cols, y = _problem(np_rng, *geometry)
    steps = 4
    want = _reference(ws, rows, cols, y, [np.arange(len(y))] * steps, LAM, ETA)
    _close(naive_steps(ws, rows, cols, y, None, LAM, ETA, steps=steps), want)
    t = 2
    stacked = [np.stack([w] * t) for w in ws]
    got = batched_steps(stacked, rows, cols, y, None, LAM, ETA, steps=steps)
    for lane in range(t):
        _close([g[lane] for g in got], want)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_batched_matches_reference_and_naive(np_rng, geometry):
    t, steps, batch = 3, 4, 2
    lanes = [_problem(np_rng, *geometry) for _ in range(t)]
    rows, cols, y = lanes[0][1:]  # one task, different weights per trajectory
    stacked = [np.stack(ws) for ws in zip(*(lane[0] for lane in lanes), strict=True)]
    idx = np_rng.integers(0, len(y), size=(steps, t, batch))
    got = batched_steps(stacked, rows, cols, y, idx, LAM, ETA)
    for lane in range(t):
        mine = [g[lane] for g in got]
        start = lanes[lane][0]
        _close(mine, _reference(start, rows, cols, y, idx[:, lane], LAM, ETA))
        _close(mine, naive_steps(start, rows, cols, y, idx[:, lane], LAM, ETA))


def test_batched_trajectories_are_independent(np_rng):
    t, steps, batch = 4, 5, 2
    ws, rows, cols, y = _problem(np_rng, 5, 4, 3, 4)
    stacked = [np.stack([w + 0.1 * np_rng.standard_normal(w.shape) for _ in range(t)]) for w in ws]
    idx = np_rng.integers(0, len(y), size=(steps, t, batch))
    base = batched_steps(stacked, rows, cols, y, idx, LAM, ETA)

    other_idx = idx.copy()
    other_idx[:, 1] = (idx[:, 1] + 1) % len(y)  # trajectory 1 samples other entries
    moved = batched_steps(stacked, rows, cols, y, other_idx, LAM, ETA)
    other_w = [s.copy() for s in stacked]
    for s in other_w:
        s[2] *= 1.5  # trajectory 2 starts elsewhere
    shifted = batched_steps(other_w, rows, cols, y, idx, LAM, ETA)

    for b, m, s in zip(base, moved, shifted, strict=True):
        assert not np.allclose(b[1], m[1])  # the change did something ...
        assert not np.allclose(b[2], s[2])
        for lane in (0, 2, 3):  # ... and nothing to the other trajectories
            np.testing.assert_array_equal(b[lane], m[lane])
        for lane in (0, 1, 3):
            np.testing.assert_array_equal(b[lane], s[lane])


# ------------------------------------------------------------------ flop counts and peak


def test_useful_flops_hand_count():
    # d = w = 20, L = 4, B = 1: forward 2 matvecs (2 * 800), backward 2 matvecs (2 * 800),
    # prediction dot 40, rank-one updates of W_2, W_3 (2 * 800), W_1 column + W_4 row (2 * 40).
    hand = 1600 + 1600 + 40 + 1600 + 80
    assert peers.useful_flops_per_step(20, 20, 20, 4, 1) == hand == 4920
    assert peers.useful_flops_per_step(20, 20, 20, 4, 8) == 8 * hand
    assert peers.useful_flops_per_step(20, 30, 20, 4, 1) == hand  # d does not enter
    assert peers.useful_flops_per_step(7, 9, 10, 2, 1) == 60  # two gathers: dot + 2 updates
    assert peers.useful_flops_per_step(7, 9, 10, 1, 3) == 6  # one multiply-add per entry
    with pytest.raises(ValueError, match="depth"):
        peers.useful_flops_per_step(7, 9, 10, 0, 1)


def test_gd_flops_hand_count():
    # d_out = 3, d_in = 5, w = 4, L = 3, N = 6: chain W_2 W_1 (2*4*4*5 = 160) and W_3 P_2
    # (2*3*4*5 = 120); forward + backward 3 * 280; residual 2 * 6; update 3 * (20 + 16 + 12).
    assert peers.gd_flops_per_step(3, 5, 4, 3, 6) == 3 * 280 + 12 + 3 * 48
    assert peers.gd_flops_per_step(3, 5, 4, 1, 6) == 12 + 3 * 15


def test_sgemm_peaks_positive():
    peaks = peers.sgemm_peaks(n=128, repeats=2)
    assert set(peaks) == {"numpy", "jax"}
    assert all(math.isfinite(v) and v > 0 for v in peaks.values())
    peak = peers.sgemm_peak_gflops(n=128, repeats=2)
    assert math.isfinite(peak) and peak > 0


# ------------------------------------------------------------------ the timed peers (smoke)


def test_timed_peers_smoke():
    from conftest import small_config

    cfg = small_config(run={"dtype": "float32"}, optimizer={"batch_size": 2})
    threads_before = torch.get_num_threads()
    naive = peers.torch_naive(cfg, 20, repeats=1)
    assert (naive.name, naive.trajectories, naive.steps, naive.threads) == ("torch_naive", 1, 20, 1)
    batched = peers.torch_batched(cfg, 8, 10, repeats=1, threads=1)
    assert (batched.name, batched.trajectories, batched.steps, batched.threads) == (
        "torch_batched",
        8,
        10,
        1,
    )
    every = peers.torch_batched(cfg, 8, 5, repeats=1)  # every core by default
    assert every.threads == available_cores()
    assert torch.get_num_threads() == threads_before  # restored

    gd = cfg.replace(optimizer={"kind": "gd"})
    assert peers.torch_naive(gd, 5, repeats=1).name == "torch_naive_gd"
    assert peers.torch_batched(gd, 4, 5, repeats=1).name == "torch_batched_gd"
    with pytest.raises(ValueError, match="optimizer.kind"):
        peers.torch_naive(cfg.replace(optimizer={"kind": "langevin", "temperature": 0.1}), 5)


def test_timed_peers_time_exactly_their_steps():
    # A clock that counts optimizer steps: a timed run must read exactly `steps` (the reset,
    # the set-up and the warm-up stay outside the timer), the rate must be trajectories * steps
    # over it, and every step must be the configured SGD on weights of the right shapes.
    from conftest import small_config
    from torch.optim.optimizer import register_optimizer_step_post_hook

    cfg = small_config(run={"dtype": "float32"}, optimizer={"batch_size": 2})
    shapes = [tuple(s) for s in layer_shapes(5, 4, 4, 3)]
    seen = []
    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: seen.append(opt))

    def clock():
        return float(len(seen))

    try:
        for gd in (False, True):
            run_cfg = cfg.replace(optimizer={"kind": "gd"}) if gd else cfg
            seen.clear()
            naive = peers.torch_naive(run_cfg, 20, repeats=2, clock=clock)
            assert (naive.seconds, naive.trajectory_steps_per_s) == (20.0, 1.0)
            assert len(seen) == 3 * 20  # warm-up and two timed runs
            group = seen[-1].param_groups[0]
            assert group["lr"] == 0.05 and group["weight_decay"] == pytest.approx(2e-2)
            assert [tuple(w.shape) for w in group["params"]] == shapes
            seen.clear()
            batched = peers.torch_batched(run_cfg, 8, 10, repeats=2, clock=clock)
            assert (batched.seconds, batched.trajectory_steps_per_s) == (10.0, 8.0)
            assert len(seen) == 3 * 10
            group = seen[-1].param_groups[0]
            assert [tuple(w.shape) for w in group["params"]] == [(8, *s) for s in shapes]
    finally:
        handle.remove()
