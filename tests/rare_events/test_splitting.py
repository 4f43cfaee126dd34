"""Tests of the generalized AMS engine (rankjump.rare_events.splitting) on the +-1 walk
(rankjump.rare_events.walk).

Statistical tests use fixed keys and state their significance: how often each would fail for a
fresh key if the code were right. Shapes are shared between tests so that jit compiles few
programs: checkpoints every 4 steps with M N <= 2048 lanes, or every step with M N <= 16384.
"""

from __future__ import annotations

import functools
import itertools
import math
from fractions import Fraction
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from rankjump.rare_events.splitting import ams, kill_rule
from rankjump.rare_events.walk import Walk, exact_probability
from rankjump.stats.intervals import markov_lower, summarize

KEY = jax.random.PRNGKey(20240601)
SMALL = dict(replicas=32, kill=3, runs=32, steps=40, every=4)  # the shared 32 x 32 shape


class Clock(NamedTuple):
    """A deterministic process: every replica's score is scale * (steps done)."""

    target: float
    scale: float = 1.0

    def start(self, key, n):
        return np.zeros(n)

    def advance(self, keys, state, step0, n_steps):
        return state + n_steps

    def score(self, state):
        return self.scale * state


class Recording(NamedTuple):
    """Wraps a process; records each advance call as (lanes, distinct keys, step0, n_steps, ok).

    ok: every lane's WalkState.step equals step0, i.e. it restarts from its stored checkpoint.
    """

    inner: Walk
    calls: list

    @property
    def target(self):
        return self.inner.target

    def start(self, key, n):
        return self.inner.start(key, n)

    def advance(self, keys, state, step0, n_steps):
        keys = np.asarray(keys)
        ok = bool(np.all(np.asarray(state.step) == step0))
        self.calls.append((len(keys), len(np.unique(keys, axis=0)), step0, n_steps, ok))
        return self.inner.advance(keys, state, step0, n_steps)

    def score(self, state):
        return self.inner.score(state)


def counted_probability(steps: int, target: int, every: int) -> Fraction:
    """P(max of S over checkpoints >= target) by counting paths with Python integers."""
    counts, hit = {0: 1}, 0
    for n in range(1, steps + 1):
        new: dict[int, int] = {}
        for x, c in counts.items():
            for y in (x - 1, x + 1):
                new[y] = new.get(y, 0) + c
        counts = new
        if n % every == 0:
            hit += sum(c for x, c in counts.items() if x >= target) * 2 ** (steps - n)
            counts = {x: c for x, c in counts.items() if x < target}
    return Fraction(hit, 2**steps)


def ams_law(steps: int, replicas: int, kill: int, target: int) -> dict[float, float]:
    """The exact law of one run's p_hat on the walk (every = 1), by recursion on the algorithm.

    A configuration is the sorted tuple of the N paths; each killed replica independently clones
    a uniform survivor up to its first step above z and continues with a uniform tail.
    """

    @functools.cache
    def law(paths):
        sums = [np.cumsum(p) for p in paths]
        levels = [int(s.max()) for s in sums]
        z = sorted(levels)[kill - 1]
        if z >= target:
            return {sum(m >= target for m in levels) / replicas: 1.0}
        alive = [(p, s) for p, s, m in zip(paths, sums, levels, strict=True) if m > z]
        if not alive:
            return {0.0: 1.0}
        clones = []
        for p, s in alive:
            head = p[: int(np.argmax(s > z)) + 1]
            for tail in itertools.product((-1, 1), repeat=steps - len(head)):
                clones.append((head + tail, 1.0 / len(alive) / 2 ** len(tail)))
        out: dict[float, float] = {}
        for combo in itertools.product(clones, repeat=replicas - len(alive)):
            weight = math.prod(c[1] for c in combo)
            new = tuple(sorted([p for p, _ in alive] + [c[0] for c in combo]))
            for v, pv in law(new).items():
                key = round(v * len(alive) / replicas, 12)
                out[key] = out.get(key, 0.0) + weight * pv
        return out

    total: dict[float, float] = {}
    walks = list(itertools.product((-1, 1), repeat=steps))
    for paths in itertools.product(walks, repeat=replicas):
        for v, pv in law(tuple(sorted(paths))).items():
            total[round(v, 12)] = total.get(round(v, 12), 0.0) + pv / len(walks) ** replicas
    return total


