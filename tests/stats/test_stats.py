"""Tests of rankjump.stats.intervals, rankjump.stats.analysis and the `stats` subcommand."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from rankjump.cli.stats import add_parser, format_report
from rankjump.stats.analysis import analyze
from rankjump.stats.intervals import binomial_ci, upper_bound

LEVELS = (0.8, 0.95, 0.99)
NS = (1, 2, 3, 7, 20, 101, 1000)


def _ks(n: int) -> list[int]:
    return sorted({0, 1, n // 3, n // 2, n - 1, n})


# ---------------------------------------------------------------- intervals


@pytest.mark.parametrize("method", ["wilson", "exact"])
def test_binomial_ci_equals_scipy_binomtest(method):
    for level in LEVELS:
        for n in NS:
            ks = _ks(n)
            low, high = binomial_ci(np.array(ks), n, method, level)
            for i, k in enumerate(ks):
                ref = stats.binomtest(k, n).proportion_ci(confidence_level=level, method=method)
                # binomtest finds Clopper-Pearson bounds by root finding (xtol ~ 1e-12).
                assert low[i] == pytest.approx(ref.low, rel=1e-9, abs=1e-11)
                assert high[i] == pytest.approx(ref.high, rel=1e-9, abs=1e-11)
                assert binomial_ci(k, n, method, level) == (low[i], high[i])
            # One-sided at the ends: exactly 0 below k = 0 and exactly 1 above k = n.
            assert low[0] == 0.0 and high[-1] == 1.0


def test_jeffreys_equals_beta_quantiles():
    for level in LEVELS:
        tail = (1 - level) / 2
        for n in NS:
            for k in _ks(n):
                low, high = binomial_ci(k, n, "jeffreys", level)
                ref_low = 0.0 if k == 0 else stats.beta.ppf(tail, k + 0.5, n - k + 0.5)
                ref_high = 1.0 if k == n else stats.beta.ppf(1 - tail, k + 0.5, n - k + 0.5)
                assert low == pytest.approx(ref_low, rel=1e-12, abs=1e-15)
                assert high == pytest.approx(ref_high, rel=1e-12, abs=1e-15)
                assert low <= k / n <= high


def test_upper_bound_is_one_sided_clopper_pearson():
    for level in LEVELS:
        for n in NS:
            for k in _ks(n):
                ref = stats.binomtest(k, n, alternative="less").proportion_ci(level, "exact")
                assert upper_bound(k, n, level) == pytest.approx(ref.high, rel=1e-9, abs=1e-11)
            assert upper_bound(0, n, level) == pytest.approx(1 - (1 - level) ** (1 / n), rel=1e-14)
    # The example: zero upward moves in 409000 transitions.
    assert upper_bound(0, 409000) == pytest.approx(7.3245e-6, rel=1e-4)


def test_intervals_reject_bad_input_and_give_nan_without_trials():
    assert np.isnan(binomial_ci(0, 0)).all() and np.isnan(upper_bound(0, 0))
    with pytest.raises(ValueError, match="method"):
        binomial_ci(1, 2, "wald")
    with pytest.raises(ValueError, match="level"):
        binomial_ci(1, 2, level=1.0)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        upper_bound(3, 2)
    with pytest.raises(ValueError, match="integers"):
        binomial_ci(0.5, 2)


# ---------------------------------------------------------------- hand-built data

# Checkpoints every 10 steps. In cell lam = 1e-3, traj 105 diverged at step 20 and traj 106 is
# censored after step 20 (uneven horizon).
CELL0 = [
    [2, 2, 1, 1, 1, 1],
    [2, 1, 2, 1, 1, 1],
    [3, 2, 2, 2, 2, 2],
    [2, 2, 2, 2, 2, 2],
    [2, 3, 2, 1, 0, 0],
    [2, 1, -1, -1, -1, -1],
    [2, 2, 2, -1, -1, -1],
]


def _dataset(rank: np.ndarray, diverged: np.ndarray) -> xr.Dataset:
    """A result Dataset of rank (lam, traj, checkpoint), one eta; layer 1 is layer 0 plus one;
    end_rank is rank, and the values the statistics do not read are placeholders."""
    rank = rank[:, None]
    layer = np.stack([rank, np.where(rank >= 0, rank + 1, -1)], axis=-1)
    cell = ("lam", "eta", "traj", "checkpoint")
    loss = np.where(rank >= 0, 1.0, np.nan)
    return xr.Dataset(
        {
            "rank": (cell, rank.astype(np.int32)),
            "layer_rank": (cell + ("layer",), layer.astype(np.int32)),
            "end_rank": (cell, rank.astype(np.int32)),
            "sv": (cell + ("k",), loss[..., None]),
            "diverged": (("lam", "eta", "traj"), diverged[:, None]),
            "loss": (cell, loss),
            "param_norm2": (cell, loss),
            "imbalance": (cell, loss),
        },
        coords={
            "lam": [1e-3, 1e-2],
            "eta": [0.1],
            "traj": np.arange(rank.shape[2]) + 100,
            "step": ("checkpoint", 10 * np.arange(rank.shape[-1])),
        },
        attrs={"config": "[run]\nseed = 0\n", "producer": "rankjump"},
    )


@pytest.fixture
def hand():
    cell1 = np.full((7, 6), 2)
    cell1[5, 2:] = -1
    diverged = np.zeros((2, 7), bool)
    diverged[:, 5] = True
    return _dataset(np.stack([np.array(CELL0), cell1]), diverged)


def test_hand_built_counts(hand):
    report = analyze(hand)
    cell, flat = report.cells[0], report.cells[1]
    assert (cell.lam, cell.eta, cell.n, cell.diverged, cell.incomplete) == (1e-3, 0.1, 6, 1, 1)
    assert cell.start_rank == 2 and cell.start_ranks == {2: 5, 3: 1}
    assert cell.ranks == (0, 1, 2, 3)
    np.testing.assert_array_equal(
        cell.transitions, [[1, 0, 0, 0], [1, 5, 1, 0], [0, 4, 12, 1], [0, 0, 2, 0]]
    )
    # The final rank counts the 5 trajectories observed through step 50.
    assert {r: (p.count, p.n) for r, p in cell.final_rank.items()} == {
        0: (1, 5),
        1: (2, 5),
        2: (2, 5),
        3: (0, 5),
    }
    assert cell.final_rank[1].p == 0.4
    assert cell.final_rank[1].ci == binomial_ci(2, 5)
    # Rank sets condition on the start rank 2: traj 102 (start rank 3) is left out of them.
    assert cell.conditioned == 5
    b1, b0 = cell.rank_sets[1], cell.rank_sets[0]
    assert (b1.reached.count, b1.reached.n, b0.reached.count, b0.reached.n) == (3, 4, 1, 4)
    np.testing.assert_array_equal(b1.curve_count, [0, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(b1.curve_n, [5, 5, 5, 4, 4, 4])
    np.testing.assert_array_equal(b0.curve_count, [0, 0, 0, 0, 1, 1])
    assert b1.reached.ci == pytest.approx((0.3006, 0.9544), abs=1e-4)  # Wilson, 3 of 4
    np.testing.assert_allclose(b1.curve_ci[:, 3], binomial_ci(3, 4), rtol=1e-15)
    # Kaplan-Meier with traj 106 censored at step 20: 1, 4/5, 4/5 * 3/4, then * 1/2.
    np.testing.assert_allclose(b1.survival, [1, 4 / 5, 3 / 5, 3 / 10, 3 / 10, 3 / 10], rtol=1e-12)
    np.testing.assert_allclose(b0.survival, [1, 1, 1, 1, 0.75, 0.75], rtol=1e-12)
    assert (b1.median_first_passage, b0.median_first_passage) == (30.0, None)
    up = cell.upward
    assert (up.count, up.transitions, up.after_entry_count, up.after_entry_transitions) == (
        2,
        27,
        1,
        13,
    )
    assert up.upper_bound == upper_bound(2, 27) and up.after_entry_upper_bound == upper_bound(1, 13)
    events = [
        (e.traj, e.from_step, e.step, e.from_rank, e.to_rank, e.after_entry) for e in cell.events
    ]
    assert events == [(101, 10, 20, 1, 2, True), (104, 0, 10, 2, 3, False)]
    assert cell.events[0].lam == 1e-3 and cell.events[0].eta == 0.1

    assert (flat.n, flat.diverged, flat.incomplete, flat.events) == (6, 1, 0, ())
    assert {r: s.reached.count for r, s in flat.rank_sets.items()} == {0: 0, 1: 0}
    assert flat.upward.after_entry_transitions == 0 and np.isnan(
        flat.upward.after_entry_upper_bound
    )
    assert flat.upward.upper_bound == pytest.approx(1 - 0.05 ** (1 / 30), rel=1e-14)
    pooled = report.pooled
    assert (pooled.count, pooled.transitions, pooled.after_entry_count) == (2, 57, 1)
    assert pooled.after_entry_transitions == 13


def test_start_rank_option_conditions_on_another_start(hand):
    cell = analyze(hand, start_rank=3).cells[0]
    # Only traj 102 starts at rank 3: [3, 2, 2, 2, 2, 2] reaches B_2 at step 10, never B_1.
    assert (cell.start_rank, cell.conditioned) == (3, 1)
    assert {r: (s.reached.count, s.reached.n) for r, s in cell.rank_sets.items()} == {
        0: (0, 1),
        1: (0, 1),
        2: (1, 1),
    }
    assert cell.rank_sets[2].median_first_passage == 10.0
    # Transitions, final ranks and the upward check still use every trajectory.
    default = analyze(hand).cells[0]
    np.testing.assert_array_equal(cell.transitions, default.transitions)
    assert cell.upward == default.upward


def test_after_step_replaces_entry_rule(hand):
    for after, expected in ((10, (1, 21)), (20, (0, 15))):
        up = analyze(hand, after=after).cells[0].upward
        assert (up.after_entry_count, up.after_entry_transitions) == expected
        assert (up.count, up.transitions) == (2, 27)


def test_layer_rank_is_the_max_over_layers(hand):
    cell = analyze(hand, on="layer_rank").cells[0]
    assert cell.start_rank == 3 and cell.ranks == (1, 2, 3, 4)
    assert {r: p.count for r, p in cell.final_rank.items()} == {1: 1, 2: 2, 3: 2, 4: 0}
    assert {r: s.reached.count for r, s in cell.rank_sets.items()} == {0: 0, 1: 1, 2: 3}
    np.testing.assert_array_equal(cell.transitions, analyze(hand).cells[0].transitions)
    assert (cell.upward.count, cell.upward.after_entry_count) == (2, 1)


def test_nan_ranks_and_masks_censor_like_minus_one(hand):
    merged = hand.assign(rank=hand["rank"].where(hand["rank"] >= 0))  # float with NaN, as a merge
    assert analyze(merged).to_dict() == analyze(hand).to_dict()
    assert analyze(hand, observed=hand["loss"].notnull()).to_dict() == analyze(hand).to_dict()
    # A gap at step 30 of traj 103 ends its record at step 20, though steps 40 and 50 are there.
    mask = xr.ones_like(hand["rank"], dtype=bool)
    mask.loc[{"lam": 1e-3, "traj": 103, "checkpoint": 3}] = False
    cell = analyze(hand, observed=mask).cells[0]
    assert (cell.n, cell.incomplete) == (6, 2)
    assert {r: p.count for r, p in cell.final_rank.items()} == {0: 1, 1: 2, 2: 1, 3: 0}
    # Among the 5 starting at rank 2, only 100, 101 and 104 are observed through step 50.
    assert (cell.rank_sets[1].reached.count, cell.rank_sets[1].reached.n) == (3, 3)
    np.testing.assert_allclose(cell.rank_sets[1].survival, [1, 4 / 5, 3 / 5, 0, 0, 0])
    assert cell.transitions[2, 2] == 9 and cell.upward.transitions == 24
    with pytest.raises(ValueError, match="boolean"):
        analyze(hand, observed=hand["loss"])


def test_all_diverged_cell_is_reported_as_empty(hand):
    report = analyze(hand.assign(diverged=xr.ones_like(hand["diverged"])))
    cell = report.to_dict()["cells"][0]
    assert (cell["n"], cell["diverged"], cell["start_rank"], cell["final_rank"]) == (0, 7, None, {})
    assert cell["upward"]["upper_bound"] is None
    json.dumps(report.to_dict(), allow_nan=False)


def test_analyze_rejects_foreign_datasets(hand):
    with pytest.raises(ValueError, match="missing variable 'rank'"):
        analyze(hand.drop_vars("rank"))
    with pytest.raises(ValueError, match="on must be"):
        analyze(hand, on="end_rank")
    with pytest.raises(ValueError, match="method"):
        analyze(hand, ci="wald")


# ---------------------------------------------------------------- vectorized against a loop


def _reference(rank: np.ndarray, diverged: np.ndarray) -> dict:
    """Plain-Python statistics of one cell (record = prefix of ranks >= 0)."""
    out = {"trans": {}, "up": 0, "pairs": 0, "late_up": 0, "late": 0, "final": {}, "n_final": 0}
    records = [
        r[: next((c for c, v in enumerate(r) if v < 0), len(r))]
        for r, d in zip(rank, diverged, strict=True)
        if not d and r[0] >= 0
    ]
    top = max(set(int(r[0]) for r in records), key=lambda v: (sum(r[0] == v for r in records), -v))
    for rec in records:
        entry = next((c for c, v in enumerate(rec) if v < rec[0]), rank.shape[1])
        for c in range(len(rec) - 1):
            a, b = int(rec[c]), int(rec[c + 1])
            out["trans"][a, b] = out["trans"].get((a, b), 0) + 1
            out["pairs"] += 1
            out["up"] += b > a
            out["late"] += c >= entry
            out["late_up"] += (b > a) and c >= entry
        if len(rec) == rank.shape[1]:
            out["final"][int(rec[-1])] = out["final"].get(int(rec[-1]), 0) + 1
            out["n_final"] += 1
    # Rank sets: only the trajectories that start at the modal start rank.
    same = [rec for rec in records if rec[0] == top]
    complete = [rec for rec in same if len(rec) == rank.shape[1]]
    out["reached"] = {r: sum(min(rec) <= r for rec in complete) for r in range(top)}
    out["survival"] = {}
    for r in range(top):
        first = [next((c for c, v in enumerate(rec) if v <= r), None) for rec in same]
        surv, s = [], 1.0
        for c in range(rank.shape[1]):
            risk = sum(
                len(rec) > c and (f is None or f >= c) for rec, f in zip(same, first, strict=True)
            )
            s *= 1 - sum(f == c for f in first) / max(risk, 1)
            surv.append(s)
        out["survival"][r] = surv
    return out


def test_vectorized_cells_equal_a_python_loop():
    rng = np.random.default_rng(7)
    n_traj, n_ckpt = 60, 15
    moves = rng.choice([-1, 0, 0, 0, 1], size=(2, n_traj, n_ckpt))
    moves[..., 0] = 0
    rank = np.clip(4 + rng.integers(0, 2, (2, n_traj, 1)) + np.cumsum(moves, -1), 0, 6)
    horizon = np.where(rng.random((2, n_traj)) < 0.3, rng.integers(1, n_ckpt, (2, n_traj)), n_ckpt)
    rank = np.where(np.arange(n_ckpt) < horizon[..., None], rank, -1)
    diverged = rng.random((2, n_traj)) < 0.1
    report = analyze(_dataset(rank, diverged))
    for i, cell in enumerate(report.cells):
        ref = _reference(rank[i], diverged[i])
        trans = {
            (a, b): int(cell.transitions[x, y])
            for x, a in enumerate(cell.ranks)
            for y, b in enumerate(cell.ranks)
            if cell.transitions[x, y]
        }
        assert trans == ref["trans"]
        up = cell.upward
        assert (up.count, up.transitions) == (ref["up"], ref["pairs"])
        assert (up.after_entry_count, up.after_entry_transitions) == (ref["late_up"], ref["late"])
        assert {r: p.count for r, p in cell.final_rank.items() if p.count} == ref["final"]
        assert {p.n for p in cell.final_rank.values()} == {ref["n_final"]}
        assert {r: s.reached.count for r, s in cell.rank_sets.items()} == ref["reached"]
        assert set(cell.rank_sets) == set(ref["survival"])
        for r, s in cell.rank_sets.items():
            np.testing.assert_allclose(s.survival, ref["survival"][r], rtol=1e-12)
        assert ref["up"] > 0 and ref["late_up"] > 0 and cell.incomplete > 0


# ---------------------------------------------------------------- coverage


def test_wilson_interval_covers_a_known_jump_probability():
    # Markov chain: rank 2 -> 1 with probability q per step (absorbing), 100 steps, recorded every
    # 10; P(reached B_1 by step 100) = 1 - (1 - q)^100. 25 x 20 cells are 500 replications of 64.
    q, n_traj, n_steps = 0.01, 64, 100
    rng = np.random.default_rng(20240601)
    jumped = np.logical_or.accumulate(rng.random((25, 20, n_traj, n_steps)) < q, axis=-1)
    rank = np.concatenate([np.full((25, 20, n_traj, 1), 2), 2 - jumped[..., 9::10]], axis=-1)
    ds = xr.Dataset(
        {
            "rank": (("lam", "eta", "traj", "checkpoint"), rank),
            "diverged": (("lam", "eta", "traj"), np.zeros(rank.shape[:3], bool)),
        },
        coords={
            "lam": np.arange(25),
            "eta": np.arange(20),
            "step": ("checkpoint", 10 * np.arange(11)),
        },
    )
    truth = 1 - (1 - q) ** n_steps
    lows, highs = zip(*(c.rank_sets[1].reached.ci for c in analyze(ds).cells), strict=True)
    covered = int(np.sum((np.array(lows) <= truth) & (truth <= np.array(highs))))
    # The Wilson interval's exact coverage at this (n, p) is 0.9477, close to the nominal 0.95.
    k = np.arange(n_traj + 1)
    low, high = binomial_ci(k, n_traj)
    coverage = stats.binom.pmf(k, n_traj, truth)[(low <= truth) & (truth <= high)].sum()
    assert abs(coverage - 0.95) < 0.01
    # Under a correct implementation `covered` ~ Binomial(500, coverage); this two-sided binomial
    # test rejects a correct implementation with probability 0.001 (significance level 0.001).
    assert stats.binomtest(covered, 500, coverage).pvalue > 1e-3


# ---------------------------------------------------------------- command line


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="rankjump")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = args.func(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _parse_table(text: str) -> dict:
    """Reads the numbers back from the table, keyed like the JSON."""
    number = r"(-?[\d.e+-]+|-)"
    cells, block = [], None
    for line in text.splitlines():
        if m := re.match(r"cell lam = (\S+), eta = (\S+)$", line):
            block = {"lam": float(m[1]), "eta": float(m[2]), "final_rank": {}, "reached": {}}
            cells.append(block)
        elif line.startswith("pooled"):
            block = {}
            cells.append(block)
        elif m := re.match(r"  trajectories  n = (\d+)   diverged \(excluded\) = (\d+)", line):
            block["n"], block["diverged"] = int(m[1]), int(m[2])
        elif m := re.match(r"  start rank    (\d+)", line):
            block["start_rank"] = int(m[1])
        elif m := re.match(
            rf"    (rank|r <=) (\d+) +(\d+) +{number} +\[{number}, {number}\](.*)", line
        ):
            entry = {"count": int(m[3]), "p": m[4], "ci": [m[5], m[6]]}
            if m[1] == "rank":
                block["final_rank"][m[2]] = entry
            else:
                block["reached"][m[2]] = entry
                passage = m[7].strip()
                block.setdefault("median", {})[m[2]] = (
                    float(passage.split()[1]) if passage.startswith("step") else None
                )
        elif m := re.match(
            rf"    (all|after entering a lower rank set) +(\d+) +(\d+) +{number}$", line
        ):
            key = "" if m[1] == "all" else "after_entry_"
            block[f"{key}count"], block[f"{key}transitions"] = int(m[2]), int(m[3])
            block[f"{key}upper_bound"] = m[4]
    return {"cells": cells[:-1], "pooled": cells[-1]}


def test_table_and_json_agree(hand, tmp_path, capsys):
    path = tmp_path / "result.nc"
    hand.to_netcdf(path, engine="h5netcdf")
    code, out, err = _run(["stats", str(path), "--json"], capsys)
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data == json.loads(json.dumps(analyze(hand).to_dict()))
    assert (data["on"], data["ci_method"], data["level"]) == ("rank", "wilson", 0.95)
    assert data["probabilities"].startswith("among the trajectories that did not diverge")
    code, out, err = _run(["stats", str(path)], capsys)
    assert code == 0 and err == ""
    table = _parse_table(out)
    assert len(table["cells"]) == len(data["cells"]) == 2

    def fmt(x: float | None, spec: str = ".4f") -> str:
        return "-" if x is None else format(x, spec)

    for row, cell in zip(table["cells"], data["cells"], strict=True):
        for key in ("lam", "eta", "n", "diverged", "start_rank"):
            assert row[key] == cell[key]
        # The table leaves out final ranks never seen last and repeated all/none rank sets.
        for kind in ("final_rank", "reached"):
            assert row[kind] == {
                r: {"count": p["count"], "p": fmt(p["p"]), "ci": [fmt(c) for c in p["ci"]]}
                for r, p in cell[kind].items()
                if r in row[kind]
            }
        assert row["final_rank"].keys() == {r for r, p in cell["final_rank"].items() if p["count"]}
        assert row["median"] == {r: cell["median_first_passage"][r] for r in row["reached"]}
        for key in ("count", "transitions", "after_entry_count", "after_entry_transitions"):
            assert row[key] == cell["upward"][key]
        for key in ("upper_bound", "after_entry_upper_bound"):
            assert row[key] == fmt(cell["upward"][key], ".3g")
    pooled = data["pooled"]["upward"]
    assert table["pooled"]["count"] == pooled["count"] == 2
    assert table["pooled"]["transitions"] == pooled["transitions"] == 57
    assert table["pooled"]["upper_bound"] == fmt(pooled["upper_bound"], ".3g")
    assert [list(row["reached"]) for row in table["cells"]] == [["1", "0"], ["1"]]
    assert "traj 101, step 10 -> 20, rank 1 -> 2 (after)" in out


def test_options_reach_the_analysis(hand, tmp_path, capsys):
    path = tmp_path / "result.nc"
    hand.to_netcdf(path, engine="h5netcdf")
    argv = [
        "stats",
        str(path),
        "--json",
        "--on",
        "layer_rank",
        "--ci",
        "exact",
        "--level",
        "0.9",
        "--after",
        "20",
    ]
    code, out, _ = _run(argv, capsys)
    expected = analyze(hand, on="layer_rank", ci="exact", level=0.9, after=20).to_dict()
    assert code == 0 and json.loads(out) == json.loads(json.dumps(expected))
    assert json.loads(out)["cells"][0]["start_rank"] == 3
    code, out, _ = _run(["stats", str(path), "--after", "20"], capsys)
    assert "from step 20 on" in out and "after entering" not in out


def test_bad_files_exit_2_with_one_line(hand, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not netCDF\n")
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"x": ("t", np.arange(3))}).to_netcdf(foreign, engine="h5netcdf")
    cases = {
        tmp_path / "missing.nc": "no such result file",
        tmp_path: "not a regular file",
        text: "not a readable netCDF",
        foreign: "not a rankjump result file",
    }
    for path, problem in cases.items():
        code, out, err = _run(["stats", str(path)], capsys)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and problem in err and str(path) in err


def test_stats_and_plot_refuse_a_bad_file_with_the_same_line(hand, tmp_path, capsys):
    from rankjump.cli.main import main
    from rankjump.results.schema import RESULT_SCHEMA

    text = tmp_path / "notes.txt"
    text.write_text("not netCDF\n")
    files = {"missing": tmp_path / "missing.nc", "folder": tmp_path, "text": text}
    variants = {
        "foreign": xr.Dataset({"x": ("t", np.arange(3))}),
        "incomplete": hand.drop_vars("sv"),
        "newer": hand.assign_attrs(result_schema=RESULT_SCHEMA + 1),
        "unknown kind": hand.assign_attrs(result_kind="mystery"),
    }
    for name, ds in variants.items():
        files[name] = tmp_path / f"{name}.nc"
        ds.to_netcdf(files[name], engine="h5netcdf")
    problems = {
        "missing": "no such result file",
        "folder": "not a regular file",
        "text": "not a readable netCDF result file",
        "foreign": "not a rankjump result file (missing producer)",
        "incomplete": "not a rankjump result file (missing ['sv'])",
        "newer": f"a result of schema {RESULT_SCHEMA + 1}, newer than this rankjump reads",
        "unknown kind": "a result of kind 'mystery', unknown to this rankjump",
    }
    for name, path in files.items():
        lines = {}
        for command in ("stats", "plot"):
            argv = [command, str(path)] + (
                ["--out", str(tmp_path / "figures")] * (command == "plot")
            )
            assert main(argv) == 2, (name, command)
            out, err = capsys.readouterr()
            assert out == "" and err.count("\n") == 1, (name, command, err)
            lines[command] = err.removeprefix(f"rankjump {command}: error: ")
        assert lines["stats"] == lines["plot"], name
        assert lines["stats"].startswith(f"{path}: {problems[name]}"), lines["stats"]
    assert not (tmp_path / "figures").exists()


def test_table_shows_the_band_of_rank_sets_that_matter():
    rank = np.array([[[6, 5, 4, 3, 3], [6, 5, 4, 3, 2], [6, 5, 4, 2, 2]]] * 2)
    report = analyze(_dataset(rank, np.zeros((2, 3), bool)))
    assert [s.reached.count for s in report.cells[0].rank_sets.values()] == [0, 0, 2, 3, 3, 3]
    lines = format_report(report).splitlines()
    rows = [line.split()[2] for line in lines if line.startswith("    r <= ")]
    assert rows[:3] == ["3", "2", "1"]
    assert [line.split()[1] for line in lines if line.startswith("    rank ")][:2] == ["3", "2"]


def test_small_probabilities_keep_three_significant_digits():
    """One of 6,000 trajectories drops to rank 2: the table says 0.000167, not 0.0002, and its
    interval ends are not rounded to 0.0000."""
    rank = np.full((2, 6000, 3), 3)  # two lam cells, as _dataset makes them
    rank[:, 0, 1:] = 2
    report = analyze(_dataset(rank, np.zeros((2, 6000), bool)))
    row = next(line for line in format_report(report).splitlines() if line.startswith("    r <= 2"))
    assert " 0.000167 " in row
    lo, hi = report.cells[0].rank_sets[2].reached.ci
    assert f"[{lo:.3g}, {hi:.3g}]" in row and "0.0000" not in row


def test_the_trajectories_that_went_below_the_start_are_listed_with_a_replay_command():
    """Per cell, the JSON lists every trajectory that went below its start rank with the step of
    its first record there; the table shows the first five and the command replaying one."""
    rank = np.full((2, 8, 4), 3)
    for t, c in [(1, 2), (4, 1), (5, 3), (6, 2), (7, 1), (2, 3)]:
        rank[:, t, c:] = 2
    ds = _dataset(rank, np.zeros((2, 8), bool))
    report = analyze(ds)
    cell, label = report.cells[0], ds["traj"].values  # trajectories by their labels
    steps = report.cells[0].steps
    pairs = [(1, 2), (2, 3), (4, 1), (5, 3), (6, 2), (7, 1)]
    want = [(int(label[t]), int(steps[c])) for t, c in pairs]
    assert list(cell.jumped) == want
    assert cell.to_dict()["jumped"] == [{"traj": t, "step": s} for t, s in want]
    lines = format_report(report, "r.nc").splitlines()
    went = next(line for line in lines if line.startswith("  went below rank 3: 6 trajectories"))
    first = want[0][0]
    assert went.endswith("... 1 more (--json lists all)") and f"{first} (step {want[0][1]})" in went
    command = lines[lines.index(went) + 1].split("see one step by step: ")[1]
    cell_arg = f"{cell.lam:g},{cell.eta:g}"
    assert command == f"rankjump replay r.nc --cell {cell_arg} --traj {first} --out jump{first}.nc"
    from rankjump.cli.main import build_parser

    args = build_parser().parse_args(command.split()[1:])  # a command the parser takes
    assert args.traj == first and args.cell == (cell.lam, cell.eta)
