"""``rankjump bench``'s rare line: the splitting methods against plain Monte Carlo on one cell.

On one cell of the demo's setting, timed side by side in one run (each method warmed up first,
so compiling is not counted):

- ``simulate`` at ``record_every = 1000``: plain Monte Carlo's trajectory-steps per second;
- ``rankjump rare`` by each method (``ams`` with the configured score, ``rate`` with small
  windows, ``flux`` looking for kicks every 500 steps): trajectory-steps per second counted from
  the runs' own costs, all their work included (scores, look-ahead, cloning, the host's
  bookkeeping), and the wall-clock seconds it would take to a 30% relative error,
  (wall / M) x relvar / 0.09 from the runs' relative variance relvar;
- plain Monte Carlo's seconds to the same error at the method's p,
  (1 - p) T / (p 0.09) / its rate, and the floor T / (p x cost) that any unbiased estimator's
  gain in trajectory-steps reaches.

A method whose runs fail the diagnostics (:mod:`rankjump.stats.diagnostics`) gets its figures
with the word "unreliable": its relative variance, hence its time to 30%, is understated.
"""

from __future__ import annotations

import math
import time

import numpy as np

from rankjump.config import Config, demo_config
from rankjump.runtime.precision import with_float64
from rankjump.stats.diagnostics import diagnose

__all__ = ["rare_case", "rare_line", "rare_ratio"]

TARGET_REL = 0.3  # the relative error the seconds are quoted at
METHODS = ("ams", "rate", "flux")
FLUX_LOOK = 500  # the flux method's run.record_every (where it looks for kicks)


def rare_case(quick: bool) -> Config:
    """The cell: the demo's minimum at eta 0.16, T = 20,000 (P near 1e-3); small rate windows."""
    runs = 4 if quick else 8
    return demo_config().replace(
        optimizer={"eta": [0.16]},
        run={"steps": 20000, "record_every": 2000, "trajectories": 4096 if quick else 16384},
        rare={
            "replicas": 50 if quick else 100,
            "kill": 5 if quick else 10,
            "runs": runs,
            "window": 200,
            "pool": 64 if quick else 256,
            "burn_in": 1000,
            "commit_steps": 2000 if quick else 20000,
            "paths": 1024 if quick else 4096,
        },
    )


def _simulate_rate(cfg: Config) -> float:
    from rankjump.simulation import simulate

    plain = cfg.replace(run={"record_every": 1000})
    simulate(plain, progress=False)  # compiles: the timed call below runs the same programs
    t0 = time.perf_counter()
    simulate(plain, progress=False)
    return plain.run.trajectories * plain.run.steps / (time.perf_counter() - t0)


def _method(cfg: Config, method: str, mc_rate: float) -> dict:
    from rankjump.rare_events import rare

    cell = cfg.replace(rare={"method": method})
    if method == "flux":  # kicks looked at every FLUX_LOOK steps
        cell = cell.replace(run={"record_every": FLUX_LOOK})
    rare(cell, progress=False)  # compiles: the timed call below runs the same shapes
    t0 = time.perf_counter()
    ds = rare(cell, progress=False).isel(lam=0, eta=0)
    wall = time.perf_counter() - t0
    runs = ds["run_estimate"].values
    cost = float(ds["run_cost"].sum())
    p, steps = float(ds["p"]), cfg.run.steps
    d = diagnose(runs, cfg.rare.replicas)
    relvar = d.relvar_n / cfg.rare.replicas
    to_target = wall / len(runs) * relvar / TARGET_REL**2 if p > 0 else math.nan
    mc = (1 - p) * steps / (p * TARGET_REL**2) / mc_rate if p > 0 else math.nan
    return {
        "p": p,
        "trajectory_steps_per_s": cost / wall,
        "ratio_to_simulate": cost / wall / mc_rate,
        "seconds": wall,
        "runs": len(runs),
        "reliable": d.reliable,
        "effective_runs": d.effective_runs,
        "seconds_to_30pct": to_target,
        "simulate_seconds_to_30pct": mc,
        "gain_seconds": mc / to_target if to_target > 0 else math.nan,
        "gain_floor_steps": steps / (p * cost) if p > 0 else math.nan,
    }


@with_float64
def rare_ratio(quick: bool = False) -> dict:
    """The rare line's numbers (module docstring), for every method."""
    cfg = rare_case(quick)
    mc_rate = _simulate_rate(cfg)
    out = {"cell": {"lam": cfg.optimizer.lam[0], "eta": cfg.optimizer.eta[0]}}
    out["simulate_trajectory_steps_per_s"] = mc_rate
    for method in METHODS:
        out[method] = _method(cfg, method, mc_rate)
    return out


def rare_line(r: dict) -> str:
    """The bench's lines for :func:`rare_ratio`."""
    cell, rate = r["cell"], r["simulate_trajectory_steps_per_s"]
    lines = [
        f"rare (lam {cell['lam']:g}, eta {cell['eta']:g}, T 20000): simulate at record_every "
        f"1000 runs {rate:.3g} trajectory-steps/s"
    ]
    for method in (m for m in METHODS if m in r):
        m = r[method]
        word = "" if m["reliable"] else f", unreliable ({m['effective_runs']:.2g} effective runs)"
        lines.append(
            f"  {method}: {m['trajectory_steps_per_s']:.3g} trajectory-steps/s "
            f"({m['ratio_to_simulate']:.2g}x simulate), p = {m['p']:.2g}; to 30% relative error "
            f"{_s(m['seconds_to_30pct'])} against plain Monte Carlo's "
            f"{_s(m['simulate_seconds_to_30pct'])} ({m['gain_seconds']:.2g}x; the floor any "
            f"estimator reaches in trajectory-steps: {m['gain_floor_steps']:.2g}x){word}"
        )
    return "\n".join(lines)


def _s(seconds: float) -> str:
    return "-" if not np.isfinite(seconds) else f"{seconds:.3g} s"