@pytest.fixture(scope="module")
def plain():
    """32 runs of 32 replicas on the plain walk to S >= 12 in 40 steps, checkpoints every 4."""
    process = Recording(Walk(12), [])
    return process, ams(process, KEY, **SMALL)


def test_exact_probability_counts_paths():
    for a in (1, 10, 30, 44, 56, 66, 80, 100):
        exact = float(counted_probability(100, a, 1))
        assert exact_probability(100, a) == pytest.approx(exact, rel=1e-12)
    for every in (2, 4, 5):
        for a in (10, 30, 66):
            exact = float(counted_probability(100, a, every))
            assert exact_probability(100, a, every) == pytest.approx(exact, rel=1e-12)
    assert exact_probability(100, 101) == 0.0
    assert exact_probability(100, 65.5) == exact_probability(100, 66)
    for steps, a, every in ((12, 3, 3), (12, 4, 2), (12, 5, 1)):  # brute force
        paths = np.array(list(itertools.product((-1, 1), repeat=steps)))
        at = np.cumsum(paths, axis=1)[:, every - 1 :: every]
        assert exact_probability(steps, a, every) == pytest.approx(np.mean(at.max(1) >= a))
    with pytest.raises(ValueError, match="target"):
        exact_probability(10, 0)
    with pytest.raises(ValueError, match="every"):
        exact_probability(10, 3, every=3)


def test_walk_paths_do_not_depend_on_grouping():
    walk, host = Walk(5), functools.partial(jax.tree.map, np.asarray)  # NumPy in, as ams does
    keys = host(jax.vmap(lambda i: jax.random.fold_in(KEY, i))(jnp.arange(64)))
    whole, state = host(walk.start(KEY, 64)), host(walk.start(KEY, 64))
    for step0 in (0, 4):  # the shapes of the other tests: 4 steps or 1 step per call
        whole = host(walk.advance(keys, whole, step0, 4))
    for step0 in range(8):
        state = host(walk.advance(keys, state, step0, 1))
    np.testing.assert_array_equal(state.position, whole.position)
    np.testing.assert_array_equal(state.step, np.full(64, 8))
    assert set(np.unique(whole.position)) <= set(range(-8, 9, 2))
    timed = Walk(5, horizon=8)
    np.testing.assert_allclose(timed.score(whole), (whole.position - 5.0) / 1.0)
    assert timed.target == 0.0 and walk.target == 5.0


def test_kill_rule_kills_all_ties():
    maxima = np.array([[3.0, 1.0, 1.0, 2.0, 1.0], [0.0, 5.0, 5.0, 5.0, 5.0]])
    z, killed = kill_rule(maxima, 1)
    np.testing.assert_array_equal(z, [1.0, 0.0])
    np.testing.assert_array_equal(killed.sum(1), [3, 1])  # 3 > k = 1: the ties at z
    z, killed = kill_rule(maxima, 2)
    np.testing.assert_array_equal(z, [1.0, 5.0])
    assert killed[1].all()  # all N tied at z: extinction


def test_levels_rise_strictly_and_ties_are_killed(plain):
    _, result = plain
    assert result.finished.all() and not result.extinct.any()
    for m in range(SMALL["runs"]):
        q = result.iterations[m]
        levels, killed = result.levels[m, :q], result.killed[m, :q]
        assert np.all(np.diff(levels) > 0)  # a level is never reused: all ties at z_q died
        assert np.all(killed >= SMALL["kill"]) and np.all(killed < SMALL["replicas"])
        np.testing.assert_array_equal(result.levels[m, q:], np.nan)
    assert (result.killed > SMALL["kill"]).any()  # integer scores: ties happen
    # p_hat = prod_q (1 - K_q / N) * (number reached) / N, reached >= N - k + 1 at the stop.
    reached = np.bincount(result.reactive.run, minlength=SMALL["runs"])
    n = SMALL["replicas"]
    expected = np.prod(1 - result.killed / n, axis=1) * reached / n
    np.testing.assert_allclose(result.estimate, expected, rtol=1e-12)
    assert np.all(reached >= n - SMALL["kill"] + 1)


