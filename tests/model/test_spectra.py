"""Singular values without LAPACK (rankjump.model.spectra) against NumPy's SVD.

Stated accuracy: a value comes out within ``ATOL[dtype] * s_1`` of LAPACK's (both are backward
stable: the reduction to bidiagonal form moves singular values by O(eps ||X||)). So a count
at threshold c agrees with LAPACK's except for a singular value within that distance of c:
the band in which the tests allow a disagreement (relative band ``ATOL * s_1 / c``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rankjump.model import spectra
from rankjump.model.ranks import REL_FLOOR
from rankjump.model.ranks import count_above as count_sorted
from rankjump.model.spectra import lanes_last_tiles, stack_square

# Compiled once per shape (run op by op, the loops' many small operations dispatch slowly).
bidiagonal = jax.jit(spectra.bidiagonal)
count_above = jax.jit(spectra.count_above)
largest = jax.jit(spectra.largest, static_argnums=2)
selected = jax.jit(spectra.selected, static_argnums=2)

ATOL = {np.float32: 2e-6, np.float64: 4e-15}
SHAPES = ((20, 20), (4, 7), (3, 1))


def _with_spectrum(rng, m, n, lanes, spectrum):
    """(m, n, lanes) matrices U diag(s) V^T, s drawn by ``spectrum(k, lanes)`` (k = min(m, n))."""
    k = min(m, n)
    out = np.empty((m, n, lanes))
    s = np.broadcast_to(spectrum(k, lanes), (k, lanes))
    for t in range(lanes):
        u, _ = np.linalg.qr(rng.standard_normal((m, k)))
        v, _ = np.linalg.qr(rng.standard_normal((n, k)))
        out[:, :, t] = (u * s[:, t]) @ v.T
    return out


def _lapack(x):
    """(k, lanes) singular values, descending, in float64."""
    return np.stack(
        [np.linalg.svd(x[:, :, t].astype(np.float64), compute_uv=False) for t in range(x.shape[2])],
        -1,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_values_match_lapack(np_rng, dtype, shape):
    m, n = shape
    gauss = np_rng.standard_normal((m, n, 24))
    low = _with_spectrum(
        np_rng, m, n, 24, lambda k, t: np.where(np.arange(k)[:, None] < 2, 1.5, 1e-9)
    )
    low[..., :4] = 0.0  # zero matrices (a dead lane's record)
    for x in (gauss, low):
        x = x.astype(dtype)
        d, e = bidiagonal(jnp.asarray(x))
        assert d.dtype == dtype and e.dtype == dtype
        assert d.shape == (min(m, n), 24) and e.shape == (min(m, n) - 1, 24)
        got = np.asarray(largest(d, e, min(m, n) + 1))
        assert got.dtype == dtype
        ref = _lapack(x)
        scale = np.maximum(ref[0], np.finfo(dtype).tiny)
        np.testing.assert_array_less(np.abs(got[:-1] - ref) / scale, ATOL[dtype])
        np.testing.assert_array_equal(got[-1], 0.0)  # past min(m, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_counts_match_lapack_outside_the_stated_band(np_rng, dtype):
    """Spectra spread log-uniformly over 8 decades around the thresholds: every count agrees
    with LAPACK's except where a singular value lies within ATOL * s_1 of the threshold, and
    such near-ties are rare (the band is narrow)."""
    m, n, lanes = 12, 9, 400
    x = _with_spectrum(
        np_rng, m, n, lanes, lambda k, t: 10.0 ** np_rng.uniform(-7, 1, size=(k, t))
    ).astype(dtype)
    ref = _lapack(x)
    d, e = bidiagonal(jnp.asarray(x))
    ties = 0
    for c in (1e-5, 1e-3, 0.02, 0.3, 2.0):
        if dtype == np.float32 and c < 1e-4:
            continue  # below float32's resolution of these matrices (s_1 ~ 10)
        got = np.asarray(count_above(d, e, c))
        want = np.sum(ref >= c, axis=0)
        near = np.any(np.abs(ref - c) <= ATOL[dtype] * ref[0], axis=0)
        assert np.all((got == want) | near), (c, np.flatnonzero((got != want) & ~near))
        ties += int(near.sum())
    assert ties <= 5  # a band of relative width ~1e-5 holds almost no value


def test_counts_of_a_rank_deficient_matrix_at_every_threshold(np_rng):
    """Rank 3 with a gap: counts at thresholds between the groups are exact, both dtypes."""
    s = np.array([3.0, 1.0, 0.25, 1e-3, 1e-4, 1e-5])
    x = _with_spectrum(np_rng, 6, 8, 16, lambda k, t: np.repeat(s[:k, None], t, 1))
    for dtype, cuts in ((np.float32, (0.5, 0.1, 5e-4, 5e-5)), (np.float64, (0.5, 0.1, 5e-4, 5e-6))):
        d, e = bidiagonal(jnp.asarray(x.astype(dtype)))
        for c in cuts:
            np.testing.assert_array_equal(count_above(d, e, c), np.sum(s >= c))


def test_selected_values_of_a_stack(np_rng):
    """One bisection for chosen (matrix, j) pairs of zero-padded stacked matrices of different
    shapes equals LAPACK's values of each matrix."""
    mats = [np_rng.standard_normal(s + (10,)) for s in ((4, 6), (6, 6), (3, 6))]
    d, e = bidiagonal(stack_square([jnp.asarray(m) for m in mats]))
    which = ((0, 1), (0, 4), (1, 2), (1, 6), (2, 3), (2, 5))
    got = np.asarray(selected(d, e, which))
    for row, (mat, j) in zip(got, which, strict=True):
        ref = _lapack(mats[mat])
        want = ref[j - 1] if j <= ref.shape[0] else np.zeros(10)
        np.testing.assert_allclose(row, want, rtol=0, atol=1e-13 * ref[0].max())


