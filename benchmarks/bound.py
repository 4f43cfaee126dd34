"""What bounds the SGD kernel on this CPU: its step against XLA's own loops, and two processes.

    python benchmarks/bound.py [--quick] [--json FILE]

At the headline configuration (d = width = 20, depth 4, batch 1, float32), one lanes-last step of
a cache tile of lanes is 16 XLA loops: 6 multiply-reduce loops (matrix-vector products, with the
one-hot column of W_1 and row of W_L), 4 rank-one updates of whole layers and 6 small ones
(indices, residual, scale). This script times, side by side in one process:

- ``kernel``: rankjump's stepping alone (``rankjump bench``'s figure), per step of a tile;
- ``reduce`` and ``update``: one such multiply-reduce and one such update of a layer of the same
  tile, each alone in a scanned loop of the same length, with the same XLA options;
- ``floor``: 6 reduce + 4 update: the time of the step's big loops run back to back.

Then ``two processes``: the kernel timed in two processes at once (as ``rankjump sweep --executor
local --parallel 2`` runs jobs), their rates summed, against the two-core sgemm peak.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time

import jax
import jax.numpy as jnp

from rankjump.bench.cases import BenchCase, bench_config, kernel_seconds
from rankjump.bench.flops import sgemm_core_gflops, sgemm_peak_gflops, useful_flops_per_step
from rankjump.dynamics.lanes import matvec, outer
from rankjump.kernel import compiler_options, tile_for
from rankjump.simulation.plan import structure_for

HEADLINE = BenchCase("headline", 20, 4, 1)


def loop_seconds(kind: str, w: int, lanes: int, steps: int, repeats: int) -> float:
    """Seconds per iteration of a scanned loop doing ONE layer pass of the kernel's kinds."""
    key = jax.random.PRNGKey(0)
    m = jax.random.normal(key, (w, w, lanes), jnp.float32) / w
    v = jax.random.normal(key, (1, w, lanes), jnp.float32)
    g = jnp.full((1, lanes), 1e-6, jnp.float32)

    def body(carry, _):
        m, v = carry
        if kind == "reduce":  # the kernel's matrix-vector product
            v = matvec(m, v) * 0.5
        else:  # the kernel's rank-one update
            m = m - outer(g, v, v)
        return (m, v), None

    fn = jax.jit(
        lambda m, v: jax.lax.scan(body, (m, v), None, length=steps)[0],
        compiler_options=compiler_options(True),
    )
    jax.block_until_ready(fn(m, v))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(m, v))
        best = min(best, time.perf_counter() - t0)
    return best / steps


def kernel_rate(trajectories: int, steps: int, repeats: int) -> float:
    cfg = bench_config(HEADLINE, trajectories, steps)
    return trajectories * steps / kernel_seconds(cfg, repeats)


def _worker(args) -> float:
    barrier, trajectories, steps, repeats = args
    kernel_rate(trajectories, steps // 10, 1)  # compile and warm up before the common start
    barrier.wait()
    return kernel_rate(trajectories, steps, repeats)


def two_processes(trajectories: int, steps: int, repeats: int) -> list[float]:
    """Kernel rates of two processes timed at the same time."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(2)
        with ctx.Pool(2) as pool:
            return pool.map(_worker, [(barrier, trajectories, steps, repeats)] * 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    traj, steps, repeats = (1024, 500, 3) if args.quick else (2048, 2000, 5)
    cfg = bench_config(HEADLINE, traj, steps)
    s = structure_for(cfg)
    tile = tile_for(min(cfg.run.chunk_size, traj), s.tile)
    flops = useful_flops_per_step(20, 20, 20, 4, 1)

    rate = kernel_rate(traj, steps, repeats)
    step_us = 1e6 * tile / rate
    reduce_us = 1e6 * loop_seconds("reduce", 20, tile, 20 * steps, repeats)
    update_us = 1e6 * loop_seconds("update", 20, tile, 20 * steps, repeats)
    floor_us = 6 * reduce_us + 4 * update_us
    out = {
        "tile_lanes": tile,
        "kernel_rate": rate,
        "kernel_step_us": step_us,
        "reduce_us": reduce_us,
        "update_us": update_us,
        "floor_us": floor_us,
        "floor_rate": 1e6 * tile / floor_us,
        "kernel_over_floor": step_us / floor_us,
    }
    print(f"one step of a tile of {tile} lanes: kernel {step_us:.1f} us")
    print(
        f"  its big loops alone: multiply-reduce {reduce_us:.2f} us, update {update_us:.2f} us; "
        f"6 + 4 of them: {floor_us:.1f} us ({out['floor_rate']:.3g} trajectory-steps/s), "
        f"the kernel takes {out['kernel_over_floor']:.2f}x that"
    )
    peak, core = sgemm_peak_gflops(), sgemm_core_gflops()
    both = two_processes(traj, steps, repeats)
    total = sum(both)
    out.update(
        peak_gflops=peak,
        core_peak_gflops=core,
        one_process_gflops=rate * flops / 1e9,
        two_process_rates=both,
        two_process_gflops=total * flops / 1e9,
    )
    print(
        f"one process: {rate:.3g} trajectory-steps/s, {out['one_process_gflops']:.2f} GFLOP/s = "
        f"{out['one_process_gflops'] / core:.1%} of one core's sgemm ({core:.1f} GFLOP/s)"
    )
    print(
        f"two processes at once: {both[0]:.3g} + {both[1]:.3g} = {total:.3g} trajectory-steps/s, "
        f"{out['two_process_gflops']:.2f} GFLOP/s = {out['two_process_gflops'] / peak:.1%} of "
        f"the two-core sgemm peak ({peak:.1f} GFLOP/s)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