def test_reactive_paths_are_walk_paths(plain):
    _, result = plain
    r = result.reactive
    every, n_ckpt = SMALL["every"], SMALL["steps"] // SMALL["every"]
    assert r.scores.shape == (len(r.run), n_ckpt + 1)  # checkpoints 0..K
    assert np.all(r.scores[:, 1:].max(axis=1) >= 12) and np.all(r.scores[:, 0] == 0)
    np.testing.assert_array_equal(r.states.position, r.scores)
    # A path stops at its first checkpoint at the target and then repeats it.
    first = np.argmax(r.scores >= 12, axis=1)
    ckpt = np.broadcast_to(np.arange(n_ckpt + 1), r.scores.shape)
    np.testing.assert_array_equal(r.states.step, every * np.minimum(ckpt, first[:, None]))
    after = ckpt > first[:, None]
    np.testing.assert_array_equal(r.scores[after], np.repeat(r.scores.max(axis=1), after.sum(1)))
    assert after.any() and (first < n_ckpt).any()  # some paths did stop early
    moves = np.diff(r.scores, axis=1)
    assert np.all(np.abs(moves) <= every) and np.all(moves % 2 == 0)  # no jump at a branch
    weights = np.bincount(r.run, weights=r.weight, minlength=SMALL["runs"])
    np.testing.assert_allclose(weights, result.estimate, rtol=1e-12)
    assert len(np.unique(np.stack([r.run, r.replica]), axis=1).T) == len(r.run)


def test_advance_batches_and_cost(plain):
    process, result = plain
    lanes, distinct, step0, n_steps, ok = map(np.array, zip(*process.calls, strict=True))
    assert set(lanes) <= {2**j for j in range(6, 11)}  # powers of two in [64, M N]: few shapes
    assert np.all(n_steps == SMALL["every"]) and np.all(step0 % SMALL["every"] == 0)
    assert ok.all()  # a clone is advanced only from its branching checkpoint's state
    assert result.cost.sum() == np.sum(distinct * n_steps)  # padding lanes are not counted


def test_paths_stop_at_the_target_and_at_minus_infinity():
    """Clock paths reach 20 at step 20 of 40: they stop there (cost N * 20 a run, later
    checkpoints repeat the state). Scored -inf from the first checkpoint on, they stop after it."""
    n, every = SMALL["replicas"], SMALL["every"]
    reached = ams(Clock(target=20.0), KEY, **SMALL)
    np.testing.assert_array_equal(reached.estimate, 1.0)
    np.testing.assert_array_equal(reached.cost, n * 20)
    np.testing.assert_array_equal(reached.reactive.states[0, 5:], 20)

    class Lost(Clock):  # 0 at the start, -inf after
        def score(self, state):
            return np.where(state > 0, -np.inf, 0.0)

    never = ams(Lost(target=1.0), KEY, **SMALL)
    assert never.extinct.all()
    np.testing.assert_array_equal(never.cost, n * every)


def test_lockstep_equals_runs_alone(plain):
    _, result = plain
    for m in (0, 5):
        alone = ams(Walk(12), KEY, **{**SMALL, "runs": 1}, first_run=m)
        assert alone.estimate[0] == result.estimate[m]
        assert alone.iterations[0] == result.iterations[m]
        assert alone.cost[0] == result.cost[m]
        np.testing.assert_array_equal(alone.killed[0], result.killed[m, : alone.killed.shape[1]])


