"""The benchmark command's structure (figures are measured by running it, not in tests)."""

from __future__ import annotations

import math

from rankjump.bench import BenchCase, bench_config, cases, run_bench


def test_cases_cover_the_issue_configurations():
    names = [c.name for c in cases(quick=False)]
    assert names[0] == "headline"
    assert {"d=10", "d=50", "d=100", "depth=3", "depth=6", "batch=8", "batch=64", "gd"} <= set(
        names
    )
    head = cases(quick=True)[0]
    cfg = bench_config(head, 8, 10)
    assert (cfg.task.d_out, cfg.network.width, cfg.network.depth) == (20, 20, 4)
    assert cfg.optimizer.batch_size == 1 and cfg.run.dtype == "float32"
    assert cfg.task.n_observed == 120  # 30% of 400


def test_run_bench_reports_rates_and_flops():
    lines = []
    out = run_bench(
        quick=True,
        repeats=1,
        peers=False,
        selected=[BenchCase("headline", 6, 3, 1)],
        log=lines.append,
    )
    head = out["headline"]
    assert head["rankjump"] > 0 and math.isfinite(head["rankjump"])
    # The whole simulate call does the same steps plus starts and checkpoints.
    assert 0 < head["simulate"] and head["overhead_us_per_traj"] >= 0
    assert head["peak_gflops"] > 0
    # useful flops of one step at d = w = 6, L = 3, B = 1: 6 (L-2) w^2 + 6 w = 252
    assert math.isclose(head["gflops"], head["rankjump"] * 252 / 1e9, rel_tol=1e-12)
    assert lines and lines[-1].startswith("headline")
