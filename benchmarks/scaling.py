"""Throughput of the SGD kernel against the number of trajectories and against d.

    python benchmarks/scaling.py [--quick] [--out DIR]

For each size, the whole ``simulate`` call is timed (best of repeats after a warm-up call that
compiles; two checkpoints, whose singular values weigh on the shorter runs), at the headline
configuration of ``rankjump bench`` (d_out = d_in = width = 20, depth 4, batch 1, float32, 30%
observed) unless d varies. Writes ``scaling.json`` and ``scaling.png`` to DIR (default:
benchmarks/); ``--replot`` redraws the figure from the json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import jax

from rankjump.bench.cases import BenchCase, bench_config, simulate_seconds


def rate(case: BenchCase, trajectories: int, steps: int, repeats: int) -> dict:
    """Trajectory-steps per second of one configuration (``rankjump bench``'s timing)."""
    seconds, compile_s = simulate_seconds(bench_config(case, trajectories, steps), repeats)
    per_second = trajectories * steps / seconds
    return {
        "d": case.d,
        "trajectories": trajectories,
        "steps": steps,
        "compile_s": max(compile_s, 0.0),
        "rate": per_second,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes, fewer steps")
    parser.add_argument("--out", default=str(Path(__file__).parent), help="output folder")
    parser.add_argument("--replot", action="store_true", help="redraw scaling.png from the json")
    args = parser.parse_args()
    out = Path(args.out)
    if args.replot:
        saved = json.loads((out / "scaling.json").read_text())
        plot({k: saved[k] for k in ("trajectories", "d")}, saved["machine"], out)
        return 0
    budget = 2e6 if args.quick else 2e7  # trajectory-steps per timed call
    trajs = [1, 10, 100, 1000, 10_000] + ([] if args.quick else [100_000])
    ds = [10, 20, 50] if args.quick else [10, 20, 50, 100]
    rows = {"trajectories": [], "d": []}
    print(f"{'sweep':>12} {'value':>8} {'steps':>7} {'traj-steps/s':>13} {'compile s':>10}")
    for n in trajs:
        steps = int(max(1000, min(20_000, budget // n)))
        r = rate(BenchCase("headline", 20, 4, 1), n, steps, repeats=2)
        rows["trajectories"].append(r)
        print(f"{'trajectories':>12} {n:>8} {steps:>7} {r['rate']:>13.3g} {r['compile_s']:>10.1f}")
    for d in ds:
        n = 1024
        steps = int(max(100, budget // n // (d / 20) ** 2))
        r = rate(BenchCase(f"d={d}", d, 4, 1), n, steps, repeats=2)
        rows["d"].append(r)
        print(f"{'d':>12} {d:>8} {steps:>7} {r['rate']:>13.3g} {r['compile_s']:>10.1f}")
    meta = {
        "platform": platform.platform(),
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
    }
    (out / "scaling.json").write_text(json.dumps({"machine": meta, **rows}, indent=1))
    plot(rows, meta, out)
    return 0


def plot(rows: dict, meta: dict, out: Path) -> None:
    """scaling.png: throughput against trajectories (steps per run marked) and against d."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    t = rows["trajectories"]
    a.loglog([r["trajectories"] for r in t], [r["rate"] for r in t], "o-")
    for r in t:
        a.annotate(
            f"{r['steps']} steps",
            (r["trajectories"], r["rate"]),
            fontsize=7,
            textcoords="offset points",
            xytext=(4, -10),
        )
    a.set(
        xlabel="trajectories per run",
        ylabel="trajectory-steps per second",
        title="d = width = 20, depth 4, batch 1",
    )
    dd = rows["d"]
    b.loglog([r["d"] for r in dd], [r["rate"] for r in dd], "o-")
    b.set(
        xlabel="d = d_out = d_in = width",
        ylabel="trajectory-steps per second",
        title="1024 trajectories, depth 4, batch 1",
    )
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        "rankjump: whole simulate call (2 checkpoints with singular values), float32, "
        f"{meta['device']} ({meta['platform']})",
        fontsize=9,
    )
    fig.savefig(out / "scaling.png", dpi=90)
    print(f"wrote {out / 'scaling.json'} and {out / 'scaling.png'}")


if __name__ == "__main__":
    sys.exit(main())