def test_runs_may_start_from_their_own_distributions():
    """``starts(m, key, n)``: even runs start every walker at 0, odd runs draw each walker at 0
    or 4 with probability 1/2 each. A run's estimate is unbiased for its own start's probability
    (for a random start, the mean over it): two-sided z tests at significance 0.001 each."""
    seen = []

    def starts(m, key, n):
        seen.append(m)
        if m % 2 == 0:
            position = jnp.zeros((n,), jnp.int32)
        else:
            position = 4 * jax.random.bernoulli(key, 0.5, (n,)).astype(jnp.int32)
        return Walk(16).start(key, n)._replace(position=position)

    args = {**SMALL, "runs": 64}
    result = ams(Walk(16), KEY, **args, first_run=5, starts=starts)
    assert seen == list(range(5, 5 + 64)) and result.finished.all()
    exact = {
        1: exact_probability(40, 16, every=4),  # from 0 (run 5 + m even: m odd)
        0: (exact_probability(40, 16, every=4) + exact_probability(40, 12, every=4)) / 2,
    }
    for parity, p in exact.items():
        x = result.estimate[parity::2]
        assert abs(x.mean() - p) < 3.29 * x.std(ddof=1) / math.sqrt(len(x)), (parity, x.mean(), p)
    # The test has the power to see a start ignored: the mixed runs are far from p(from 0).
    x = result.estimate[0::2]
    assert abs(x.mean() - exact[1]) > 3.29 * x.std(ddof=1) / math.sqrt(len(x))


def test_a_floor_stops_runs_whose_weight_falls_below_it():
    """Runs stop with estimate 0 once prod (1 - K_q / N) < floor; the others are unchanged (keys
    are per run), and a stopped run's full estimate was below the floor (the bound on the bias)."""
    full = ams(Walk(16), KEY, **SMALL)
    cut = ams(Walk(16), KEY, **SMALL, floor=0.012)
    low = cut.floored
    assert low.any() and not low.all() and cut.finished.all()
    np.testing.assert_array_equal(cut.estimate[~low], full.estimate[~low])
    np.testing.assert_array_equal(cut.estimate[low], 0.0)
    assert np.all(full.estimate[low] < 0.012)
    assert not ams(Walk(16), KEY, **SMALL, floor=1e-30).floored.any()


def test_extinction_reports_zero():
    result = ams(Clock(target=100.0), KEY, **SMALL)  # every path ties at 40
    assert result.extinct.all() and result.finished.all()
    np.testing.assert_array_equal(result.estimate, 0.0)
    assert result.killed.shape == (SMALL["runs"], 0) and len(result.reactive.run) == 0
    # Zeros everywhere show no spread: no upper bound is claimed.
    assert result.summary.mean == 0.0 and result.summary.ci[0] == 0.0
    assert math.isnan(result.summary.ci[1]) and math.isnan(result.summary.log_ci[1])
    assert result.summary.log_ci[0] == -math.inf
    nan_scores = ams(Clock(target=1.0, scale=math.nan), KEY, **SMALL)  # NaN never reaches
    assert nan_scores.extinct.all()
    reached = ams(Clock(target=40.0), KEY, **SMALL)  # a tie at the target counts as reached
    np.testing.assert_array_equal(reached.estimate, 1.0)
    assert not reached.extinct.any() and (reached.iterations == 0).all()


def test_max_iterations_reports_unfinished():
    result = ams(Walk(30), KEY, **SMALL, max_iterations=2)
    assert not result.finished.any() and np.isnan(result.estimate).all()
    np.testing.assert_array_equal(result.iterations, 2)
    assert math.isnan(result.summary.mean) and math.isnan(result.summary.ci[0])


def test_on_iteration_reports_every_iteration_until_all_runs_finish():
    calls = []
    result = ams(Walk(12), KEY, **SMALL, on_iteration=lambda *a: calls.append(a))
    iterations, finished, levels = (np.array(x) for x in zip(*calls, strict=True))
    np.testing.assert_array_equal(iterations, np.arange(1, result.iterations.max() + 1))
    assert np.all(np.diff(finished) >= 0) and finished[-1] <= SMALL["runs"]
    # The lowest level among unfinished runs is the smallest z_q those runs recorded.
    np.testing.assert_allclose(levels[0], np.nanmin(result.levels[:, 0]))


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(replicas=1, kill=1), "replicas"),
        (dict(kill=0), "kill"),
        (dict(kill=32), "kill"),
        (dict(steps=42), "steps"),
        (dict(every=0), "every"),
        (dict(runs=0), "runs"),
        (dict(replicas=32.0), "replicas"),
        (dict(max_iterations=0), "max_iterations"),
        (dict(level=1.0), "level"),
        (dict(floor=1.0), "floor"),
        (dict(first_run=-1), "first_run"),
        (dict(target=math.nan), "target"),
        (dict(target=-1.0), "already reached"),
        (dict(key=jnp.zeros(3, jnp.uint32)), "key"),
    ],
)
def test_validation(change, match):
    args = {**SMALL, "key": KEY, **change}
    with pytest.raises(ValueError, match=match):
        ams(Walk(12), **args)


