"""Tests of rankjump.model.theory, rankjump.model.ranks and GD minima against docs/theory.md's
closed forms."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from rankjump.config import NetworkConfig, TaskConfig
from rankjump.model import theory
from rankjump.model.ranks import REL_FLOOR, count_above, thresholds_for
from rankjump.model.tasks import make_task
from rankjump.simulation.minima import NotConvergedError, gd_minimum

# ------------------------------------------------------------------ mode_minimum


def _mode_loss(u, sigma, lam, n, depth):
    """Per-mode L_lam of a balanced mode, per-layer value u: (1/N)(u^L - sigma)^2 + lam L u^2."""
    return (u**depth - sigma) ** 2 / n + lam * depth * u**2


@pytest.mark.parametrize("depth", [3, 4, 5])
@pytest.mark.parametrize(("sigma", "lam", "n"), [(3.0, 1e-2, 16), (1.0, 1e-3, 30), (0.8, 0.02, 6)])
def test_mode_minimum_solves_its_equation_and_is_a_local_minimum(sigma, lam, n, depth):
    s = theory.mode_minimum(sigma, lam, n, depth)
    assert 0.0 < s < sigma
    # s + lam N s^(2/L - 1) = sigma (docs/theory.md).
    assert s + lam * n * s ** (2.0 / depth - 1.0) == pytest.approx(sigma, rel=1e-12)
    # The larger (stable) root: the left side increases there.
    assert 1.0 + lam * n * (2.0 / depth - 1.0) * s ** (2.0 / depth - 2.0) > 0.0
    # A strict local minimum of the per-mode loss in the per-layer value u = s^(1/L).
    u = s ** (1.0 / depth)
    h0 = _mode_loss(u, sigma, lam, n, depth)
    for du in (1e-4, -1e-4, 1e-3, -1e-3):
        assert _mode_loss(u + du, sigma, lam, n, depth) > h0
    # And zero is also a local minimum for L >= 3 (weight decay wins near 0).
    assert _mode_loss(1e-3, sigma, lam, n, depth) > _mode_loss(0.0, sigma, lam, n, depth)


@pytest.mark.parametrize("depth", [3, 4, 6])
def test_mode_minimum_is_zero_below_the_existence_threshold(depth):
    lam, n = 1e-2, 16
    c = lam * n
    # The existence threshold min_{s > 0} (s + c s^(2/L - 1)), by brute force on a fine grid.
    grid = np.geomspace(1e-8, 10.0, 2_000_001)
    crit = np.min(grid + c * grid ** (2.0 / depth - 1.0))
    assert theory.mode_minimum(crit * (1 - 1e-6), lam, n, depth) == 0.0
    assert theory.mode_minimum(0.5 * crit, lam, n, depth) == 0.0
    assert theory.mode_minimum(0.0, lam, n, depth) == 0.0
    above = theory.mode_minimum(crit * (1 + 1e-4), lam, n, depth)
    assert above > 0.0
    np.testing.assert_allclose(
        theory.mode_minima([0.5 * crit, 2 * crit], lam, n, depth),
        [0.0, theory.mode_minimum(2 * crit, lam, n, depth)],
    )


def test_mode_minimum_depth_one_and_two_closed_forms():
    for sigma in (0.05, 0.3, 2.0):
        assert theory.mode_minimum(sigma, 0.01, 16, 1) == pytest.approx(sigma / 1.16, rel=1e-14)
        assert theory.mode_minimum(sigma, 0.01, 16, 2) == pytest.approx(
            max(sigma - 0.16, 0.0), abs=1e-15
        )
    # lam = 0: nothing is switched off, s = sigma.
    assert theory.mode_minimum(0.7, 0.0, 16, 3) == pytest.approx(0.7, rel=1e-15)


def test_balanced_layer_values():
    np.testing.assert_allclose(theory.balanced_layer_values([8.0, 1.0, 0.0], 3), [2.0, 1.0, 0.0])


# ------------------------------------------------------------------ absorption radius, thresholds


def test_absorption_radius_formula():
    for lam, rho, depth in [(1e-3, 1.0, 3), (1e-2, 4.0, 4), (0.05, 0.3, 7)]:
        want = (2 * lam / rho) ** (1.0 / (depth - 2))
        assert theory.absorption_radius(lam, rho, depth) == pytest.approx(want, rel=1e-15)
    assert theory.absorption_radius(1e-3, 1.0, 3) == pytest.approx(2e-3, rel=1e-15)
    assert theory.absorption_radius(1e-3, 1.0, 2) == 0.0
    assert theory.absorption_radius(1e-3, 1.0, 1) == 0.0
    assert theory.absorption_radius(0.0, 1.0, 3) == 0.0
    assert theory.absorption_radius(1e-3, 0.0, 3) == 0.0


@pytest.mark.parametrize("depth", [3, 4, 5])
def test_auto_threshold_is_the_absorption_bound(depth):
    y = np.array([0.3, -1.7, 0.9, 1.2])
    rho = 2 * 1.7
    for lam, safety in [(1e-3, 0.5), (2e-2, 1.0)]:
        thr = thresholds_for("auto", lam, y, depth, safety, "float32")
        want = safety * (2 * lam / rho) ** (1.0 / (depth - 2))
        assert thr.layer == pytest.approx(want, rel=1e-14)
        assert thr.end == pytest.approx(want**depth, rel=1e-13)


def test_auto_threshold_is_floor_only_without_absorption():
    y = np.array([0.3, -1.7])
    assert thresholds_for("auto", 1e-3, y, 2, 0.5, "float64") == (0.0, 0.0)
    assert thresholds_for("auto", 0.0, y, 3, 0.5, "float64") == (0.0, 0.0)
    thr = thresholds_for(2e-3, 1e-3, y, 3, 0.5, "float32")
    assert thr.layer == 2e-3 and thr.end == pytest.approx(8e-9, rel=1e-14)


def test_count_above_uses_the_relative_floor():
    s = jnp.array([[2.0, 1e-3, 1e-9, 0.0], [1.0, 0.5, 1e-4, 1e-6]])
    np.testing.assert_array_equal(count_above(s, 1e-8, REL_FLOOR["float64"]), [2, 4])
    # Threshold 0: only the float32 floor (1e-5 times the largest value) cuts; it drops 1e-6 in
    # the second row, which the float64 floor keeps.
    np.testing.assert_array_equal(count_above(s, 0.0, REL_FLOOR["float32"]), [2, 3])
    np.testing.assert_array_equal(count_above(s, 0.0, REL_FLOOR["float64"]), [3, 4])
    np.testing.assert_array_equal(count_above(s, 0.6, REL_FLOOR["float32"]), [1, 1])


# ------------------------------------------------------------------ GD reaches the closed forms


def _gd_case(depth, sigmas, lams, seed=1):
    task = make_task(
        TaskConfig(
            d_out=4, d_in=4, rank=len(sigmas), observed=1.0, singular_values=sigmas, seed=seed
        )
    )
    net = NetworkConfig(
        depth=depth, width=4, init_scale=1.0, seed=0, gd_eta=0.1, gd_tol=1e-9, gd_max_steps=200_000
    )
    return task, gd_minimum(task, 4, 4, net, lams)


def _check_minimum(task, weights, sigmas, lam, depth):
    n = task.n_observed
    assert n == 16
    s_theory = theory.mode_minima(sigmas, lam, n, depth)
    ws = [np.asarray(w) for w in weights]
    a = ws[0]
    for w in ws[1:]:
        a = w @ a
    # End to end: mode k at s_k (or 0), along the target's own singular vectors.
    u, _, vt = np.linalg.svd(task.target)
    k = len(sigmas)
    want = (u[:, :k] * s_theory) @ vt[:k]
    np.testing.assert_allclose(a, want, atol=1e-8)
    sv = np.linalg.svd(a, compute_uv=False)
    np.testing.assert_allclose(sv[:k], s_theory, atol=1e-8)
    assert np.all(sv[k:] < 1e-8)
    # Per layer: balanced, every layer has singular values s^(1/L) (and ~0 for switched-off
    # modes: their gradient norm lam * u is below the tolerance only for u < 1e-7).
    layer_want = np.sort(theory.balanced_layer_values(s_theory, depth))[::-1]
    for w in ws:
        ls = np.linalg.svd(w, compute_uv=False)
        np.testing.assert_allclose(ls[:k], layer_want, atol=1e-7)
        assert np.all(ls[k:] < 1e-6)
    return s_theory


def test_gd_depth3_reaches_mode_minima_and_switches_off_small_mode():
    sigmas, lams = [3.0, 1.5, 0.2], [1e-2, 2e-2]
    task, m = _gd_case(3, sigmas, lams)
    assert np.all(m.grad_norm <= 1e-9)
    for k, lam in enumerate(lams):
        # docs/theory.md: sigma = 0.2 is below the existence threshold, so that mode must go to 0.
        s_theory = _check_minimum(task, [w[k] for w in m.weights], sigmas, lam, 3)
        assert s_theory[0] > 2.5 and s_theory[1] > 1.0 and s_theory[2] == 0.0
        # Loss at the minimum = per-mode closed form (representation cost of a balanced point).
        per_mode = sum(
            _mode_loss(s ** (1 / 3), sig, lam, 16, 3)
            for s, sig in zip(s_theory, sigmas, strict=True)
        )
        assert m.loss[k] == pytest.approx(per_mode, rel=1e-9)


def test_gd_depth2_reaches_the_soft_threshold():
    sigmas, lam = [3.0, 1.5, 0.1], 1e-2
    task, m = _gd_case(2, sigmas, [lam])
    s_theory = _check_minimum(task, [w[0] for w in m.weights], sigmas, lam, 2)
    np.testing.assert_allclose(s_theory, [2.84, 1.34, 0.0], atol=1e-14)


def test_gd_minimum_raises_when_not_converged():
    task = make_task(TaskConfig(d_out=4, d_in=4, rank=1, observed=1.0, singular_values=[2.0]))
    net = NetworkConfig(depth=3, width=4, gd_eta=0.01, gd_tol=1e-12, gd_max_steps=1000)
    with pytest.raises(NotConvergedError, match=r"network\.gd_max_steps = 1000"):
        gd_minimum(task, 4, 4, net, [1e-2])
