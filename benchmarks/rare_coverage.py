"""Coverage of ``rankjump rare``'s intervals, measured against a plain Monte Carlo reference.

One rare configuration is run again and again with independent keys (``run.seed`` = 1, 2, ...);
each repeat's estimate, intervals and diagnostics go to a small JSON ledger (rewritten after each
repeat, so a run stopped midway loses at most the repeat in progress, and the next run of this
script continues). The reference is a ledger of ``benchmarks/reference.py`` for the same cell
(its P(T) at the configuration's horizon T). ``--show`` prints how often each interval covered
the reference, with an exact binomial test of that count against the nominal level, among all
repeats and among those that pass the diagnostics.

    python benchmarks/rare_coverage.py examples/rare_ams.toml \
        --reference notebooks/data/reference/lam0.002_eta0.17_T50000.json \
        --ledger notebooks/data/coverage/rare_ams_eta0.17.json --repeats 20 [--minutes 30]
    python benchmarks/rare_coverage.py --show notebooks/data/coverage/rare_ams_eta0.17.json

The reference has its own sampling error: a repeat counts as covering when its interval holds
the reference's point estimate (the summary also gives the counts for the reference interval's
two ends, which bracket what an exact reference would give).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

import rankjump as rj
from rankjump.stats import binomial_ci

sys.path.insert(0, str(Path(__file__).parent))
from reference import _write, totals  # noqa: E402  (the ledgers' writer and reader)

VERSION = 1
INTERVALS = (("t", "p_lo", "p_hi"), ("log", "log_p_lo", "log_p_hi"))


def reference_at(reference: dict, steps: int) -> dict:
    """P(enter B_target within ``steps``) of a reference ledger, with its 95% Wilson interval."""
    cfg = rj.loads_config(reference["config"])
    every = cfg.run.record_every
    if steps % every or steps // every > len(totals(reference)["cumulative"]):
        raise SystemExit(f"the reference has no checkpoint at step {steps} (every {every})")
    t = totals(reference)
    n = t["trajectories"] - t["diverged"]
    k = int(t["cumulative"][steps // every - 1])
    lo, hi = binomial_ci(k, n)
    cell = (cfg.optimizer.lam[0], cfg.optimizer.eta[0])
    return {"p": k / n, "ci": [float(lo), float(hi)], "entered": k, "n": n, "cell": cell}


def repeat(cfg, seed: int) -> dict:
    """One rare run of ``cfg`` with ``run.seed = seed``: its single cell's numbers."""
    t0 = time.perf_counter()
    ds = rj.rare(cfg.replace(run={"seed": seed}), progress=False).isel(lam=0, eta=0)
    num = {name: float(ds[name]) for name in ("p", "p_lo", "p_hi", "log_p_lo", "log_p_hi")}
    made = int(ds["run_made"].sum()) if "run_made" in ds else ds.sizes["run"]
    return {
        "seed": seed,
        **{k: (None if v != v else v) for k, v in num.items()},
        "reliable": bool(ds["reliable"]),
        "runs_effective": float(ds["runs_effective"]),
        "top_share": float(ds["top_share"]),
        "runs_made": made,
        "runs_extinct": int(ds["run_extinct"].sum()),
        "cost": int(ds["run_cost"].sum()),
        "seconds": time.perf_counter() - t0,
    }


def _covers(r: dict, name: str, lo: str, hi: str, p: float) -> bool:
    if r[lo] is None or r[hi] is None:
        return False  # no interval (p = 0 or NaN): it covers nothing
    low, high = (np.exp(r[lo]), np.exp(r[hi])) if name == "log" else (r[lo], r[hi])
    return bool(low <= p <= high)