def test_missing_target():
    with pytest.raises(ValueError, match="target"):
        ams(Clock(target=1.0)._replace(target=None), KEY, **SMALL)


def test_summarize_is_a_t_interval():
    x = np.array([1e-6, 3e-6, 2e-6, 6e-6])
    s = summarize(x, level=0.9)
    low, high = stats.t.interval(0.9, 3, loc=x.mean(), scale=stats.sem(x))
    assert s.ci == pytest.approx((low, high)) and s.stderr == pytest.approx(stats.sem(x))
    half = (high - low) / 2 / x.mean()
    assert s.log_ci == pytest.approx((math.log(x.mean()) - half, math.log(x.mean()) + half))
    assert summarize(np.array([1.0, 0.0, 0.0])).ci[0] == 0.0  # clipped at 0
    assert math.isnan(summarize(np.array([1e-3])).stderr)


def test_the_markov_lower_end_holds_for_the_laws_that_make_it_tight():
    """(1 - level) / 2 * mean reaches p with probability at most a = (1 - level) / 2 for any
    law of nonnegative unbiased runs. The laws that come closest: each of M runs is p / q with
    probability q and 0 otherwise. With q = a / M the bound reaches p as soon as one run is
    nonzero, with probability 1 - (1 - a / M)^M, just under a; with q = 2a / M or 4a / M it
    needs two or four. 40,000 repetitions of M = 8 runs per law: one-sided binomial tests of
    "at most a" at significance 0.01 (a constant above a fails them at q = (constant) / M), and
    at q = a / M the rate must be near its exact value, two-sided at 0.01 (a constant below a
    needs two nonzero runs there and fails it)."""
    p, level, m, reps = 1e-9, 0.95, 8, 40_000
    a = (1 - level) / 2
    assert markov_lower(1e-6, level) == pytest.approx(2.5e-8)
    np.testing.assert_allclose(markov_lower(np.array([0.0, 4.0]), 0.9), [0.0, 0.2])
    with pytest.raises(ValueError, match="level"):
        markov_lower(1.0, 1.0)
    rng = np.random.default_rng(7)
    for times in (1, 2, 4):
        q = times * a / m
        runs = np.where(rng.random((reps, m)) < q, p / q, 0.0)
        reach = int((markov_lower(runs.mean(axis=1), level) >= p * (1 - 1e-12)).sum())
        assert stats.binomtest(reach, reps, a, alternative="greater").pvalue > 0.01, times
        if times == 1:
            exact = 1 - (1 - q) ** m
            assert 0.98 * a < exact <= a
            assert stats.binomtest(reach, reps, exact).pvalue > 0.01


