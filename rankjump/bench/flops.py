"""Flop counts of the benchmarked steps and the machine's measured float32 matmul peaks.

``rankjump bench`` reports achieved GFLOP/s: trajectory-steps per second times the analytic count
of one step's useful arithmetic (:func:`useful_flops_per_step` for entry-wise SGD,
:func:`gd_flops_per_step` for full-batch GD), against sgemm peaks measured in the same run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rankjump.bench.timing import best_time, torch_threads
from rankjump.config import Config
from rankjump.model.network import layer_shapes

__all__ = [
    "flops_per_step",
    "gd_flops_per_step",
    "sgemm_core_gflops",
    "sgemm_peak_gflops",
    "sgemm_peaks",
    "useful_flops_per_step",
]


# ------------------------------------------------------------------ machine peak


def _best_gflops(fn: Callable[[], object], n: int, repeats: int) -> float:
    """2 n^3 flops over the best time of ``fn`` after a warm-up call (which compiles, for jax)."""
    return 2.0 * n**3 / best_time(lambda: None, fn, repeats) / 1e9


def sgemm_peaks(n: int = 1024, repeats: int = 5) -> dict[str, float]:
    """Measured float32 matmul rates in GFLOP/s: ``{"numpy": ..., "jax": ...}``.

    Each is 2 n^3 flops over the best of ``repeats`` timed n x n products after a warm-up:
    NumPy's ``A @ B`` on float32 arrays (its BLAS, with whatever threads it is configured for)
    and ``jnp.dot`` under ``jax.jit`` on float32 arrays (``block_until_ready``). Environment
    variables that steer the BLAS (``OPENBLAS_CORETYPE``, thread counts) are left as they are:
    a mis-set core type can make NumPy slow, which is why the jax figure is measured as well.
    """
    import jax
    import jax.numpy as jnp

    if n < 1 or repeats < 1:
        raise ValueError(f"n = {n}, repeats = {repeats}: both must be >= 1")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    peaks = {"numpy": _best_gflops(lambda: a @ b, n, repeats)}

    dot = jax.jit(lambda x, z: jnp.dot(x, z, precision=jax.lax.Precision.HIGHEST))
    ja = jnp.asarray(a, dtype=jnp.float32)
    jb = jnp.asarray(b, dtype=jnp.float32)
    peaks["jax"] = _best_gflops(lambda: dot(ja, jb).block_until_ready(), n, repeats)
    return peaks


def sgemm_core_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Measured float32 matmul rate of ONE core in GFLOP/s (PyTorch with one thread): the peak
    that a one-core kernel, like rankjump's on one XLA CPU device, can be held to."""
    import torch

    a = torch.randn(n, n, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    b = torch.randn(n, n, dtype=torch.float32, generator=torch.Generator().manual_seed(1))
    with torch_threads(1):
        return _best_gflops(lambda: torch.mm(a, b), n, repeats)


def sgemm_peak_gflops(n: int = 1024, repeats: int = 5) -> float:
    """The machine's measured float32 matmul peak: the larger of :func:`sgemm_peaks`."""
    return max(sgemm_peaks(n, repeats).values())


# ------------------------------------------------------------------ flop counts


def useful_flops_per_step(d_out: int, d_in: int, width: int, depth: int, batch: int) -> float:
    """Useful arithmetic of one entry-wise SGD step of ONE trajectory (docs/theory.md).

    Per sampled entry (i, j), with w = width and L = depth >= 2:

    - forward chain: b_2 = W_1[:, j] is a gather (0); b_{l+1} = W_l b_l for the L - 2 middle
      layers: 2 w^2 each;
    - backward chain: a_{L-1} = W_L[i, :] is a gather (0); a_{l-1} = W_l^T a_l for the L - 2
      middle layers: 2 w^2 each;
    - prediction A[i, j] = W_L[i, :] . b_L: 2 w;
    - rank-one updates W_l -= g a_l b_l^T of the L - 2 middle layers: 2 w^2 each (multiply-add);
    - first-layer column W_1[:, j] and last-layer row W_L[i, :] updates: 2 w each;
    - residual, step coefficient and weight decay are O(1) scalars (lazy decay: one scale per
      network) and are not counted.

    Total: ``batch * (6 (L - 2) w^2 + 6 w)``; d_out and d_in do not enter (only a column of W_1
    and a row of W_L are touched). Depth 2 is the same formula (no middle layers, both vectors are
    gathers): ``batch * 6 w``. Depth 1 (A = W_1, no hidden width): the prediction is a gather and
    the update one multiply-add on W_1[i, j]: ``batch * 2``.
    """
    _check_dims(d_out, d_in, width, depth)
    if batch < 1:
        raise ValueError(f"batch = {batch}: must be >= 1")
    if depth == 1:
        per_entry = 2.0
    else:
        w = float(width)
        per_entry = 6.0 * (depth - 2) * w * w + 6.0 * w
    return batch * per_entry


def gd_flops_per_step(d_out: int, d_in: int, width: int, depth: int, n_observed: int) -> float:
    """Arithmetic of one full-batch GD step of ONE trajectory that forms A = W_L ... W_1.

    The chain is evaluated as the peers do, P_1 = W_1, P_l = W_l P_{l-1} (l = 2..L), so the
    product with W_l (rows m_l, cols k_l) costs f_l = 2 m_l k_l d_in. Backward (as autograd does):
    grad W_l = G_l P_{l-1}^T and G_{l-1} = W_l^T G_l cost f_l each, so forward + backward =
    3 sum_l f_l. The residual on the N observed entries (subtract, scale by 2/N): 2 N. The update
    (1 - 2 eta lam) W - eta G: 3 flops per parameter.

    With w = width and L = depth >= 2: sum_l f_l = 2 w^2 d_in (L - 2) + 2 d_out w d_in.
    Depth 1 (A = W_1): no products, 2 N + 3 d_out d_in.
    """
    _check_dims(d_out, d_in, width, depth)
    if n_observed < 1:
        raise ValueError(f"n_observed = {n_observed}: must be >= 1")
    shapes = layer_shapes(d_out, d_in, width, depth)
    chain = sum(2.0 * m * k * d_in for m, k in shapes[1:])
    params = sum(m * k for m, k in shapes)
    return 3.0 * chain + 2.0 * n_observed + 3.0 * params


def flops_per_step(cfg: Config) -> float:
    """The count of one step of ONE trajectory of the configured optimizer.

    ``kind = "sgd"``: :func:`useful_flops_per_step` at ``optimizer.batch_size``; ``kind = "gd"``:
    :func:`gd_flops_per_step` on the task's observed entries. Other kinds are not counted.
    """
    t, n, kind = cfg.task, cfg.network, cfg.optimizer.kind
    if kind == "gd":
        return gd_flops_per_step(t.d_out, t.d_in, n.width, n.depth, t.n_observed)
    if kind == "sgd":
        return useful_flops_per_step(t.d_out, t.d_in, n.width, n.depth, cfg.optimizer.batch_size)
    raise ValueError(f"optimizer.kind = {kind!r}: flops are counted for 'sgd' and 'gd' only")


def _check_dims(d_out: int, d_in: int, width: int, depth: int) -> None:
    for name, value in (("d_out", d_out), ("d_in", d_in), ("width", width), ("depth", depth)):
        if value < 1:
            raise ValueError(f"{name} = {value}: must be >= 1")
