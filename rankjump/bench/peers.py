"""Benchmark peers: the PyTorch programs rankjump's kernel is measured against, timed.

The benchmarks (benchmarks/README.md) report, in the same run, trajectory-steps per second for
rankjump's kernel and for two PyTorch peers, plus the achieved GFLOP/s (an analytic count of the
useful arithmetic, :mod:`rankjump.bench.flops`) against a measured float32 matmul peak of the
machine:

- :func:`torch_naive`: what a researcher would write. ONE trajectory at a time, weights as
  ``requires_grad`` tensors, the full product A = W_L ... W_1 every step, the batch's entries
  gathered from it, ``loss.backward()`` and ``torch.optim.SGD(lr=eta, weight_decay=2*lam)``.
  One thread: a 20 x 20 matmul gains nothing from more.
- :func:`torch_batched`: all trajectories at once. Weights as (T, rows, cols) tensors, A by a
  ``torch.bmm`` chain, each trajectory's B entries gathered by advanced indexing, the loss summed
  over trajectories of per-trajectory batch means (the sum keeps the trajectories' gradients apart),
  autograd, the same SGD step. Every core the process may run on by default (as many torch threads),
  as rankjump's kernel steps on one CPU device per core (:mod:`rankjump.runtime.cores`);
  ``threads=1`` gives the one-thread figure.

Both run the step loops of :mod:`rankjump.bench.peer_steps`, docs/theory.md's step exactly, with B
entries drawn uniformly with replacement (all observed entries for ``kind = "gd"``). They start from
the Gaussian init N(0, init_scale^2 / fan_in) whatever ``network.init`` says (throughput does not
depend on the start) and use ``run.dtype`` (float32 by default). Timing
(:func:`rankjump.bench.timing.best_time`): one warm-up run, then the minimum of ``repeats`` timed
runs (``time.perf_counter``); the weights are reset before each run, outside the timer; drawing the
entry indices (in bulk, as rankjump does) is inside it.

torch is an optional extra (``pip install rankjump[bench]``) and is imported only inside the
functions that need it. The flop counts and sgemm peaks are in :mod:`rankjump.bench.flops`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from rankjump.bench.peer_steps import batched_loop, naive_loop, peer_state
from rankjump.bench.timing import best_time, torch_threads
from rankjump.config import Config
from rankjump.model.network import layer_shapes
from rankjump.model.tasks import make_task
from rankjump.runtime.cores import available_cores

__all__ = [
    "PeerResult",
    "torch_batched",
    "torch_naive",
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


def _check_kind(cfg: Config) -> str:
    kind = cfg.optimizer.kind
    if kind not in _KINDS:
        raise ValueError(f"optimizer.kind = {kind!r}: the torch peers support 'sgd' and 'gd' only")
    return kind


def _gaussian_init(cfg: Config, trajectories: int | None, gen, dtype) -> list:
    """W_1 .. W_L with entries N(0, init_scale^2 / fan_in); leading axis T when batched."""
    import torch

    n = cfg.network
    lead = () if trajectories is None else (trajectories,)
    return [
        torch.randn(*lead, r, c, generator=gen, dtype=dtype) * (n.init_scale / math.sqrt(c))
        for r, c in layer_shapes(cfg.task.d_out, cfg.task.d_in, n.width, n.depth)
    ]


def _time_peer(
    cfg: Config,
    trajectories: int | None,
    steps: int,
    seed: int,
    repeats: int,
    threads: int,
    clock: Callable[[], float],
) -> float:
    """Best time of ``steps`` steps of one peer (the naive one when ``trajectories`` is None)."""
    import torch

    kind = _check_kind(cfg)
    dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.run.dtype]
    loop = naive_loop if trajectories is None else batched_loop
    with torch_threads(threads):
        gen = torch.Generator().manual_seed(seed)
        task = make_task(cfg.task)
        init = _gaussian_init(cfg, trajectories, gen, dtype)
        opt = cfg.optimizer
        state = peer_state(init, task.rows, task.cols, task.y, opt.lam[0], opt.eta[0])
        lanes = () if trajectories is None else (trajectories,)
        shape = (steps, *lanes, opt.batch_size)

        def reset():
            with torch.no_grad():
                for w, w0 in zip(state.weights, init, strict=True):
                    w.copy_(w0)

        def run():
            n_obs = state.y.shape[0]
            idx = torch.randint(0, n_obs, shape, generator=gen) if kind == "sgd" else None
            loop(state, idx, steps)

        return best_time(reset, run, repeats, clock)


def torch_naive(
    cfg: Config,
    steps: int,
    *,
    seed: int = 0,
    repeats: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> PeerResult:
    """Throughput of the naive one-trajectory PyTorch loop (one thread).

    Args:
        cfg: uses task, network depth/width/init_scale, optimizer kind ("sgd" or "gd"),
            batch_size, lam[0], eta[0], and run.dtype.
        steps: SGD steps per timed run.
        seed: seeds the init and the entry indices (torch.Generator).
        repeats: timed runs after the warm-up; the minimum counts.
        clock: the timer (``time.perf_counter``; see :func:`rankjump.bench.timing.best_time`).
    """
    best = _time_peer(cfg, None, steps, seed, repeats, 1, clock)
    name = "torch_naive" if _check_kind(cfg) == "sgd" else "torch_naive_gd"
    return PeerResult(name, steps / best, best, 1, steps, 1)


def torch_batched(
    cfg: Config,
    trajectories: int,
    steps: int,
    *,
    seed: int = 0,
    repeats: int = 3,
    threads: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> PeerResult:
    """Throughput of the all-trajectories-at-once PyTorch version (bmm chain + autograd).

    Args:
        cfg: as for :func:`torch_naive`.
        trajectories: T, the trajectories advanced together.
        steps: SGD steps per timed run.
        seed: seeds the init and the entry indices (torch.Generator).
        repeats: timed runs after the warm-up; the minimum counts.
        threads: torch intra-op threads; None (default) uses every core this process may run
            on (:func:`available_cores`), as rankjump's kernel does.
        clock: the timer (``time.perf_counter``; see :func:`rankjump.bench.timing.best_time`).
    """
    kind = _check_kind(cfg)
    n_threads = available_cores() if threads is None else int(threads)
    if n_threads < 1:
        raise ValueError(f"threads = {threads}: must be >= 1")
    best = _time_peer(cfg, trajectories, steps, seed, repeats, n_threads, clock)
    name = "torch_batched" if kind == "sgd" else "torch_batched_gd"
    return PeerResult(name, trajectories * steps / best, best, trajectories, steps, n_threads)