def summary(ledger: dict) -> dict:
    """Coverage counts per interval, among all repeats and among the reliable ones, with exact
    binomial tests against the nominal level (one-sided: coverage below it)."""
    ref, level = ledger["reference"], ledger["level"]
    repeats = ledger["repeats"]
    out = {"reference": ref, "repeats": len(repeats), "level": level, "coverage": {}}
    for subset, rows in (("all", repeats), ("reliable", [r for r in repeats if r["reliable"]])):
        for name, lo, hi in INTERVALS:
            n = len(rows)
            k = sum(_covers(r, name, lo, hi, ref["p"]) for r in rows)
            ends = [sum(_covers(r, name, lo, hi, q) for r in rows) for q in ref["ci"]]
            test = stats.binomtest(k, n, level, alternative="less") if n else None
            cp = stats.binomtest(k, n).proportion_ci(level) if n else None
            out["coverage"][f"{name}, {subset}"] = {
                "covered": k,
                "of": n,
                "at_reference_ends": ends,
                "exact_ci": [cp.low, cp.high] if cp else None,
                "p_value_below_nominal": test.pvalue if test else None,
            }
    ps = np.array([r["p"] for r in repeats if r["p"] is not None])
    out["estimates"] = {
        "mean_over_repeats": float(ps.mean()) if ps.size else None,
        "ratio_to_reference": float(ps.mean() / ref["p"]) if ps.size else None,
        "median_ratio": float(np.median(ps) / ref["p"]) if ps.size else None,
        "seconds_per_repeat": float(np.mean([r["seconds"] for r in repeats])),
    }
    return out


def show(ledger: dict) -> str:
    s = summary(ledger)
    ref = s["reference"]
    lam, eta = ref["cell"]
    lines = [
        f"lam {lam:g}, eta {eta:g}, T = {ledger['steps']}: reference P = {ref['p']:.4g} "
        f"[{ref['ci'][0]:.4g}, {ref['ci'][1]:.4g}] ({ref['entered']} of {ref['n']})",
        f"{s['repeats']} repeats; mean estimate / reference = "
        f"{s['estimates']['ratio_to_reference']:.3f}, median / reference = "
        f"{s['estimates']['median_ratio']:.3f}; {s['estimates']['seconds_per_repeat']:.0f} s each",
        f"{'interval, repeats':>20} {'covered':>9} {'at ref ends':>12} "
        + format(f"exact {ledger['level']:.0%} CI", ">13")
        + f" {'p (below nominal)':>18}",
    ]
    for key, c in s["coverage"].items():
        ci, ends = c["exact_ci"], "/".join(map(str, c["at_reference_ends"]))
        lines.append(
            f"{key:>20} {c['covered']:>4}/{c['of']:<4} {ends:>12}"
            + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f" {'-':>12}")
            + (f" {c['p_value_below_nominal']:>18.3g}" if ci else "")
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", metavar="RARE.toml")
    parser.add_argument("--reference", metavar="LEDGER.json")
    parser.add_argument("--ledger", metavar="FILE.json")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=float("inf"))
    parser.add_argument("--show", metavar="FILE.json", help="print a ledger's coverage and stop")
    args = parser.parse_args(argv)
    if args.show:
        print(show(json.loads(Path(args.show).read_text())))
        return 0
    if not (args.config and args.reference and args.ledger):
        parser.error("RARE.toml, --reference and --ledger are needed (or --show FILE.json)")
    cfg = rj.load_config(args.config)
    path = Path(args.ledger)
    path.parent.mkdir(parents=True, exist_ok=True)
    reference = reference_at(json.loads(Path(args.reference).read_text()), cfg.run.steps)
    toml = rj.config_to_toml(cfg)
    ledger = (
        json.loads(path.read_text())
        if path.exists()
        else {"version": VERSION, "config": toml, "steps": cfg.run.steps, "repeats": []}
    )
    if rj.loads_config(ledger["config"]) != cfg:  # fields added since count at their defaults
        raise SystemExit(f"{path}: a ledger of another configuration")
    ledger["reference"], ledger["level"] = reference, 0.95  # the reference as it now stands
    if ledger["repeats"]:
        _write(path, ledger)
    start = time.monotonic()
    done = {r["seed"] for r in ledger["repeats"]}
    for seed in range(1, args.repeats + 1):
        if seed in done:
            continue
        if (time.monotonic() - start) / 60 > args.minutes:
            break
        ledger["repeats"].append(repeat(cfg, seed))
        _write(path, ledger)
        r = ledger["repeats"][-1]
        print(
            f"seed {seed}: p = {r['p']:.4g} [{r['p_lo']}, {r['p_hi']}], reliable {r['reliable']},"
            f" {r['runs_made']} runs, {r['seconds']:.0f} s",
            flush=True,
        )
    if ledger["repeats"]:
        print(show(ledger))
    return 0


if __name__ == "__main__":
    sys.exit(main())
