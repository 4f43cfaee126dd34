"""Timing for the benchmarks: best of repeated runs, one timed call, cores and torch threads.

Every figure of ``rankjump bench`` and benchmarks/ is a minimum over repeated runs after one
warm-up run (which compiles, for jax), read from ``time.perf_counter``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

__all__ = ["best_time", "seconds", "torch_threads"]


def seconds(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """Wall time of one call of ``fn`` by ``clock``."""
    t0 = clock()
    fn()
    return clock() - t0


def best_time(
    reset: Callable[[], object],
    run: Callable[[], object],
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Minimum time of ``run`` over ``repeats`` timed runs after one warm-up run.

    Args:
        reset: Called before every run (the warm-up included), outside the timer.
        run: The work timed.
        repeats: Timed runs after the warm-up, >= 1.
        clock: The timer read before and after each run (``time.perf_counter``); any
            non-decreasing count works, such as a count of optimizer steps.

    Returns:
        The smallest ``clock`` difference over the timed runs.
    """
    if repeats < 1:
        raise ValueError(f"repeats = {repeats}: must be >= 1")
    reset()
    run()  # warm-up
    best = math.inf
    for _ in range(repeats):
        reset()
        best = min(best, seconds(run, clock))
    return best


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch intra-op threads, then restore the previous setting."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
