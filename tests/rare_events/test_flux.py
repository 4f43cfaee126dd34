"""The flux method (rare.method = "flux"): bookkeeping, keys, agreement with plain Monte Carlo."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy import stats

import rankjump as rj
from rankjump.cli.rare_table import format_rare, rare_to_dict
from rankjump.config import demo_config
from rankjump.rare_events.flux import flux_cell

# The demo's minimum at eta 0.18, where jumps are frequent: P(T = 12,000) near 0.02.
CELL = demo_config().replace(
    optimizer={"eta": [0.18], "lam": [0.002]},
    run={"steps": 12000, "record_every": 500, "trajectories": 1},
    rare={"method": "flux", "paths": 256, "runs": 4, "commit_reps": 8},
)


@pytest.fixture(scope="module")
def four_runs():
    return flux_cell(CELL, 0.002, 0.18, jax.random.PRNGKey(3), 4)


def test_every_entry_is_counted_through_a_kick(four_runs):
    """Every plain path that entered B_target kicked first (an entry is in an excursion), the
    curve is nondecreasing and ends at the estimate, and a kick's committor is a fraction."""
    res = four_runs
    assert res.plain.sum() > 0  # the cell has entries: the check below bites
    assert np.all(res.kicks >= res.plain)
    assert np.all(np.diff(res.curve, axis=1) >= 0)
    np.testing.assert_array_equal(res.curve[:, -1], res.estimate)
    assert np.all((res.kick_h >= 0) & (res.kick_h <= 1))
    assert np.all(res.kick_depth <= CELL.rare.kick * (1 + 1e-4))  # Gram counts vs spectra
    assert np.all(res.kick_step % CELL.run.record_every == 0)
    np.testing.assert_allclose(res.h_sum, np.bincount(res.kick_run, res.kick_h, minlength=4))
    assert np.all(res.cost >= 0) and res.cost.sum() > 0


def test_a_run_is_the_same_alone_or_batched(four_runs):
    """Run m's paths and continuations have keys of their own: run 2 alone equals run 2 of four."""
    alone = flux_cell(CELL, 0.002, 0.18, jax.random.PRNGKey(3), 1, first_run=2)
    assert alone.estimate[0] == four_runs.estimate[2]
    assert alone.kicks[0] == four_runs.kicks[2]
    assert alone.plain[0] == four_runs.plain[2]


def test_the_basin_level_moves_only_the_bookkeeping():
    """rare.basin cuts paths into excursions differently, never the paths: on the same key the
    plain paths enter B_target alike, and a lower basin (reached more easily: every visit to the
    0.9 basin is one to the 0.5 basin) ends excursions sooner, so it finds at least as many kicks
    and continues them no longer."""
    low, high = (
        flux_cell(CELL.replace(rare={"basin": b}), 0.002, 0.18, jax.random.PRNGKey(3), 2)
        for b in (0.5, 0.9)
    )
    np.testing.assert_array_equal(low.plain, high.plain)
    assert np.all(low.kicks >= high.kicks)
    assert low.cost.sum() != high.cost.sum()  # the level reaches the engine


def test_agrees_with_plain_monte_carlo():
    """The flux estimate of P(enter by T) against `simulate` on independent keys: a two-sided
    z-test on the difference at significance 0.001 (fixed keys). Failing it means a bias far
    beyond the runs' noise (a flux estimate missing the excursions that do not start from a
    kick, say, reads about half)."""
    runs = 16
    res = flux_cell(CELL, 0.002, 0.18, jax.random.PRNGKey(11), runs)
    sim = rj.simulate(CELL.replace(run={"trajectories": 8192, "seed": 5}), progress=False)
    rank = sim["rank"].isel(lam=0, eta=0)
    alive = ~sim["diverged"].isel(lam=0, eta=0).values.astype(bool)
    entered = (rank.values[:, -1] < 3) & (rank.values[:, -1] >= 0)
    n = int(alive.sum())
    p_mc = entered[alive].sum() / n
    se_mc = math.sqrt(p_mc * (1 - p_mc) / n)
    p_fx, se_fx = res.estimate.mean(), res.estimate.std(ddof=1) / math.sqrt(runs)
    z = (p_fx - p_mc) / math.hypot(se_mc, se_fx)
    assert entered[alive].sum() > 50 and p_fx > 0
    assert 2 * stats.norm.sf(abs(z)) > 0.001, (p_fx, se_fx, p_mc, se_mc)