@pytest.mark.parametrize(
    "steps, replicas, kill, target", [(4, 3, 1, 2), (4, 3, 2, 2), (6, 2, 1, 3)]
)
def test_estimator_has_its_exact_law(steps, replicas, kill, target):
    """Unbiasedness and the whole law of p_hat in tiny cases, against the exact recursion.

    E[p_hat] = p exactly (Bréhier et al. 2016), and the empirical law of 4096 runs passes a
    chi-square test at significance 0.001 (bins with expected count < 5 pooled), the mean a
    two-sided z test at 0.001.
    """
    law = ams_law(steps, replicas, kill, target)
    values = np.array(sorted(law))
    probs = np.array([law[v] for v in values])
    p = exact_probability(steps, target)
    assert probs.sum() == pytest.approx(1.0) and values @ probs == pytest.approx(p, rel=1e-10)
    runs = 4096
    result = ams(Walk(target), KEY, replicas=replicas, kill=kill, runs=runs, steps=steps, every=1)
    index = np.abs(result.estimate[:, None] - values).argmin(axis=1)
    np.testing.assert_allclose(values[index], result.estimate, atol=1e-9)  # only exact values
    counts, expected = np.bincount(index, minlength=len(values)), probs * runs
    small = expected < 5
    if small.any():
        counts = np.append(counts[~small], counts[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    assert abs(result.estimate.mean() - p) < 3.29 * result.estimate.std() / math.sqrt(runs)


@pytest.mark.parametrize("barrier", [30, 44, 56, 66])
def test_small_probabilities_lie_in_their_intervals(barrier):
    """p from 2.5e-3 to 7.2e-12 (T = 100, checkpoints every 4, time-aware score).

    The 99.9% interval on ln p must hold the exact value (at the nominal rate, one of the four
    independent cases fails with probability < 0.4%) and be sharp: relative standard error < 0.3.
    """
    p = exact_probability(100, barrier, every=4)
    key = jax.random.fold_in(KEY, barrier)  # independent cases
    args = dict(replicas=64, kill=8, runs=32, steps=100, every=4, level=0.999)
    result = ams(Walk(barrier, horizon=100), key, **args)
    s = result.summary
    assert result.finished.all() and s.log_ci[0] <= math.log(p) <= s.log_ci[1]
    assert s.stderr / s.mean < 0.3


def coverage(result, p, group):
    """Counts of groups of `group` runs whose ci and log_ci hold p."""
    cover = cover_log = 0
    for row in result.estimate.reshape(-1, group):
        s = summarize(row)
        cover += s.ci[0] <= p <= s.ci[1]
        cover_log += s.log_ci[0] <= math.log(p) <= s.log_ci[1]
    return cover, cover_log


def test_interval_coverage():
    """64 intervals of 16 runs (N = 16, p = 0.078): binomial tests of 95% at significance 0.01.

    A light check: it fails for coverages below about 0.86. The intervals are first order; here
    (relative variance 0.26 and skewness 1.1 per run) 16 runs cover at 0.937 (p) and 0.943 (ln p).
    """
    p = exact_probability(20, 8)
    result = ams(Walk(8), KEY, replicas=16, kill=1, runs=64 * 16, steps=20, every=1)
    for count in coverage(result, p, 16):
        assert stats.binomtest(count, 64, 0.95).pvalue > 0.01


@pytest.mark.slow
def test_interval_coverage_big():
    """Binomial tests of 95% coverage at significance 0.01: 1000 intervals of 16 runs of 32
    replicas on the plain walk (p = 0.078; ci and log_ci) and 250 intervals of 64 runs of 64
    replicas on the time-aware walk (p = 7.9e-6; log_ci). Both regimes have per-run relative
    variances near 0.12 and 0.33, where the first-order intervals are within 0.01 of 95%."""
    p = exact_probability(20, 8)
    result = ams(Walk(8), KEY, replicas=32, kill=1, runs=1000 * 16, steps=20, every=1)
    for count in coverage(result, p, 16):
        assert stats.binomtest(count, 1000, 0.95).pvalue > 0.01
    p = exact_probability(100, 44, every=4)
    timed = Walk(44, horizon=100)
    result = ams(timed, KEY, replicas=64, kill=8, runs=250 * 64, steps=100, every=4)
    assert stats.binomtest(coverage(result, p, 64)[1], 250, 0.95).pvalue > 0.01


@pytest.mark.slow
@pytest.mark.parametrize("barrier", [30, 44, 56, 66])
def test_small_probabilities_every_step(barrier):
    """As the default test with checkpoints at every step (the reflection formula)."""
    p = exact_probability(100, barrier)
    key = jax.random.fold_in(KEY, barrier)
    args = dict(replicas=128, kill=16, runs=64, steps=100, every=1, level=0.999)
    result = ams(Walk(barrier, horizon=100), key, **args)
    s = result.summary
    assert result.finished.all() and s.log_ci[0] <= math.log(p) <= s.log_ci[1]
    assert s.stderr / s.mean < 0.2
