"""Matrix-completion tasks: ground truth and observed entries (docs/theory.md, the model)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rankjump.config import TaskConfig

__all__ = ["Task", "make_task", "haar_orthonormal"]


class Task(NamedTuple):
    """A matrix-completion task, in float64 NumPy arrays.

    Attributes:
        target: the ground truth A*, shape (d_out, d_in).
        rows: row index i of each observed entry, shape (N,), int32.
        cols: column index j of each observed entry, shape (N,), int32.
        y: observed targets A*[i, j] (+ fixed noise), shape (N,).
    """

    target: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    y: np.ndarray

    @property
    def n_observed(self) -> int:
        """N, the number of observed entries."""
        return int(self.y.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(d_out, d_in)."""
        return self.target.shape


def haar_orthonormal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """An n x k matrix with orthonormal columns, Haar-distributed (QR with sign correction)."""
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.sign(np.diag(r))


def make_task(cfg: TaskConfig) -> Task:
    """Build the task deterministically from ``cfg.seed``.

    The target is U diag(singular_values) V^T with Haar-random U, V, or (without
    ``singular_values``) G H^T / sqrt(rank) with i.i.d. N(0, 1) factors, rescaled to Frobenius
    norm ``target_norm`` when given. Exactly ``cfg.n_observed`` entries are observed, chosen
    uniformly without replacement; ``noise`` adds fixed i.i.d. N(0, noise^2) to their targets.
    """
    rng = np.random.default_rng(cfg.seed)
    d_out, d_in, r = cfg.d_out, cfg.d_in, cfg.rank
    if cfg.singular_values is not None:
        u = haar_orthonormal(rng, d_out, r)
        v = haar_orthonormal(rng, d_in, r)
        target = (u * np.asarray(cfg.singular_values)) @ v.T
    else:
        target = rng.standard_normal((d_out, r)) @ rng.standard_normal((d_in, r)).T / np.sqrt(r)
        if cfg.target_norm is not None:
            target *= cfg.target_norm / np.linalg.norm(target)
    flat = np.sort(rng.choice(d_out * d_in, size=cfg.n_observed, replace=False))
    rows, cols = np.divmod(flat, d_in)
    y = target[rows, cols] + cfg.noise * rng.standard_normal(flat.shape[0])
    return Task(target, rows.astype(np.int32), cols.astype(np.int32), y)