def test_tiles_leave_results_unchanged(np_rng):
    """lanes_last_tiles over tiles of 8 (with padding) equals one whole-chunk call, bit for bit."""
    x = jnp.asarray(np_rng.standard_normal((37, 5, 4)))

    def fn(x):
        d, e = spectra.bidiagonal(x)
        return spectra.largest(d, e, 2), spectra.count_above(d, e, 0.5)

    whole = jax.jit(lambda x: lanes_last_tiles(fn, x, 0))(x)
    tiled = jax.jit(lambda x: lanes_last_tiles(fn, x, 8))(x)
    assert whole[0].shape == (37, 2) and whole[1].shape == (37,)
    for a, b in zip(whole, tiled, strict=True):
        np.testing.assert_array_equal(a, b)
    ref = np.linalg.svd(np.asarray(x), compute_uv=False)
    np.testing.assert_array_equal(whole[1], np.sum(ref >= 0.5, -1))


def test_rank_cut_matches_the_host_rule():
    """The kernel's cut (rank_cut with s_1) and the host's sorted-values count are one rule."""
    s = jnp.asarray([[2.0, 1.0, 1e-6, 1e-12], [1.0, 0.5, 0.1, 0.0]])
    x = jnp.stack([jnp.diag(row) for row in s], -1)
    d, e = bidiagonal(x)
    from rankjump.model.ranks import rank_cut

    for eps in (0.0, 1e-8, 0.3):
        for floor in (REL_FLOOR["float64"], REL_FLOOR["float32"]):
            cut = rank_cut(eps, largest(d, e, 1)[0], floor)
            np.testing.assert_array_equal(count_above(d, e, cut), count_sorted(s, eps, floor))


def test_no_custom_call_in_the_checkpoint_program():
    """The record's spectra lower to plain XLA: no LAPACK (or any) custom call, which is what
    lets several CPU devices run checkpoints side by side."""
    x = jnp.zeros((6, 5, 3, 8), jnp.float32)

    def fn(x):
        d, e = spectra.bidiagonal(x)
        return spectra.selected(d, e, [(0, 1), (2, 3)]), spectra.count_above(d, e, 0.1)

    text = jax.jit(fn).lower(x).as_text()
    assert "custom_call" not in text
