"""Tests of rankjump.model.network: shapes, product, the entry-wise gradient, balancedness."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import np_entry_grads, np_product

from rankjump.model import network

# (d_out, d_in, width, depth): depth 1 to 4, never square, d_out != d_in != width.
SHAPES = [(3, 5, 4, 1), (3, 5, 4, 2), (4, 6, 3, 3), (5, 3, 4, 3), (3, 5, 2, 4), (6, 4, 5, 4)]


def _np_weights(rng, d_out, d_in, width, depth):
    shapes = network.layer_shapes(d_out, d_in, width, depth)
    return [rng.standard_normal(s) / np.sqrt(s[1]) for s in shapes]


@pytest.mark.parametrize(("d_out", "d_in", "width", "depth"), SHAPES)
def test_layer_shapes_chain(d_out, d_in, width, depth):
    shapes = network.layer_shapes(d_out, d_in, width, depth)
    assert len(shapes) == depth
    assert shapes[0][1] == d_in and shapes[-1][0] == d_out
    for lo, hi in zip(shapes[:-1], shapes[1:], strict=True):
        assert hi[1] == lo[0] == width


def _sq_entry_loss(w, i, j, y):
    return (network.product(w)[i, j] - y) ** 2


_ref_grad = jax.jit(jax.grad(_sq_entry_loss))
_entry_grad = jax.jit(network.entry_grad)
_entry_vectors = jax.jit(network.entry_vectors)


@pytest.mark.parametrize(("d_out", "d_in", "width", "depth"), SHAPES)
def test_entry_grad_equals_jax_grad(np_rng, d_out, d_in, width, depth):
    ws_np = _np_weights(np_rng, d_out, d_in, width, depth)
    ws = tuple(jnp.asarray(w, jnp.float64) for w in ws_np)
    a_np = np_product(ws_np)
    np.testing.assert_allclose(np.asarray(network.product(ws)), a_np, rtol=1e-13, atol=1e-14)
    for i, j in [(0, 0), (d_out - 1, d_in - 1), (d_out // 2, 1), (1, d_in - 2)]:
        y = 0.3 * i - 0.7 * j + 0.1
        i_, j_, y_ = jnp.int32(i), jnp.int32(j), jnp.float64(y)
        r, grads = _entry_grad(ws, i_, j_, y_)
        ref = _ref_grad(ws, i_, j_, y_)
        assert float(r) == pytest.approx(a_np[i, j] - y, rel=1e-13, abs=1e-14)
        assert len(grads) == depth
        for g, g_ref, w in zip(grads, ref, ws, strict=True):
            assert g.shape == w.shape and g.dtype == jnp.float64
            np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-12, atol=1e-13)

        # The vectors themselves: pred = A[i, j] and a_l b_l^T = dA[i, j]/dW_l (NumPy products).
        pred, a, b = _entry_vectors(ws, i_, j_)
        assert float(pred) == pytest.approx(a_np[i, j], rel=1e-13, abs=1e-14)
        for al, bl, g_np in zip(a, b, np_entry_grads(ws_np, i, j), strict=True):
            np.testing.assert_allclose(np.outer(al, bl), g_np, rtol=1e-12, atol=1e-13)


def test_entry_grad_eager_python_indices(np_rng):
    ws_np = _np_weights(np_rng, 4, 6, 3, 3)
    ws = tuple(jnp.asarray(w) for w in ws_np)
    for i, j in [(0, 5), (3, 2)]:
        r, grads = network.entry_grad(ws, i, j, 0.25)
        assert float(r) == pytest.approx(np_product(ws_np)[i, j] - 0.25, rel=1e-13)
        for g, g_np in zip(grads, np_entry_grads(ws_np, i, j), strict=True):
            np.testing.assert_allclose(np.asarray(g), 2 * float(r) * g_np, rtol=1e-12, atol=1e-13)


def test_loss_and_param_norm2_match_numpy(np_rng):
    ws_np = _np_weights(np_rng, 5, 3, 4, 3)
    ws = tuple(jnp.asarray(w) for w in ws_np)
    rows = np.array([0, 4, 2, 2], np.int32)
    cols = np.array([1, 0, 2, 0], np.int32)
    y = np.array([0.5, -1.0, 0.25, 2.0])
    a = np_product(ws_np)
    data = np.mean((a[rows, cols] - y) ** 2)
    norm2 = sum(np.sum(w * w) for w in ws_np)
    assert float(network.data_loss(ws, rows, cols, y)) == pytest.approx(data, rel=1e-13)
    assert float(network.param_norm2(ws)) == pytest.approx(norm2, rel=1e-13)
    assert float(network.loss(ws, rows, cols, y, 0.03)) == pytest.approx(
        data + 0.03 * norm2, rel=1e-13
    )


@pytest.mark.parametrize("depth", [2, 4])
def test_init_balanced_is_balanced_rank_r(depth):
    shapes = network.layer_shapes(5, 4, 3, depth)
    ws = network.init_balanced(jax.random.PRNGKey(3), shapes, 2, 0.7, jnp.float64)
    assert float(network.imbalance(ws)) < 1e-13
    for w, s in zip(ws, shapes, strict=True):
        assert w.shape == s and w.dtype == jnp.float64
        sv = np.linalg.svd(np.asarray(w), compute_uv=False)
        np.testing.assert_allclose(sv[:2], 0.7, rtol=1e-13)
        assert np.all(sv[2:] < 1e-14)
    sv_a = np.linalg.svd(np.asarray(network.product(ws)), compute_uv=False)
    np.testing.assert_allclose(sv_a[:2], 0.7**depth, rtol=1e-12)
    assert np.all(sv_a[2:] < 1e-14)


@pytest.mark.parametrize("depth", [3])
def test_representation_cost_equals_norm_at_balanced_point(depth):
    # L * sum_k s_k^(2/L) = ||theta||^2 for a balanced factorization (docs/theory.md claim 1). Full
    # rank, so no rounding-level singular value is raised to the power 2/L.
    shapes = network.layer_shapes(4, 3, 3, depth)
    ws = network.init_balanced(jax.random.PRNGKey(5), shapes, 3, 1.3, jnp.float64)
    cost = float(network.representation_cost(network.product(ws), depth))
    assert cost == pytest.approx(depth * 3 * 1.3**2, rel=1e-12)
    assert cost == pytest.approx(float(network.param_norm2(ws)), rel=1e-12)


def test_imbalance_matches_numpy(np_rng):
    ws_np = _np_weights(np_rng, 5, 3, 4, 3)
    ref = np.sqrt(
        sum(
            np.sum((hi.T @ hi - lo @ lo.T) ** 2)
            for lo, hi in zip(ws_np[:-1], ws_np[1:], strict=True)
        )
    )
    assert ref > 0.1
    got = float(network.imbalance(tuple(jnp.asarray(w) for w in ws_np)))
    assert got == pytest.approx(ref, rel=1e-12)


def test_init_gaussian_scale_and_dtype():
    shapes = network.layer_shapes(40, 50, 60, 2)
    for dtype in (jnp.float32,):
        ws = network.init_gaussian(jax.random.PRNGKey(0), shapes, 2.0, dtype)
        for w, s in zip(ws, shapes, strict=True):
            assert w.shape == s and w.dtype == dtype
            # Var = scale^2 / fan_in; with >= 2000 entries the sample std is within 5%.
            std = float(jnp.std(w)) * np.sqrt(s[1]) / 2.0
            assert std == pytest.approx(1.0, rel=0.05)
