"""``rankjump bench``: trajectory-steps per second of the kernel beside PyTorch peers.

For each configuration, in one run:

- rankjump's kernel: the compiled stepping of every trajectory, chunk after chunk, without
  checkpoints (the work the peers do), best of ``repeats`` after a compiling warm-up;
- the whole ``simulate`` call (starts, two checkpoints with singular values, the result), whose
  extra time is reported per trajectory, and its compile time;
- the naive one-trajectory PyTorch loop and the all-trajectories-batched PyTorch version
  (:mod:`rankjump.bench.peers`; skipped with a note when torch is not installed:
  ``pip install '.[bench]'``), and the kernel's ratios to them;
- achieved GFLOP/s by the analytic count of useful arithmetic, against the sgemm peak of the
  machine (both cores) and of one core, both measured in the run;
- checkpoints: the headline's ``simulate`` with ``record_every = 100`` against the same call with
  one checkpoint (:func:`checkpoint_ratio`);
- cores: one process end to end on every core against the same process pinned to one core with
  ``taskset`` (:func:`cores_ratio`);
- rare: ``rankjump rare`` by each method against plain Monte Carlo on one cell, in
  trajectory-steps per second and in seconds to a 30% relative error
  (:mod:`rankjump.bench.rare`).

The kernel and ``simulate`` use every CPU device (one per core, :mod:`rankjump.runtime.cores`); the
batched peer uses as many torch threads, the naive peer one (a 20 x 20 product gains nothing
from more).
"""

from __future__ import annotations

import json

from rankjump.bench.cases import BenchCase, bench_config, cases, kernel_seconds, simulate_seconds
from rankjump.bench.flops import flops_per_step, sgemm_core_gflops, sgemm_peak_gflops
from rankjump.bench.rare import rare_line, rare_ratio
from rankjump.bench.side_by_side import checkpoint_line, checkpoint_ratio, cores_line, cores_ratio
from rankjump.runtime.precision import with_float64

__all__ = ["main_bench", "run_bench"]


@with_float64
def run_bench(
    quick: bool = False,
    repeats: int = 3,
    peers: bool = True,
    selected: list[BenchCase] | None = None,
    log=print,
    side_by_side: bool = True,
) -> dict:
    """Run the benchmark; returns the JSON-ready result (``headline`` plus one entry a case)."""
    try:
        import torch  # noqa: F401

        from rankjump.bench import peers as peer_mod
    except ImportError:
        peers = False
        log("torch is not installed: PyTorch peers skipped (pip install '.[bench]')")
    n_peak = 512 if quick else 1024
    peak = sgemm_peak_gflops(n=n_peak)
    core = sgemm_core_gflops(n=n_peak) if peers else float("nan")
    out = {"peak_gflops": peak, "core_peak_gflops": core, "entries": {}}
    for case in selected or cases(quick):
        heavy = case.d >= 50 or case.batch >= 64 or case.kind == "gd"
        traj = 256 if heavy else (1024 if quick else 2048)
        steps = 200 if heavy else (500 if quick else 2000)
        cfg = bench_config(case, traj, steps)
        sim_s, compile_s = simulate_seconds(cfg, repeats)
        kernel_s = kernel_seconds(cfg, repeats)
        rate = traj * steps / kernel_s
        gflops = rate * flops_per_step(cfg) / 1e9
        entry = {
            "rankjump": rate,
            "simulate": traj * steps / sim_s,
            "overhead_us_per_traj": 1e6 * max(sim_s - kernel_s, 0.0) / traj,
            "compile_s": compile_s,
            "gflops": gflops,
            "peak_gflops": peak,
            "peak_fraction": gflops / peak,
            "core_peak_fraction": gflops / core,
            "trajectories": traj,
            "steps": steps,
        }
        if peers:
            naive = peer_mod.torch_naive(cfg, max(50, steps // 4), repeats=repeats)
            batched = peer_mod.torch_batched(cfg, traj, max(20, steps // 10), repeats=repeats)
            entry.update(
                torch_naive=naive.trajectory_steps_per_s,
                torch_batched=batched.trajectory_steps_per_s,
                ratio_naive=rate / naive.trajectory_steps_per_s,
                ratio_batched=rate / batched.trajectory_steps_per_s,
            )
        out["entries"][case.name] = entry
        log(_row(case.name, entry))
    if "headline" in out["entries"]:
        out["headline"] = out["entries"]["headline"]
    if "headline" in out["entries"] and side_by_side:
        headline = next(c for c in selected or cases(quick) if c.name == "headline")
        traj, steps = (1024, 1000) if quick else (4096, 5000)
        out["checkpoints"] = checkpoint_ratio(bench_config(headline, traj, steps), repeats)
        log(checkpoint_line(out["checkpoints"]))
        out["cores"] = cores_ratio(4096, 5000 if quick else 20000)
        log(cores_line(out["cores"]))
        out["rare"] = rare_ratio(quick)
        log(rare_line(out["rare"]))
    return out


def _row(name: str, e: dict) -> str:
    def g(key, spec=".3g"):
        return format(e[key], spec) if key in e else "-"

    return (
        f"{name:<10} {g('rankjump'):>10} {g('simulate'):>10} {g('overhead_us_per_traj', '.0f'):>9} "
        f"{g('torch_naive'):>10} {g('torch_batched'):>10} "
        f"{g('ratio_naive', '.0f'):>8}x {g('ratio_batched', '.1f'):>7}x "
        f"{g('gflops', '.2f'):>7} {g('peak_fraction', '.1%'):>7} "
        f"{g('core_peak_fraction', '.1%'):>8}"
    )


def main_bench(quick: bool, json_path: str | None) -> int:
    """The command: a table on stdout, optionally the JSON object in a file."""
    print(
        f"{'config':<10} {'rankjump':>10} {'simulate':>10} {'extra us':>9} {'naive':>10} "
        f"{'batched':>10} {'vs naive':>9} {'vs batch':>8} {'GFLOP/s':>7} {'of peak':>7} "
        f"{'of 1 core':>8}"
    )
    result = run_bench(quick=quick)
    print(
        "trajectory-steps/s; rankjump: the kernel's steps alone (as the peers), simulate: the "
        "whole call with 2 checkpoints, extra us: its added time per trajectory"
    )
    print(
        f"sgemm peak measured in this run: {result['peak_gflops']:.1f} GFLOP/s (both cores), "
        f"{result['core_peak_gflops']:.1f} GFLOP/s (one core)"
    )
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0
