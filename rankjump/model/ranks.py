"""Numerical ranks, the rank threshold and the rank rule (docs/theory.md, rank sets).

Rank sets are judged on the layers: a layer's singular values of size s are resolved far better
than A_theta's of size ~s^L. The rank rule turns per-layer ranks into the network's rank:
``"all_layers"`` (default) takes the LARGEST per-layer rank, so "rank <= r" (the set B_r) means
every layer has at most r singular values above its threshold, which is what makes B_r absorbing;
``"any_layer"`` takes the smallest (the bottleneck of A_theta); ``"end_to_end"`` uses
``end_rank``, the count of A_theta's singular values above a threshold kept above the dtype's
floor.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rankjump.model.spectra import bidiagonal, selected, stack_square
from rankjump.model.spectra import count_above as count_bidiagonal
from rankjump.model.theory import absorption_radius

__all__ = [
    "REL_FLOOR",
    "RULES",
    "RULE_TEXT",
    "Thresholds",
    "count_above",
    "network_rank",
    "rank_cut",
    "ranks_of",
    "spectral_ranks",
    "thresholds_for",
]

RULES = ("all_layers", "any_layer", "end_to_end")
# What the network's rank is under each rule, in words (result files, tables, the demo).
RULE_TEXT = {
    "all_layers": (
        "largest per-layer numerical rank: rank <= r when every layer has at most r singular "
        "values above its threshold"
    ),
    "any_layer": "smallest per-layer numerical rank",
    "end_to_end": "numerical rank of A_theta",
}

# Singular values below REL_FLOOR * (largest one) are rounding noise in that dtype: an SVD in
# float32 resolves about 1e-6 of the largest value, in float64 about 1e-15 (docs/theory.md).
REL_FLOOR = {"float32": 1e-5, "float64": 1e-13}


class Thresholds(NamedTuple):
    """Absolute thresholds for one lam: per-layer and end-to-end (before the relative floor)."""

    layer: float
    end: float


def thresholds_for(
    threshold, lam: float, y: np.ndarray, depth: int, safety: float, dtype: str
) -> Thresholds:
    """Thresholds for one value of lam.

    ``threshold = "auto"``: eps_layer = safety * (2 lam / rho)^(1/(L-2)) with rho = 2 max |y_ij|
    over the observed entries, a bound on 2 max |r_ij| for a network whose extra mode is the only
    thing left (A = 0 on it). Below that per-layer size an extra mode cannot grow
    (:func:`rankjump.model.theory.absorption_radius`), so counting only larger values means "rank <=
    r" marks the absorbing set B_r. For depth <= 2 or lam = 0 there is no absorption and the dtype's
    floor alone is used. A number is used as eps_layer directly. The end-to-end threshold is
    eps_layer^L; both are later raised to REL_FLOOR[dtype] times the largest singular value of the
    matrix they are applied to.
    """
    if threshold == "auto":
        rho = 2.0 * float(np.max(np.abs(y))) if y.size else 0.0
        eps = safety * absorption_radius(lam, rho, depth)
    else:
        eps = float(threshold)
    return Thresholds(layer=eps, end=eps**depth)


def rank_cut(eps, s1, rel_floor: float):
    """The size a singular value must reach to count: max(eps, rel_floor * s_1), s_1 the largest
    singular value of its matrix (and at least the dtype's smallest normal number, so that a
    zero matrix has rank 0)."""
    s1 = jnp.asarray(s1)
    return jnp.maximum(jnp.maximum(eps, rel_floor * s1), jnp.finfo(s1.dtype).tiny)


def spectral_ranks(mats, thresholds, rel_floor: float, values=()):
    """Ranks and chosen singular values of lanes-last matrices, without LAPACK
    (:mod:`rankjump.model.spectra`).

    Args:
        mats: M matrices (rows, cols, lanes...) of any shapes.
        thresholds: (M, ...) each matrix's threshold eps, broadcasting against the lanes.
        rel_floor: the dtype's relative floor (:data:`REL_FLOOR`).
        values: (matrix, j) pairs of singular values wanted, j = 1 the largest.

    Returns:
        ``(ranks (M, lanes...), values (len(values), lanes...))``: each rank the count of
        singular values at or above :func:`rank_cut` (eps, the matrix's s_1).
    """
    d, e = bidiagonal(stack_square(mats))
    tops = [(m, 1) for m in range(len(mats))]
    which = tops + [v for v in dict.fromkeys(values) if v not in tops]
    got = selected(d, e, which)
    ranks = count_bidiagonal(d, e, rank_cut(thresholds, got[: len(mats)], rel_floor))
    index = {w: i for i, w in enumerate(which)}
    return ranks, got[np.array([index[v] for v in values], dtype=int)]


def count_above(s, eps, rel_floor: float):
    """Number of singular values ``s`` (descending, last axis) at or above
    :func:`rank_cut` (``eps``, ``s[0]``)."""
    cut = rank_cut(eps, s[..., :1], rel_floor)
    return jnp.sum(s >= cut, axis=-1).astype(jnp.int32)


def network_rank(layer_rank, end_rank, rule: str):
    """The network's rank under ``rule`` (one of :data:`RULES`) from its per-layer ranks (layer on
    the last axis) and the rank of A_theta; works on NumPy and JAX arrays alike."""
    xp = jnp if isinstance(layer_rank, jax.Array) else np
    if rule == "all_layers":
        return xp.max(layer_rank, axis=-1)
    if rule == "any_layer":
        return xp.min(layer_rank, axis=-1)
    if rule == "end_to_end":
        return end_rank
    raise ValueError(f"rank.rule = {rule!r}: must be one of {' | '.join(RULES)}")


def ranks_of(layer_svs, end_sv, thr_layer, thr_end, rel_floor: float, rule: str):
    """``(rank, layer_rank, end_rank)`` of one network from the singular values of each layer
    (a sequence of descending arrays) and of A_theta, at the given thresholds and relative
    floor, under ``rule``: what a checkpoint records, and the start rank of a shared start."""
    layer_rank = jnp.stack([count_above(s, thr_layer, rel_floor) for s in layer_svs])
    end_rank = count_above(end_sv, thr_end, rel_floor)
    return network_rank(layer_rank, end_rank, rule), layer_rank, end_rank
