"""``rare.method = "rate"``: kicks out of the basin by splitting over short windows, their
commitment, and P(T) from the rate; (slow) agreement with plain Monte Carlo where both run."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from rankjump import ConfigError, demo_config, simulate
from rankjump.cli.rare_table import format_rare, rare_to_dict
from rankjump.dynamics import TaskArrays, materialize, new_hyper, new_state
from rankjump.dynamics.entrywise import sgd_update
from rankjump.model.network import entry_sharpness
from rankjump.rare_events.grid import rare
from rankjump.rare_events.network import NetworkProcess
from rankjump.rare_events.rate import rate_cell
from rankjump.rare_events.rate_result import RATE_RUN_VARIABLES, RATE_VARIABLES, rate_variables
from rankjump.runtime.precision import with_float64
from rankjump.stats import binomial_ci

# The demo's network at eta 0.18, where kicks are frequent: small windows keep this fast.
CFG = demo_config().replace(
    optimizer={"eta": [0.18]},
    run={"steps": 20000, "record_every": 1000, "trajectories": 64},
    rare={
        "method": "rate",
        "replicas": 16,
        "kill": 2,
        "runs": 2,
        "window": 100,
        "pool": 64,
        "burn_in": 1000,
        "commit_reps": 2,
    },
)


@functools.cache
def _cell_and_calls(cfg):
    """The cell and the progress callback's calls (the callback does not change the result)."""
    calls = []
    result = rate_cell(cfg, 0.002, 0.18, jax.random.PRNGKey(0), lambda *a: calls.append(a))
    return result, calls


def _cell(cfg):
    return _cell_and_calls(cfg)[0]


def test_the_rate_result_is_consistent():
    out = _cell(CFG)
    window = CFG.rare.window
    # A run's committed-kick probability is its kick probability times committors <= 1.
    assert np.all(out.committed <= out.kicks.estimate + 1e-15)
    assert out.rate.mean == pytest.approx(out.committed.mean() / out.exposure, rel=1e-12)
    assert 0 < out.exposure <= window
    # P(T) = 1 - exp(-k E[(T - D)^+]), recomputed from the delays.
    exposure = np.average(np.maximum(CFG.run.steps - out.delays, 0), weights=out.delay_weights)
    assert out.p == pytest.approx(-math.expm1(-out.rate.mean * exposure), rel=1e-12)
    assert out.p_ci[0] <= out.p <= out.p_ci[1]
    assert 0 < out.committor <= 1 and np.all(out.delays > 0) and np.all(out.cost > 0)


def test_rare_writes_the_rate_variables():
    ds = rare(CFG, progress=False).isel(lam=0, eta=0)
    out = _cell(CFG)  # the same cell key: fold_in(PRNGKey(seed), 0) is not PRNGKey(0)
    assert ds.attrs["method"] == "rate" and ds.attrs["score"] == "smallest_layer"
    assert ds.attrs["assumptions"].startswith("a constant rate of committed kicks")
    assert ds.attrs["commit"] == "split: one AMS run per window run, score lead_mean"
    assert set(rate_variables(out)) == {*RATE_VARIABLES, *RATE_RUN_VARIABLES}
    for name in RATE_VARIABLES:
        assert np.isfinite(float(ds[name])), name
    # Per run: a run's estimate is its kick probability times its committor.
    kick, committor = ds["run_kick_p"].values, ds["run_committor"].values
    assert ds["run_kick_p"].dims == ("run",) and (kick > 0).all()
    np.testing.assert_allclose(kick * committor, ds["run_estimate"].values, rtol=1e-12)
    assert kick.mean() == pytest.approx(float(ds["kick_p"]), rel=1e-12)
    assert float(ds["rate_lo"]) <= float(ds["rate"]) <= float(ds["rate_hi"])
    assert float(ds["p_lo"]) <= float(ds["p"]) <= float(ds["p_hi"])
    # The interval on ln p is the log of the one on p, and says so.
    assert ds["log_p_lo"].attrs["long_name"].startswith("ln of the 95% t interval on p")
    with np.errstate(divide="ignore"):  # a lower end at p = 0 is -inf on ln p
        ends = np.log([float(ds["p_lo"]), float(ds["p_hi"])])
    np.testing.assert_allclose([float(ds["log_p_lo"]), float(ds["log_p_hi"])], ends, rtol=1e-12)
    assert ds["run_cost"].values.min() > 0 and out.kicks.estimate.shape == (CFG.rare.runs,)
    # `rankjump stats` shows them: eta / eta_edge, the kick probability and the committor.
    cells = ds.expand_dims(["lam", "eta"])  # the one cell as a (1, 1) grid, as stats reads it
    table = format_rare(cells).splitlines()
    assert table[0].split()[-3:] == ["eta/edge", "kick/window", "committor"]
    edge, kick, committor = (float(x) for x in table[1].split()[-3:])
    assert edge == pytest.approx(CFG.optimizer.eta[0] / float(ds["eta_edge"]), abs=0.006)
    assert kick == pytest.approx(float(ds["kick_p"]), rel=5e-3)
    assert committor == pytest.approx(float(ds["committor"]), rel=5e-3)
    zero = cells.copy(deep=True)
    zero["p"][:], zero["p_hi"][:] = 0.0, np.nan
    assert "no run found a kick that committed" in format_rare(zero).splitlines()[-1]
    cell = rare_to_dict(cells)["cells"][0]
    assert all(cell[name] == float(ds[name]) for name in RATE_VARIABLES)
    assert all(cell[name] == ds[name].values.tolist() for name in RATE_RUN_VARIABLES)
    assert cell["lo_any_law"] == pytest.approx(0.025 * float(ds["p"]), rel=1e-12)
    assert "any-law lo" in table[0] and "Markov's inequality" in format_rare(cells)


