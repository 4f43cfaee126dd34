"""``rankjump bench``: trajectory-steps per second of the kernel beside PyTorch peers.

- :mod:`~rankjump.bench.cases`: the configurations measured and the timed calls of rankjump;
- :mod:`~rankjump.bench.report`: the command (:func:`run_bench`, :func:`main_bench`): the table,
  the JSON, the side-by-side lines;
- :mod:`~rankjump.bench.side_by_side`: checkpoints against none, every core against one;
- :mod:`~rankjump.bench.peers` and :mod:`~rankjump.bench.peer_steps`: the PyTorch peers (the
  ``bench`` extra);
- :mod:`~rankjump.bench.rare`: the splitting methods against plain Monte Carlo on one cell, in
  trajectory-steps per second and seconds to a 30% relative error;
- :mod:`~rankjump.bench.flops`: the analytic count of useful arithmetic and the sgemm peaks;
- :mod:`~rankjump.bench.timing`: best of repeated runs.
"""

from rankjump.bench.cases import (
    BenchCase,
    bench_config,
    cases,
    kernel_seconds,
    simulate_seconds,
)
from rankjump.bench.flops import (
    flops_per_step,
    gd_flops_per_step,
    sgemm_core_gflops,
    sgemm_peak_gflops,
    sgemm_peaks,
    useful_flops_per_step,
)
from rankjump.bench.rare import rare_case, rare_line, rare_ratio
from rankjump.bench.report import main_bench, run_bench
from rankjump.bench.side_by_side import (
    checkpoint_line,
    checkpoint_ratio,
    cores_line,
    cores_ratio,
)
from rankjump.bench.timing import best_time, seconds, torch_threads

__all__ = [
    "BenchCase",
    "bench_config",
    "best_time",
    "cases",
    "checkpoint_line",
    "checkpoint_ratio",
    "cores_line",
    "cores_ratio",
    "flops_per_step",
    "gd_flops_per_step",
    "kernel_seconds",
    "main_bench",
    "rare_case",
    "rare_line",
    "rare_ratio",
    "run_bench",
    "seconds",
    "sgemm_core_gflops",
    "sgemm_peak_gflops",
    "sgemm_peaks",
    "simulate_seconds",
    "torch_threads",
    "useful_flops_per_step",
]
