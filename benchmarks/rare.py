"""What splitting costs against plain Monte Carlo, at equal relative error, in one run.

Usage:

    python benchmarks/rare.py [--quick] [--json FILE]

The figure of merit of an unbiased estimator is its relative variance times its cost: the cost
(trajectory-steps, or replica-steps) that buys a relative variance of 1. For plain Monte Carlo over
n trajectories of T steps that is (1 - p) / p * T. For splitting it is M * Var(run) / p^2 times
the mean cost of a run. Their ratio is how many times cheaper splitting is for the same error.

Two processes:

- the +-1 random walk (``rankjump.Walk``, horizon 100, time-aware score), where p is exact: the
  cost per decade of p, and the gain over Monte Carlo from p = 1e-3 to 1e-12;
- the network of ``rankjump demo`` at eta 0.17 (P(enter B_2 within 16,000 steps) about 0.02):
  ``rankjump rare``'s estimate (``method = "ams"`` and ``"rate"``) beside ``simulate``'s over
  as many trajectory-steps, the gains, and the throughput (trajectory-steps per second) inside
  each.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import jax
import numpy as np

from rankjump import demo_config, rare, simulate
from rankjump.rare_events import Walk, ams
from rankjump.rare_events.rate import rate_cell
from rankjump.rare_events.walk import exact_probability
from rankjump.stats import binomial_ci


def merit(estimates: np.ndarray, cost_per_run: float) -> tuple[float, float]:
    """(mean, relative variance per run times cost per run) of independent run estimates."""
    mean = float(np.mean(estimates))
    return mean, float(np.var(estimates, ddof=1) / mean**2 * cost_per_run)


def walk_rows(quick: bool) -> list[dict]:
    """The walk at barriers whose exact p spans 1e-3 .. 1e-12 (horizon 100, every step)."""
    rows = []
    for barrier in (30, 44, 66) if quick else (30, 38, 44, 50, 56, 66):
        walk = Walk(barrier, horizon=100)
        exact = exact_probability(100, barrier)
        runs = 100 if quick else 400
        key = jax.random.PRNGKey(barrier)
        out = ams(walk, key, replicas=100, kill=10, runs=runs, steps=100, every=1)
        mean, splitting = merit(out.estimate, float(out.cost.mean()))
        monte_carlo = (1 - exact) / exact * 100  # relative variance * steps of one path
        rows.append(
            {
                "process": f"walk, barrier {barrier}",
                "p_exact": exact,
                "p": mean,
                "n_relvar": float(100 * np.var(out.estimate, ddof=1) / mean**2),
                "log_1_over_p": -math.log(exact),
                "cost_per_run": float(out.cost.mean()),
                "merit_splitting": splitting,
                "merit_monte_carlo": monte_carlo,
                "gain": monte_carlo / splitting,
            }
        )
    return rows


def network_row(quick: bool) -> dict:
    """rare and simulate on the demo's network at eta 0.17, 16,000 steps, side by side."""
    runs, replicas = (6, 24) if quick else (20, 50)
    cfg = demo_config().replace(
        optimizer={"eta": [0.17]},
        run={"steps": 16000, "record_every": 1000, "trajectories": 64},
        rare={"replicas": replicas, "kill": max(1, replicas // 10), "runs": runs},
    )
    rare(cfg.replace(run={"steps": 2000}, rare={"runs": 2, "replicas": 4, "kill": 1}), False)
    t0 = time.perf_counter()
    ds = rare(cfg, progress=False).isel(lam=0, eta=0)
    rare_s = time.perf_counter() - t0
    cost = ds["run_cost"].values.astype(float)
    p_split, merit_split = merit(ds["run_estimate"].values, float(cost.mean()))

    n_traj = 1 << int(np.log2(cost.sum() / cfg.run.steps))  # about the same trajectory-steps
    mc_cfg = cfg.replace(run={"trajectories": n_traj, "chunk_size": min(n_traj, 2048)})
    simulate(
        mc_cfg.replace(run={"steps": 2000, "trajectories": 64, "chunk_size": 64}), progress=False
    )
    t0 = time.perf_counter()
    mc = simulate(mc_cfg, progress=False).isel(lam=0, eta=0)
    mc_s = time.perf_counter() - t0
    ok = ~mc["diverged"].values
    hits = int((mc["rank"].values[ok].min(axis=1) <= 2).sum())
    p_mc = hits / ok.sum()
    lo, hi = binomial_ci(hits, int(ok.sum()))
    return {
        "process": "network, demo at eta 0.17, 16,000 steps",
        "p_splitting": p_split,
        "p_splitting_ci": [float(ds["p_lo"]), float(ds["p_hi"])],
        "p_monte_carlo": p_mc,
        "p_monte_carlo_ci": [float(lo), float(hi)],
        "n_relvar": float(replicas * np.var(ds["run_estimate"].values, ddof=1) / p_split**2),
        "log_1_over_p": -math.log(p_mc),
        "merit_splitting": merit_split,
        "merit_monte_carlo": (1 - p_mc) / p_mc * cfg.run.steps,
        "gain": (1 - p_mc) / p_mc * cfg.run.steps / merit_split,
        "rare_traj_steps_per_s": float(cost.sum() / rare_s),
        "simulate_traj_steps_per_s": n_traj * cfg.run.steps / mc_s,
        "extinct_runs": int(ds["run_extinct"].sum()),
    }


def rate_row(quick: bool, net: dict) -> dict:
    """The rate method on the same cell, against the Monte Carlo figures of ``net``."""
    runs = 4 if quick else 8
    cfg = demo_config().replace(
        optimizer={"eta": [0.17]},
        run={"steps": 16000, "record_every": 1000, "trajectories": 64},
        rare={"method": "rate", "runs": runs, "pool": 512, "commit_reps": 4},
    )
    t0 = time.perf_counter()
    out = rate_cell(cfg, 0.002, 0.17, jax.random.PRNGKey(0))
    seconds = time.perf_counter() - t0
    per_run = out.cost.sum() / runs
    relvar = np.var(out.committed, ddof=1) / np.mean(out.committed) ** 2
    merit_mc = net["merit_monte_carlo"]
    return {
        "process": "network, rate method, same cell",
        "p": out.p,
        "p_ci": list(out.p_ci),
        "rate": out.rate.mean,
        "committor": out.committor,
        "merit_rate": float(relvar * per_run),
        "gain": float(merit_mc / (relvar * per_run)),
        "cost": out.cost.tolist(),
        "traj_steps_per_s": float(out.cost.sum() / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (about a minute)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    rows = walk_rows(args.quick)
    print(f"{'process':<24} {'p exact':>9} {'p':>9} {'N relvar':>9} {'ln 1/p':>7} {'gain':>10}")
    for r in rows:
        print(
            f"{r['process']:<24} {r['p_exact']:>9.2e} {r['p']:>9.2e} {r['n_relvar']:>9.1f}"
            f" {r['log_1_over_p']:>7.1f} {r['gain']:>10.3g}"
        )
    decades = np.log10([r["p_exact"] for r in rows])
    costs = np.log10([r["merit_splitting"] for r in rows])
    per_decade = 10 ** np.polyfit(-decades, costs, 1)[0]
    print(f"walk: cost at equal relative error grows {per_decade:.2f}x per decade of p")
    net = network_row(args.quick)
    ratio = net["rare_traj_steps_per_s"] / net["simulate_traj_steps_per_s"]
    print(
        f"{net['process']}: splitting p = {net['p_splitting']:.3g} "
        f"[{net['p_splitting_ci'][0]:.3g}, {net['p_splitting_ci'][1]:.3g}], Monte Carlo "
        f"{net['p_monte_carlo']:.3g} [{net['p_monte_carlo_ci'][0]:.3g}, "
        f"{net['p_monte_carlo_ci'][1]:.3g}]; N relvar {net['n_relvar']:.1f} (ideal ln 1/p = "
        f"{net['log_1_over_p']:.1f}); gain over Monte Carlo {net['gain']:.2f}x; throughput "
        f"{net['rare_traj_steps_per_s']:.3g} (rare) vs {net['simulate_traj_steps_per_s']:.3g} "
        f"(simulate) traj-steps/s = {ratio:.2f}x"
    )
    rate = rate_row(args.quick, net)
    print(
        f"{rate['process']}: p = {rate['p']:.3g} [{rate['p_ci'][0]:.3g}, {rate['p_ci'][1]:.3g}]"
        f" (rate {rate['rate']:.3g} per step, committor {rate['committor']:.2f}); gain over"
        f" Monte Carlo {rate['gain']:.2f}x; {rate['traj_steps_per_s']:.3g} traj-steps/s"
    )
    if args.json:
        figures = {"walk": rows, "walk_cost_per_decade": per_decade, "network": net, "rate": rate}
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
