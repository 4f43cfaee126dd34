"""Peak memory (RSS) of sweeps and single runs against trajectories and steps.

Each measurement runs in a fresh Python process and reports that process's peak resident set
size (``ru_maxrss``), so the figures do not mix. Usage:

    python benchmarks/memory.py [--quick] [--json FILE]

What it shows: a sweep's peak memory is set by its job size (``run.chunk_size`` lanes per job),
not by the number of trajectories, because jobs write their own files and the merge streams them
into the result one job at a time; ``simulate`` holds every record in memory, so it grows with
the trajectories. Neither grows with the number of steps at a fixed number of checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
[task]
d_out = 10
d_in = 10
rank = 1
observed = 0.5
singular_values = [3.0]
[network]
depth = 3
width = 10
[optimizer]
lam = [0.001]
eta = [0.05]
[run]
trajectories = {traj}
steps = {steps}
record_every = {every}
chunk_size = 512
"""

CHILD = """\
import resource, sys, time
import rankjump as rj
cfg = rj.loads_config(open(sys.argv[2]).read())
t0 = time.perf_counter()
if sys.argv[1] == "sweep":
    rj.sweep(cfg, sys.argv[3], chunks_per_job=1, progress=False)
else:
    rj.save_result(rj.simulate(cfg, progress=False), sys.argv[3])
wall = time.perf_counter() - t0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, wall)
"""


def measure(mode: str, traj: int, steps: int, every: int) -> dict:
    """Peak RSS (MiB) and wall time of one run in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "cfg.toml"
        cfg.write_text(CONFIG.format(traj=traj, steps=steps, every=every))
        out = Path(tmp) / ("sweep" if mode == "sweep" else "result.nc")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(cfg), str(out)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        rss, wall = (float(x) for x in done.stdout.split()[-2:])
    return {
        "mode": mode,
        "trajectories": traj,
        "steps": steps,
        "checkpoints": steps // every + 1,
        "peak_rss_mib": round(rss, 1),
        "wall_s": round(wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10^3 and 10^4 trajectories")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    small, large = (1_000, 10_000) if args.quick else (10_000, 100_000)
    runs = [
        ("sweep", small, 1000, 100),
        ("sweep", large, 1000, 100),
        ("simulate", small, 1000, 100),
        ("simulate", large, 1000, 100),
        ("simulate", small, 1000, 1000),
        ("simulate", small, 10000, 10000),
    ]
    rows = []
    print(f"{'mode':>9} {'traj':>8} {'steps':>7} {'ckpts':>6} {'peak RSS MiB':>13} {'wall s':>7}")
    for mode, traj, steps, every in runs:
        row = measure(mode, traj, steps, every)
        rows.append(row)
        print(
            f"{mode:>9} {traj:>8} {steps:>7} {row['checkpoints']:>6} "
            f"{row['peak_rss_mib']:>13.1f} {row['wall_s']:>7.1f}",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