def test_a_window_that_is_not_a_multiple_of_its_stride_is_refused():
    with pytest.raises(ConfigError, match="rare.window = 101"):
        CFG.replace(rare={"window": 101})


@pytest.mark.slow
def test_the_rate_method_agrees_with_plain_monte_carlo_on_the_network():
    """eta 0.17, 20,000 steps: P about 0.027. z-test of the difference at 0.01.

    The windows are the default 2,000 steps: windows short against a collapse miss routes (with
    400-step windows and a kick at 0.3 this gave 0.0137 [0.0070, 0.0204])."""
    cfg = CFG.replace(
        optimizer={"eta": [0.17]},
        rare={"replicas": 50, "kill": 5, "runs": 8, "window": 2000, "pool": 512, "burn_in": 5000},
    )
    out = rate_cell(cfg, 0.002, 0.17, jax.random.PRNGKey(1))
    mc = simulate(cfg.replace(run={"trajectories": 4096, "chunk_size": 2048}), progress=False)
    mc = mc.isel(lam=0, eta=0)
    ok = ~mc["diverged"].values
    hits, n = int((mc["rank"].values[ok].min(axis=1) <= 2).sum()), int(ok.sum())
    p_mc = hits / n
    se_rate = out.p * out.rate.stderr / out.rate.mean
    z = (out.p - p_mc) / math.sqrt(se_rate**2 + p_mc * (1 - p_mc) / n)
    assert abs(z) < stats.norm.ppf(0.995), (out.p, out.p_ci, p_mc, binomial_ci(hits, n))


@pytest.mark.slow
def test_split_and_continued_commitment_agree_run_by_run():
    """The same kick stage (same key), its kicked states committed both ways: run m's r_m is
    unbiased for sum_j w_j c_j of its own kicked states either way, so the paired differences
    have mean 0 (t test over the runs at significance 0.01)."""
    cfg = CFG.replace(rare={"runs": 8, "replicas": 32, "kill": 4})
    key = jax.random.PRNGKey(2)
    split = rate_cell(cfg.replace(rare={"commit": "split"}), 0.002, 0.18, key)
    kept = rate_cell(cfg.replace(rare={"commit": "continue", "commit_reps": 8}), 0.002, 0.18, key)
    np.testing.assert_array_equal(split.kicks.estimate, kept.kicks.estimate)  # one kick stage
    both = split.kicks.estimate > 0
    assert both.sum() >= 6 and (kept.committed[both] > 0).sum() >= 6
    assert stats.ttest_rel(split.committed[both], kept.committed[both]).pvalue > 0.01


def test_lead_mean_and_the_basin_rule_on_kicked_states():
    """ "lead_mean" is the mean of "smallest_layer" and "layer_mean"; with ``basin`` the start
    (every layer at its start value) scores -inf, a kicked state does not."""
    out = _cell(CFG)
    kicked = jax.tree.map(lambda x: np.asarray(x)[:, -1], out.kicks.reactive.states)
    score = {
        name: NetworkProcess(CFG, 0.002, 0.18, score=name).score(kicked)
        for name in ("smallest_layer", "layer_mean", "lead_mean")
    }
    assert len(score["lead_mean"]) > 0 and np.all(score["smallest_layer"] > 0)
    np.testing.assert_allclose(
        score["lead_mean"], (score["smallest_layer"] + score["layer_mean"]) / 2, rtol=1e-6
    )
    back = NetworkProcess(CFG, 0.002, 0.18, basin=CFG.rare.basin)
    assert np.all(back.score(back.start(None, 3)) == -np.inf)
    assert np.all(back.score(kicked) > -np.inf)


