"""Benchmark peers: the PyTorch programs rankjump's kernel is measured against, and flop counts.

The benchmarks (benchmarks/README.md) report, in the same run, trajectory-steps per second for
rankjump's kernel and for two PyTorch peers, plus the achieved GFLOP/s (an analytic count of the
useful arithmetic) against a measured float32 matmul peak of the machine:

- :func:`torch_naive`: what a researcher would write. ONE trajectory at a time, weights as
  ``requires_grad`` tensors, the full product A = W_L ... W_1 every step, the batch's entries
  gathered from it, ``loss.backward()`` and ``torch.optim.SGD(lr=eta, weight_decay=2*lam)``.
  One thread: a 20 x 20 matmul gains nothing from more.
- :func:`torch_batched`: all trajectories at once. Weights as (T, rows, cols) tensors, A by a
  ``torch.bmm`` chain, each trajectory's B entries gathered by advanced indexing, the loss summed
  over trajectories of per-trajectory batch means (the sum keeps the trajectories' gradients
  apart), autograd, the same SGD step. One thread by default: rankjump's XLA CPU program runs the
  kernel on one core (measured at the headline configuration: CPU time / wall time = 1.00, and
  pinning it to one core with taskset left its rate unchanged), so one torch thread is the fair
  peer; ``threads=None`` uses every core the process may run on.

Both implement docs/theory.md's step exactly: ``(1/B) sum (A[i,j] - y)^2 + lam ||theta||^2`` with B
entries drawn uniformly with replacement (all observed entries for ``kind = "gd"``), so the
update is ``(1 - 2 eta lam) theta - (2 eta / B) sum r grad A[i,j]``. They start from the Gaussian
init N(0, init_scale^2 / fan_in) whatever ``network.init`` says (throughput does not depend on
the start) and use ``run.dtype`` (float32 by default). Timing: one warm-up run, then the minimum
of ``repeats`` timed runs (``time.perf_counter``); the weights are reset before each run, outside
the timer; drawing the entry indices (in bulk, as rankjump does) is inside it.

torch is an optional extra (``pip install rankjump[bench]``) and is imported only inside the
functions that need it.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rankjump.config import Config
from rankjump.network import layer_shapes
from rankjump.tasks import make_task

__all__ = [
    "PeerResult",
    "available_cores",
    "gd_flops_per_step",
    "sgemm_peak_gflops",
    "sgemm_peaks",
    "torch_batched",
    "torch_naive",
    "useful_flops_per_step",
]

_KINDS = ("sgd", "gd")


@dataclass(frozen=True)
class PeerResult:
    """One peer's measured throughput.

    Attributes:
        name: "torch_naive" or "torch_batched" (with "_gd" appended for full-batch GD).
        trajectory_steps_per_s: trajectories * steps / seconds.
        seconds: the best (minimum) wall time of one timed run of ``steps`` steps.
        trajectories: trajectories advanced per run (1 for the naive peer).
        steps: steps per run.
        threads: torch intra-op threads used.
    """

    name: str
    trajectory_steps_per_s: float
    seconds: float
    trajectories: int
    steps: int
    threads: int


# ------------------------------------------------------------------ helpers


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run a block with ``n`` torch intra-op threads, then restore the previous setting."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _best_time(reset: Callable[[], None], run: Callable[[], None], repeats: int) -> float:
    """Minimum wall time of ``run`` over ``repeats`` timed runs after one warm-up run."""
    if repeats < 1:
        raise ValueError(f"repeats = {repeats}: must be >= 1")
    reset()
    run()  # warm-up
    best = math.inf
    for _ in range(repeats):
        reset()
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def _check_kind(cfg: Config) -> str:
    kind = cfg.optimizer.kind
    if kind not in _KINDS:
        raise ValueError(f"optimizer.kind = {kind!r}: the torch peers support 'sgd' and 'gd' only")
    return kind


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def _task_tensors(cfg: Config, dtype):
    """rows, cols (int64) and y (``dtype``) of the observed entries, as torch tensors."""
    import torch

    task = make_task(cfg.task)
    rows = torch.as_tensor(np.asarray(task.rows, dtype=np.int64))
    cols = torch.as_tensor(np.asarray(task.cols, dtype=np.int64))
    y = torch.as_tensor(task.y).to(dtype)
    return rows, cols, y


def _gaussian_init(cfg: Config, trajectories: int | None, gen, dtype) -> list:
    """W_1 .. W_L with entries N(0, init_scale^2 / fan_in); leading axis T when batched."""
    import torch

    n = cfg.network
    lead = () if trajectories is None else (trajectories,)
    return [
        torch.randn(*lead, r, c, generator=gen, dtype=dtype) * (n.init_scale / math.sqrt(c))
        for r, c in layer_shapes(cfg.task.d_out, cfg.task.d_in, n.width, n.depth)
    ]


# ------------------------------------------------------------------ the step loops


def _naive_loop(ws, opt, rows, cols, y, idx, steps: int) -> None:
    """``steps`` SGD steps of one network. ``idx`` (steps, B) entry indices; None means GD."""
    for s in range(steps):
        a = ws[0]
        for w in ws[1:]:
            a = w @ a
        if idx is None:
            pred, target = a[rows, cols], y
        else:
            k = idx[s]
            pred, target = a[rows[k], cols[k]], y[k]
        loss = ((pred - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _batched_loop(ws, opt, rows, cols, y, idx, steps: int) -> None:
    """``steps`` SGD steps of T networks at once; ``idx`` (steps, T, B), None means GD."""
    import torch

    t = ws[0].shape[0]
    lane = torch.arange(t)[:, None]
    for s in range(steps):
        a = ws[0]
        for w in ws[1:]:
            a = torch.bmm(w, a)
        if idx is None:
            pred, target = a[:, rows, cols], y  # (T, N), (N,)
        else:
            k = idx[s]  # (T, B)
            pred, target = a[lane, rows[k], cols[k]], y[k]
        loss = ((pred - target) ** 2).mean(dim=1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _run_steps(loop, weights, rows, cols, y, idx, lam, eta, steps) -> list[np.ndarray]:
    """Shared body of :func:`_naive_steps` and :func:`_batched_steps`."""
    import torch

    ws = [torch.tensor(np.array(w)).requires_grad_() for w in weights]
    dtype = ws[0].dtype
    if any(w.dtype != dtype for w in ws):
        raise ValueError("weights must share one dtype")
    rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    cols_t = torch.as_tensor(np.asarray(cols, dtype=np.int64))
    y_t = torch.as_tensor(np.asarray(y)).to(dtype)
    if idx is None:
        if steps is None:
            raise ValueError("give steps when idx is None (full-batch GD)")
        idx_t = None
    else:
        idx_t = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        steps = idx_t.shape[0]
    opt = torch.optim.SGD(ws, lr=eta, weight_decay=2.0 * lam)
    loop(ws, opt, rows_t, cols_t, y_t, idx_t, steps)
    return [w.detach().numpy() for w in ws]


def _naive_steps(
    weights: Sequence[np.ndarray], rows, cols, y, idx, lam: float, eta: float, *, steps=None
) -> list[np.ndarray]:
    """The naive peer's update on explicit data, for tests.

    Args:
        weights: W_1 .. W_L as NumPy arrays (their dtype is kept: float64 for exact checks).
        rows, cols, y: the observed entries.
        idx: (steps, B) indices into the observed entries, or None for full-batch GD.
        lam, eta: weight decay and learning rate.
        steps: number of GD steps (only when ``idx`` is None).

    Returns:
        The weights after the steps, as NumPy arrays.
    """
    return _run_steps(_naive_loop, weights, rows, cols, y, idx, lam, eta, steps)


def _batched_steps(
    weights: Sequence[np.ndarray], rows, cols, y, idx, lam: float, eta: float, *, steps=None
) -> list[np.ndarray]:
    """The batched peer's update on explicit data, for tests.

    Like :func:`_naive_steps` with a leading trajectory axis T on every weight, (T, rows, cols),
    and ``idx`` of shape (steps, T, B): trajectory t uses the entries ``idx[:, t, :]``.
    """
    return _run_steps(_batched_loop, weights, rows, cols, y, idx, lam, eta, steps)


# ------------------------------------------------------------------ the timed peers


def _time_peer(
    cfg: Config, trajectories: int | None, steps: int, seed: int, repeats: int, threads: int, loop
) -> float:
    """Best time of ``steps`` steps of ``loop`` (one trajectory when ``trajectories`` is None)."""
    import torch

    kind = _check_kind(cfg)
    dtype = _torch_dtype(cfg.run.dtype)
    with _torch_threads(threads):
        gen = torch.Generator().manual_seed(seed)
        rows, cols, y = _task_tensors(cfg, dtype)
        init = _gaussian_init(cfg, trajectories, gen, dtype)
        ws = [w.clone().requires_grad_() for w in init]
        opt = torch.optim.SGD(ws, lr=cfg.optimizer.eta[0], weight_decay=2 * cfg.optimizer.lam[0])
        lanes = () if trajectories is None else (trajectories,)
        shape = (steps, *lanes, cfg.optimizer.batch_size)

        def reset():
            with torch.no_grad():
                for w, w0 in zip(ws, init, strict=True):
                    w.copy_(w0)

        def run():
            idx = torch.randint(0, y.shape[0], shape, generator=gen) if kind == "sgd" else None
            loop(ws, opt, rows, cols, y, idx, steps)

        return _best_time(reset, run, repeats)


def torch_naive(cfg: Config, steps: int, *, seed: int = 0, repeats: int = 3) -> PeerResult:
    """Throughput of the naive one-trajectory PyTorch loop (one thread).

    Args:
        cfg: uses task, network depth/width/init_scale, optimizer kind ("sgd" or "gd"),
            batch_size, lam[0], eta[0], and run.dtype.
        steps: SGD steps per timed run.
        seed: seeds the init and the entry indices (torch.Generator).
        repeats: timed runs after the warm-up; the minimum counts.
    """
    best = _time_peer(cfg, None, steps, seed, repeats, 1, _naive_loop)
    name = "torch_naive" if _check_kind(cfg) == "sgd" else "torch_naive_gd"
    return PeerResult(name, steps / best, best, 1, steps, 1)


def torch_batched(
    cfg: Config,
    trajectories: int,
    steps: int,
    *,
    seed: int = 0,
    repeats: int = 3,
    threads: int | None = 1,
) -> PeerResult:
    """Throughput of the all-trajectories-at-once PyTorch version (bmm chain + autograd).

    Args:
        cfg: as for :func:`torch_naive`.
        trajectories: T, the trajectories advanced together.
        steps: SGD steps per timed run.
        seed: seeds the init and the entry indices (torch.Generator).
        repeats: timed runs after the warm-up; the minimum counts.
        threads: torch intra-op threads. 1 (default) matches rankjump's XLA CPU kernel, which
            runs on one core; None uses every core this process may run on
            (:func:`available_cores`).
    """
    kind = _check_kind(cfg)
    n_threads = available_cores() if threads is None else int(threads)
    if n_threads < 1:
        raise ValueError(f"threads = {threads}: must be >= 1")
    best = _time_peer(cfg, trajectories, steps, seed, repeats, n_threads, _batched_loop)
    name = "torch_batched" if kind == "sgd" else "torch_batched_gd"
    return PeerResult(name, trajectories * steps / best, best, trajectories, steps, n_threads)


# ------------------------------------------------------------------ machine peak


def _best_gflops(fn: Callable[[], object], n: int, repeats: int) -> float:
    fn()  # warm-up (and compile, for jax)
    best = min(_timed(fn) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


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
    with _torch_threads(1):
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


def _check_dims(d_out: int, d_in: int, width: int, depth: int) -> None:
    for name, value in (("d_out", d_out), ("d_in", d_in), ("width", width), ("depth", depth)):
        if value < 1:
            raise ValueError(f"{name} = {value}: must be >= 1")
