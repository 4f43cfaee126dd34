"""``rankjump bench``'s side-by-side measures: checkpoints against none, every core against one.

Each compares two runs of the same work timed one after the other in one bench run, so the
ratio, not the absolute time, is the figure (benchmarks/README.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from rankjump.bench.cases import simulate_seconds
from rankjump.bench.timing import seconds
from rankjump.config import Config

__all__ = ["checkpoint_line", "checkpoint_ratio", "cores_line", "cores_ratio"]


def checkpoint_ratio(cfg: Config, repeats: int, every: int = 100) -> dict:
    """The whole ``simulate`` call with one checkpoint at the end against the same call with a
    checkpoint every ``every`` steps, timed side by side (best of ``repeats`` each)."""
    one, _ = simulate_seconds(cfg.replace(run={"record_every": cfg.run.steps}), repeats)
    fine, _ = simulate_seconds(cfg.replace(run={"record_every": every}), repeats)
    return {"record_every": every, "one_checkpoint_s": one, "fine_s": fine, "ratio": one / fine}


_PROCESS = """
import rankjump
from rankjump.bench.cases import BenchCase, bench_config
cfg = bench_config(BenchCase("headline", 20, 4, 1), {traj}, {steps})
rankjump.simulate(cfg.replace(run={{"record_every": {every}}}), progress=False)
"""


def cores_ratio(trajectories: int, steps: int, every: int = 1000) -> dict:
    """One process end to end (start, compile, run: ``simulate`` of the headline) on every core
    it may use, against the same process pinned to one core with ``taskset``, one after the
    other; and the same two processes with ``every`` steps only (start and compile: the serial
    part), which splits each time into that part and the run. Empty when there is one core or
    no ``taskset``."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) < 2 or shutil.which("taskset") is None:
        return {}
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "RANKJUMP_CPU_DEVICES")}

    def run(prefix, n_steps):
        code = _PROCESS.format(traj=trajectories, steps=n_steps, every=every)
        return seconds(
            lambda: subprocess.run([*prefix, sys.executable, "-c", code], env=env, check=True)
        )

    pinned = ("taskset", "-c", str(cores[0]))
    out = {"cores": len(cores), "trajectories": trajectories, "steps": steps}
    out["every_core_s"], out["one_core_s"] = run((), steps), run(pinned, steps)
    out["every_core_start_s"], out["one_core_start_s"] = run((), every), run(pinned, every)
    out["ratio"] = out["one_core_s"] / out["every_core_s"]
    out["run_ratio"] = (out["one_core_s"] - out["one_core_start_s"]) / (
        out["every_core_s"] - out["every_core_start_s"]
    )
    return out


def checkpoint_line(c: dict) -> str:
    """The bench's line for :func:`checkpoint_ratio`."""
    return (
        f"checkpoints: simulate with record_every = {c['record_every']} at {c['ratio']:.2f}x the "
        f"same call with one checkpoint ({c['fine_s']:.2f} s against {c['one_checkpoint_s']:.2f} "
        "s, headline)"
    )


def cores_line(c: dict) -> str:
    """The bench's line for :func:`cores_ratio`."""
    if not c:
        return "cores: one core (or no taskset): nothing to compare"
    return (
        f"cores: one process end to end on {c['cores']} cores at {c['ratio']:.2f}x the same "
        f"process pinned to one core ({c['every_core_s']:.1f} s against {c['one_core_s']:.1f} s; "
        f"simulate of the headline, {c['trajectories']} x {c['steps']} steps); of which start "
        f"and compile {c['every_core_start_s']:.1f} s against {c['one_core_start_s']:.1f} s, "
        f"the run {c['run_ratio']:.2f}x"
    )
