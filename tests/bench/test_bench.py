"""The benchmark command's structure (figures are measured by running it, not in tests), its flop
counts against steps whose arithmetic is counted as they run, and its timing rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import np_entry_grads, np_product, small_config

from rankjump.bench.cases import BenchCase, bench_config, cases
from rankjump.bench.flops import flops_per_step
from rankjump.bench.report import run_bench
from rankjump.bench.side_by_side import checkpoint_ratio, cores_ratio
from rankjump.bench.timing import best_time
from rankjump.model.network import layer_shapes

LAM, ETA = 0.05, 0.1


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


# ------------------------------------------------------------------ steps that count their flops


class _Tally:
    """NumPy products that add up their arithmetic: a multiply-add is 2 flops."""

    def __init__(self):
        self.flops = 0

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """a @ b (matrix or vector a, matrix or vector b): 2 flops per multiply-add."""
        self.flops += 2 * a.size * (b.shape[1] if b.ndim == 2 else 1)
        return a @ b

    def add_outer(self, w: np.ndarray, c: float, u: np.ndarray, v: np.ndarray) -> None:
        """w += c u v^T in place: one multiply-add per entry (c u is one scale of u)."""
        self.flops += 2 * w.size
        w += np.outer(c * u, v)


def _entry_sgd_step(ws, rows, cols, y, batch, lam, eta, tally):
    """One entry-wise SGD step that never forms A, tallying what it computes; the decay
    (1 - 2 eta lam) is one scale per network and is not tallied."""
    depth = len(ws)
    updates = []
    for k in batch:  # every vector from the weights before the step
        i, j = rows[k], cols[k]
        b = [ws[0][:, j]] if depth > 1 else []  # inputs of layers 2 .. L: a gather, then products
        for w in ws[1:-1]:
            b.append(tally.mul(w, b[-1]))
        a = [ws[-1][i, :]] if depth > 1 else []  # backward vectors of layers L-1 .. 1
        for w in ws[-2:0:-1]:
            a.append(tally.mul(w.T, a[-1]))
        pred = tally.mul(a[0], b[-1]) if depth > 1 else ws[0][i, j]
        updates.append((i, j, -2.0 * eta * (pred - y[k]) / len(batch), a[::-1], b))
    new = [(1.0 - 2.0 * eta * lam) * w for w in ws]
    for i, j, c, a, b in updates:
        if depth == 1:
            tally.flops += 2
            new[0][i, j] += c
            continue
        tally.add_outer(new[0][:, j : j + 1], c, a[0], np.ones(1))  # W_1's column j
        for w, u, v in zip(new[1:-1], a[1:], b[:-1], strict=True):
            tally.add_outer(w, c, u, v)
        tally.add_outer(new[-1][i : i + 1, :], c, np.ones(1), b[-1])  # W_L's row i
    return new


def _gd_step(ws, rows, cols, y, lam, eta, tally):
    """One full-batch GD step through A = W_L ... W_1, as autograd takes it, tallied."""
    chain = [ws[0]]  # P_1 = W_1, P_l = W_l P_{l-1}
    for w in ws[1:]:
        chain.append(tally.mul(w, chain[-1]))
    residual = np.zeros_like(chain[-1])
    residual[rows, cols] = chain[-1][rows, cols] - y
    tally.flops += 2 * len(y)  # the subtraction and the scale by 2 / N
    g = residual * (2.0 / len(y))
    grads = [None] * len(ws)
    for l in range(len(ws) - 1, 0, -1):
        grads[l] = tally.mul(g, chain[l - 1].T)
        g = tally.mul(ws[l].T, g)
    grads[0] = g
    tally.flops += 3 * sum(w.size for w in ws)  # scale, multiply and subtract per parameter
    return [(1.0 - 2.0 * eta * lam) * w - eta * gw for w, gw in zip(ws, grads, strict=True)]


def _problem(rng, d_out, d_in, width, depth, n_obs=6):
    ws = [rng.standard_normal(s) / math.sqrt(s[1]) for s in layer_shapes(d_out, d_in, width, depth)]
    flat = rng.choice(d_out * d_in, size=n_obs, replace=False)
    rows, cols = np.divmod(flat, d_in)
    return ws, rows, cols, rng.standard_normal(n_obs)


def _reference_step(ws, rows, cols, y, batch, lam, eta):
    """docs/theory.md's step from explicit products of the weights (conftest)."""
    a = np_product(ws)
    grads = [np.zeros_like(w) for w in ws]
    for k in batch:
        r = a[rows[k], cols[k]] - y[k]
        for g, d in zip(grads, np_entry_grads(ws, rows[k], cols[k]), strict=True):
            g += r * d
    coef = 2.0 * eta / len(batch)
    return [(1.0 - 2.0 * eta * lam) * w - coef * g for w, g in zip(ws, grads, strict=True)]


