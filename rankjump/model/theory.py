"""Closed forms of docs/theory.md: per-mode minima for fully observed targets, absorption bound."""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

__all__ = ["absorption_radius", "balanced_layer_values", "mode_minimum", "mode_minima"]


def mode_minimum(sigma: float, lam: float, n: int, depth: int) -> float:
    """The stable nonzero balanced critical value s of one mode, or 0 if none exists.

    With all N entries observed, a balanced critical point decouples by singular value: mode k
    sits at s = 0 or at a root of ``s + lam * N * s^(2/L - 1) = sigma_k`` (docs/theory.md, our
    derivation). For L = 1 the root is sigma / (1 + lam N); for L = 2 it is the soft threshold
    max(sigma - lam N, 0); for L >= 3 the left side has a minimum at
    s* = (lam N (L - 2) / L)^(L / (2L - 2)), a nonzero minimum exists only when sigma exceeds
    that value, and the larger root (the stable one) is returned.

    Args:
        sigma: singular value of the target, >= 0.
        lam: ridge parameter, >= 0.
        n: number of observed entries N (= d_out * d_in here).
        depth: L.

    Returns:
        The end-to-end singular value s of the stable mode (0 when the mode is switched off).
    """
    c = lam * n
    if depth == 1:
        return sigma / (1.0 + c)
    if depth == 2 or c == 0.0:
        return max(sigma - c, 0.0)
    p = 2.0 / depth - 1.0

    def g(s):
        return s + c * s**p - sigma

    s_star = (c * (depth - 2) / depth) ** (depth / (2.0 * depth - 2.0))
    if g(s_star) >= 0.0:
        return 0.0
    return brentq(g, s_star, sigma, xtol=1e-15, rtol=1e-15, maxiter=500)


def mode_minima(sigmas, lam: float, n: int, depth: int) -> np.ndarray:
    """:func:`mode_minimum` for each target singular value."""
    return np.array([mode_minimum(float(s), lam, n, depth) for s in sigmas])


def balanced_layer_values(s, depth: int) -> np.ndarray:
    """Per-layer singular values s^(1/L) of a balanced network with end-to-end values s."""
    return np.asarray(s, dtype=float) ** (1.0 / depth)


def absorption_radius(lam: float, rho: float, depth: int) -> float:
    """Per-layer size below which weight decay beats the data's pull: (2 lam / rho)^(1/(L-2)).

    One SGD step maps an extra mode of per-layer size s to at most
    (1 - 2 eta lam + eta rho s^(L-2)) s (docs/theory.md, our derivation), which shrinks whenever
    s^(L-2) < 2 lam / rho. Defined for L >= 3 and lam > 0; returns 0 otherwise (no absorption:
    for L = 2 both terms are linear in s).
    """
    if depth < 3 or lam <= 0.0 or rho <= 0.0:
        return 0.0
    return (2.0 * lam / rho) ** (1.0 / (depth - 2))