@with_float64
def _best_after_draws(net, weights, draws, top):
    """Brute force of ``NetworkProcess.lookahead`` for one network: every sequence of ``draws``
    steps (the project's own SGD step, :func:`sgd_update`), each on one of the ``top`` entries
    of largest overshoot, in float64; the best progress after 1..draws of them."""
    rows, cols, y = (np.asarray(x, np.float64) for x in net.arrays)
    lam, eta = net.lam, net.eta
    task = TaskArrays(rows=jnp.asarray(rows, int), cols=jnp.asarray(cols, int), y=jnp.asarray(y))
    update = sgd_update(task, len(weights), 1, False)
    hyper = new_hyper(lam=lam, eta=eta, dtype=jnp.float64)
    span = np.log(net.s0 / net.thr)

    def progress(w):
        sv = np.array([np.linalg.svd(x, compute_uv=False)[net.target_rank] for x in w])
        return float(np.max(np.log(net.s0 / sv) / span))

    def overshoot(w, i, j, t):
        pred, h = entry_sharpness(w, int(i), int(j))
        return eta * float(h) * abs(float(pred) - t)

    def best(w, d):
        o = [overshoot(w, i, j, t) for i, j, t in zip(rows, cols, y, strict=True)]
        out = np.full(d, -np.inf)
        for e in np.argsort(o)[::-1][:top]:
            state = new_state(weights=w)
            sample = (jnp.array([e]), jnp.zeros((1, 0)))
            w1 = tuple(np.asarray(x) for x in materialize(update(sample, state, hyper)))
            here = [progress(w1)] + (list(best(w1, d - 1)) if d > 1 else [])
            out = np.maximum(out, here)
        return out

    return best(tuple(np.asarray(x, np.float64) for x in weights), draws)


@pytest.mark.parametrize("draws, top", [(1, 3), (2, 2)])
def test_lookahead_is_the_best_of_the_steps_on_the_entries_of_largest_overshoot(draws, top):
    """The window score's look-ahead against a brute force through the project's own SGD step:
    on basin states at eta 0.18 (where a draw can kick), and its entries' order of overshoot."""
    net = NetworkProcess(CFG, 0.002, 0.18)
    state = net.start(None, 3)
    state = net.advance(jax.random.split(jax.random.PRNGKey(4), 3), state, 0, 1000)
    got = net.lookahead(state, draws=draws, top=top)
    assert got.shape == (3, draws)
    for n in range(3):
        w = materialize(
            state._replace(
                weights=tuple(np.asarray(x)[n] for x in state.weights),
                scale=np.asarray(state.scale)[n],
            )
        )
        np.testing.assert_allclose(got[n], _best_after_draws(net, w, draws, top), atol=1e-5)


def test_lookahead_of_diverged_lanes_is_nan_and_leaves_the_others_alone():
    """Diverged lanes (non-finite, or past run.diverge_norm2) read NaN, as in the score."""
    net = NetworkProcess(CFG, 0.002, 0.18)
    clean = net.lookahead(net.start(None, 3))
    state = net.start(None, 3)
    weights = [np.array(w) for w in state.weights]
    weights[1][1] = np.nan
    weights[0][2] *= 1e4  # finite, but past run.diverge_norm2
    got = net.lookahead(state._replace(weights=tuple(weights)))
    assert np.all(np.isnan(got[1:])) and np.all(np.isfinite(got[0]))
    np.testing.assert_array_equal(got[0], clean[0])


def test_progress_reports_each_stage_against_all_runs():
    """The callback sees the kick stage, then the commitment; iterations count on through both,
    and within a stage the finished runs (out of rare.runs) never decrease."""
    calls = _cell_and_calls(CFG)[1]
    stages = [c[3] for c in calls]
    assert stages[0] == "kicks" and stages[-1] == "commitment"
    assert stages == sorted(stages, key=["kicks", "commitment"].index)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    for stage in ("kicks", "commitment"):
        done = [c[1] for c in calls if c[3] == stage]
        assert done == sorted(done) and 0 <= done[0] and done[-1] <= CFG.rare.runs
