"""GPU check: the device is used, a GPU run agrees with CPU float64, throughput at device sizes.

    python benchmarks/gpu_check.py [--smoke]

1. Lists the devices and fails unless JAX's default backend is a GPU (``--smoke`` skips this and
   shrinks every size, to try the script on a CPU).
2. Correctness: the demo's task at eta = 0.18, the same trajectories on the GPU in float32 and on
   the host CPU in float64 (matmuls at highest precision on both). Paths are chaotic, so the check
   is statistical: the jump probability P(rank < start) of the two runs must agree by a
   two-proportion z-test at significance 0.01, and the diverged fractions likewise.
3. Throughput of the headline configuration (d = width = 20, depth 4, batch 1, float32) at 10^5
   and 10^6 trajectories, one chunk per call, against the 2e8 trajectory-steps/s target.

Prints one JSON object at the end (the figures for benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import jax
import numpy as np

import rankjump as rj
from rankjump import demo_config
from rankjump.bench.cases import BenchCase, bench_config

TARGET = 2e8  # trajectory-steps per second on an H100 at the headline configuration


def jumped(ds) -> tuple[int, int, int]:
    """(jumped below the start rank, analysed, diverged) for the single cell of ``ds``."""
    cell = rj.analyze(ds).cells[0]
    s = cell.rank_sets[cell.start_rank - 1].reached
    return s.count, s.n, cell.diverged


def z_test(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of the two-proportion z-test (pooled variance)."""
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(max(p * (1 - p) * (1 / n1 + 1 / n2), 1e-300))
    z = abs(k1 / n1 - k2 / n2) / se
    return math.erfc(z / math.sqrt(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any backend")
    args = parser.parse_args()
    print("devices:", jax.devices(), flush=True)
    if not args.smoke and jax.default_backend() != "gpu":
        print("error: JAX does not see a GPU (default backend: cpu)", file=sys.stderr)
        return 2
    out = {"device": jax.devices()[0].device_kind, "jax": jax.__version__}

    traj, steps = (64, 2000) if args.smoke else (4096, 20000)
    cfg = demo_config().replace(
        optimizer={"eta": [0.18]},
        run={"trajectories": traj, "steps": steps, "record_every": steps // 20, "chunk_size": traj},
    )
    t0 = time.perf_counter()
    accel = rj.simulate(cfg, progress=False)
    t_accel = time.perf_counter() - t0
    cpu_cfg = cfg.replace(run={"dtype": "float64", "chunk_size": min(traj, 1024)})
    t0 = time.perf_counter()
    host = rj.simulate(cpu_cfg, progress=False, devices=jax.devices("cpu"))
    t_host = time.perf_counter() - t0
    (k1, n1, d1), (k2, n2, d2) = jumped(accel), jumped(host)
    p_jump = z_test(k1, n1, k2, n2)
    p_div = z_test(d1, traj, d2, traj)
    out["correctness"] = {
        "trajectories": traj,
        "steps": steps,
        "device_float32": {"jumped": k1, "n": n1, "diverged": d1, "seconds": round(t_accel, 1)},
        "cpu_float64": {"jumped": k2, "n": n2, "diverged": d2, "seconds": round(t_host, 1)},
        "p_jump": p_jump,
        "p_diverged": p_div,
        "agree": bool(p_jump > 0.01 and p_div > 0.01),
    }
    print("correctness:", json.dumps(out["correctness"]), flush=True)

    out["throughput"] = []
    sizes = [1024, 4096] if args.smoke else [100_000, 1_000_000]
    for n in sizes:
        steps = 200 if args.smoke else 2000
        cfg = bench_config(BenchCase("headline", 20, 4, 1), n, steps).replace(run={"chunk_size": n})
        t0 = time.perf_counter()
        rj.simulate(cfg, progress=False)
        first = time.perf_counter() - t0
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            rj.simulate(cfg, progress=False)
            best = min(best, time.perf_counter() - t0)
        rate = n * steps / best
        row = {
            "trajectories": n,
            "steps": steps,
            "rate": rate,
            "fraction_of_2e8": rate / TARGET,
            "compile_s": round(first - best, 1),
        }
        if jax.default_backend() == "gpu":
            stats = jax.devices()[0].memory_stats() or {}
            row["peak_device_bytes"] = stats.get("peak_bytes_in_use")
        out["throughput"].append(row)
        print("throughput:", json.dumps(row), flush=True)
    print(json.dumps(out))
    return 0 if out["correctness"]["agree"] else 1


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