def _counted_flops(kind, d_out, d_in, width, depth, batch, rng):
    """Flops one step of `kind` takes, tallied while it runs; the step is checked exact."""
    ws, rows, cols, y = _problem(rng, d_out, d_in, width, depth)
    tally = _Tally()
    if kind == "gd":
        batch_idx = np.arange(len(y))
        got = _gd_step(ws, rows, cols, y, LAM, ETA, tally)
    else:
        batch_idx = rng.integers(0, len(y), batch)
        got = _entry_sgd_step(ws, rows, cols, y, batch_idx, LAM, ETA, tally)
    for g, w in zip(got, _reference_step(ws, rows, cols, y, batch_idx, LAM, ETA), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    return tally.flops


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", ["sgd", "gd"])
def test_flops_per_step_equal_the_counted_steps(np_rng, kind, depth):
    # d_out, d_in and width all differ, so a count that swaps them is caught.
    batch = 3
    cfg = small_config(
        task={"d_out": 3, "d_in": 5, "observed": 0.4},
        network={"width": 4, "depth": depth},
        optimizer={"kind": kind, "batch_size": batch},
    )
    assert cfg.task.n_observed == 6  # the count's N, the counted steps' observed entries
    assert flops_per_step(cfg) == _counted_flops(kind, 3, 5, 4, depth, batch, np_rng)


def test_run_bench_reports_rates_and_flops(np_rng):
    lines = []
    out = run_bench(
        quick=True,
        repeats=1,
        peers=False,
        selected=[BenchCase("headline", 6, 3, 1)],
        log=lines.append,
        side_by_side=False,  # checkpoint_ratio below; cores_ratio in the slow test
    )
    head = out["headline"]
    assert head["rankjump"] > 0 and math.isfinite(head["rankjump"])
    # The whole simulate call does the same steps plus starts and checkpoints.
    assert 0 < head["simulate"] and head["overhead_us_per_traj"] >= 0
    assert head["peak_gflops"] > 0
    # GFLOP/s: the kernel's rate times the arithmetic of one step at d = w = 6, L = 3, B = 1,
    # as an entry-wise step that runs takes it.
    counted = _counted_flops("sgd", 6, 6, 6, 3, 1, np_rng)
    assert math.isclose(head["gflops"], head["rankjump"] * counted / 1e9, rel_tol=1e-12)
    assert lines and lines[-1].startswith("headline")


@pytest.mark.slow
def test_checkpoint_ratio_times_both_calls():
    cfg = bench_config(BenchCase("small", 6, 3, 1), 16, 200)
    out = checkpoint_ratio(cfg, repeats=1, every=50)
    assert out["record_every"] == 50
    assert out["one_checkpoint_s"] > 0 and out["fine_s"] > 0
    assert math.isclose(out["ratio"], out["one_checkpoint_s"] / out["fine_s"])


@pytest.mark.slow
def test_cores_ratio_runs_both_processes():
    out = cores_ratio(64, 200, every=100)
    if not out:
        pytest.skip("one core or no taskset")
    assert out["cores"] >= 2
    for key in ("every_core_s", "one_core_s", "every_core_start_s", "one_core_start_s"):
        assert out[key] > 0
    assert math.isclose(out["ratio"], out["one_core_s"] / out["every_core_s"])


# ------------------------------------------------------------------ timing


def test_best_time_is_the_fastest_timed_run_after_a_warm_up():
    # A scripted clock: each run takes the next duration, each reset a long time.
    now = [0.0]
    durations = iter([0.5, 3.0, 1.0, 2.0])  # the warm-up, then three timed runs
    calls = []

    def reset():
        calls.append("reset")
        now[0] += 100.0

    def run():
        calls.append("run")
        now[0] += next(durations)

    assert best_time(reset, run, 3, clock=lambda: now[0]) == 1.0
    assert calls == ["reset", "run"] * 4
    with pytest.raises(ValueError, match="repeats"):
        best_time(reset, run, 0)


def test_the_rare_line_compares_each_method_with_plain_monte_carlo(monkeypatch):
    """Each method's rate is its runs' cost over its wall time, its seconds to 30% follow from
    its runs' relative variance, plain Monte Carlo's from its p and the simulate rate measured
    in the same run; the line says so, and names an unreliable method. (``rare`` and the
    simulate rate are stubbed with known numbers; the slow test below runs them.)"""
    import xarray as xr

    from rankjump import rare_events
    from rankjump.bench import rare as module

    runs = np.array([1e-3, 3e-3, 2e-3])
    cell = xr.Dataset(
        {
            "p": ((), runs.mean()),
            "run_estimate": (("run",), runs),
            "run_cost": (("run",), [4e6] * 3),
        }
    )
    monkeypatch.setattr(rare_events, "rare", lambda cfg, progress: cell.expand_dims(["lam", "eta"]))
    monkeypatch.setattr(module, "_simulate_rate", lambda cfg: 1e7)
    clock = iter(np.arange(0.0, 200.0, 6.0))  # each timed call lasts 6 s
    monkeypatch.setattr(module.time, "perf_counter", lambda: next(clock))
    out = module.rare_ratio(quick=True)
    steps = module.rare_case(True).run.steps
    for method in ("ams", "rate", "flux"):
        m = out[method]
        assert m["runs"] == 3 and m["seconds"] == 6.0
        assert m["trajectory_steps_per_s"] == pytest.approx(1.2e7 / 6)
        assert m["ratio_to_simulate"] == pytest.approx(1.2e7 / 6 / 1e7)
        relvar = runs.var(ddof=1) / runs.mean() ** 2
        assert m["seconds_to_30pct"] == pytest.approx(6 / 3 * relvar / 0.09)
        mc = (1 - 2e-3) * steps / (2e-3 * 0.09) / 1e7
        assert m["simulate_seconds_to_30pct"] == pytest.approx(mc)
        assert m["gain_seconds"] == pytest.approx(mc / m["seconds_to_30pct"])
        assert m["gain_floor_steps"] == pytest.approx(steps / (2e-3 * 1.2e7))
        assert not m["reliable"] and m["effective_runs"] == pytest.approx(36 / 14)
    text = module.rare_line(out)
    assert "ams:" in text and "rate:" in text and "flux:" in text
    assert "unreliable (2.6 effective runs)" in text
    assert "trajectory-steps/s" in text and "to 30% relative error 5.56 s" in text


@pytest.mark.slow
def test_the_rare_line_runs_every_method(monkeypatch):
    """The line end to end on a tiny cell."""
    from rankjump import demo_config
    from rankjump.bench import rare as module

    tiny = demo_config().replace(
        optimizer={"eta": [0.19]},
        run={"steps": 2000, "record_every": 500, "trajectories": 1024},
        rare={
            "replicas": 8,
            "kill": 1,
            "runs": 3,
            "window": 40,
            "pool": 8,
            "burn_in": 0,
            "commit_steps": 500,
            "paths": 64,
        },
    )
    monkeypatch.setattr(module, "rare_case", lambda quick: tiny)
    out = module.rare_ratio(quick=True)
    assert out["simulate_trajectory_steps_per_s"] > 0
    for method in ("ams", "rate", "flux"):
        assert out[method]["runs"] == 3 and out[method]["trajectory_steps_per_s"] > 0
    assert "unreliable" in module.rare_line(out)