def test_rare_file_holds_the_flux_numbers(tmp_path):
    """`rankjump rare` with method "flux": the file holds the kicks, the committor, plain Monte
    Carlo's p from the same paths and P at every checkpoint, and reads back."""
    cfg = CELL.replace(rare={"runs": 2, "paths": 64})
    ds = rj.rare(cfg, progress=False)
    path = rj.save_result(ds, tmp_path / "flux.nc")
    back = rj.load_result(path, kinds=("rare",))
    assert back.attrs["method"] == "flux"
    # what p rests on, in the file, the table and the JSON: for flux nothing but the simulator
    assert back.attrs["assumptions"].startswith("none: unbiased whatever rare.kick")
    assert f"assumed (flux): {back.attrs['assumptions']}" in format_rare(back).splitlines()
    assert rare_to_dict(back)["assumptions"] == back.attrs["assumptions"]
    older = back.copy()
    del older.attrs["assumptions"]  # a file written before the attribute: the method's own
    assert rare_to_dict(older)["assumptions"] == back.attrs["assumptions"]
    for name in ("kicks", "committor", "p_plain", "plain_entered", "run_kicks"):
        assert name in back, name
    assert back["p_curve"].dims == back["p_curve_stderr"].dims == ("lam", "eta", "checkpoint")
    curve = back["p_curve"].isel(lam=0, eta=0).values
    assert curve[0] == 0 and curve[-1] == pytest.approx(float(back["p"].isel(lam=0, eta=0)))
    assert int(back["run_kicks"].sum()) == int(back["kicks"].sum())


def test_a_stopped_flux_run_resumes_to_the_same_file(tmp_path):
    """A flux cell kept in the record of finished cells (P over checkpoints included) is reused
    by a resumed run, also when the record's configuration lacks a field added since: the
    resumed result equals the uninterrupted one."""
    cfg = CELL.replace(optimizer={"eta": [0.18, 0.19]}, rare={"runs": 2, "paths": 32})
    whole = rj.rare(cfg, progress=False)
    partial = tmp_path / "r.nc.partial.npz"
    one = cfg.replace(optimizer={"eta": [0.18]})
    from rankjump.rare_events.partial import load_cells, save_cells

    kept_first = rj.rare(one, progress=False, partial=tmp_path / "one.npz")
    assert "p_curve" in kept_first
    cells = load_cells(tmp_path / "one.npz", rj.config_to_toml(one))
    # Kept as a version without rare.basin wrote it: the field reads as its default, 0.7.
    toml = rj.config_to_toml(cfg)
    older = "\n".join(line for line in toml.splitlines() if not line.startswith("basin ="))
    assert older != toml
    save_cells(partial, older, {(0, 0): cells[0, 0]})
    resumed = rj.rare(cfg, progress=False, partial=partial)
    for name in ("p", "p_curve", "kicks", "run_estimate", "run_kicks"):
        np.testing.assert_array_equal(resumed[name].values, whole[name].values, err_msg=name)


def test_a_flux_cell_stopped_between_batches_resumes_from_them(tmp_path, monkeypatch):
    """A flux cell is kept batch by batch while it runs: a run stopped in its third batch leaves
    the first two in the record, and the resumed run makes only the third, to the result of an
    uninterrupted run; once the cell is finished the record holds the cell, not its batches."""
    from rankjump.rare_events import grid
    from rankjump.rare_events.partial import count_cells, load_record

    cfg = CELL.replace(
        run={"steps": 4000}, rare={"runs": "auto", "auto_batch": 1, "max_runs": 3, "paths": 32}
    )
    whole = rj.rare(cfg, progress=False)
    assert int(whole["run_made"].sum()) == 3  # three batches of one run: never reliable
    made, real = [], grid.flux_cell

    def stopping(*args, **kwargs):
        made.append(kwargs["first_run"])
        if len(made) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(grid, "flux_cell", stopping)
    partial, toml = tmp_path / "r.nc.partial.npz", rj.config_to_toml(cfg)
    with pytest.raises(KeyboardInterrupt):
        rj.rare(cfg, progress=False, partial=partial)
    cells, batches = load_record(partial, toml)
    assert cells == {} and sorted(batches) == [(0, 0)] and sorted(batches[0, 0]) == [0, 1]
    assert count_cells(partial) == 0 and count_cells(partial, "batches") == 2
    made.clear()
    resumed = rj.rare(cfg, progress=False, partial=partial)
    assert made == [2]  # only the batch the stopped run had not finished
    for name in ("p", "p_curve", "kicks", "committor", "run_estimate", "run_kicks", "run_cost"):
        np.testing.assert_array_equal(resumed[name].values, whole[name].values, err_msg=name)
    cells, batches = load_record(partial, toml)
    assert sorted(cells) == [(0, 0)] and batches == {}
