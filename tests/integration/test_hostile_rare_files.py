"""Rare results that stats and plot must read, or refuse in one line: results over several lam
or eta (``rankjump rare`` over a list, or parts joined by merge_lams / merge_etas), foreign or
edited rare files, and numbers that must agree with what the file says (intervals on a
probability end at 1, a cell without an estimate says why, merged grids come out sorted, and
stats' options either apply to a rare result or are refused by name)."""

from __future__ import annotations

import functools
import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from rankjump import config_from_dict, config_to_toml, demo_config, load_result
from rankjump.cli.main import main
from rankjump.rare_events.grid import rare
from rankjump.rare_events.merging import merge_etas, merge_lams
from rankjump.results.io import ResultError, save_result
from rankjump.stats import rare_at_level, summarize

# The demo's minimum at a small eta with the fewest replicas, runs and steps: every run dies
# out (p = 0) within a few seconds; the numbers of other cells are written over it below.
CFG = demo_config().replace(
    optimizer={"eta": [0.05]},
    run={"steps": 400, "record_every": 200, "trajectories": 1, "dtype": "float64"},
    rare={"method": "ams", "replicas": 4, "kill": 1, "runs": 2},
)


@functools.cache
def _real(**rare_settings) -> xr.Dataset:
    return rare(CFG.replace(rare=rare_settings) if rare_settings else CFG, progress=False)


def _one() -> xr.Dataset:
    return _real().copy(deep=True)


def _moved(ds: xr.Dataset, **grid) -> xr.Dataset:
    """``ds`` as if run at other grid values (``lam=[...]`` or ``eta=[...]``), its configuration
    saying so."""
    cfg = tomllib.loads(ds.attrs["config"])
    cfg["optimizer"].update(grid)
    moved = ds.copy(deep=True).assign_coords(grid)
    return moved.assign_attrs(config=config_to_toml(config_from_dict(cfg)))


def _with_runs(ds: xr.Dataset, estimates) -> xr.Dataset:
    """``ds`` (one cell per part of the grid) with these run estimates (lam, eta, runs): its
    runs finished, p and its intervals as rare computes them, diagnostics from the runs."""
    estimates = np.asarray(estimates, float)
    m = estimates.shape[-1]
    out = ds.isel(run=np.zeros(m, int)).assign_coords(run=np.arange(m))
    out = out.drop_vars(["runs_effective", "top_share", "tail_index", "relvar_n", "reliable"])
    out["run_estimate"] = (("lam", "eta", "run"), estimates)
    out["run_finished"] = (("lam", "eta", "run"), np.ones(estimates.shape, bool))
    out["run_extinct"] = (("lam", "eta", "run"), estimates == 0)
    out["run_made"] = (("lam", "eta", "run"), np.ones(estimates.shape, bool))
    out["p"] = (("lam", "eta"), estimates.mean(-1))
    return rare_at_level(out, out.attrs["level"])


def _save(ds: xr.Dataset, path: Path) -> str:
    ds.to_netcdf(path, engine="h5netcdf")
    return str(path)


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def _refused(argv, capsys, *words) -> str:
    """Runs argv, checks it is refused in one line naming ``words``; returns the line."""
    code, out, err = _run(argv, capsys)
    assert code == 2 and out == "" and len(err) == 1, (code, out, err)
    assert "Traceback" not in err[0]
    for word in words:
        assert word in err[0], (word, err[0])
    return err[0]


# ----------------------------------------------------------- several lam and eta in one result


def _two_lams(ds: xr.Dataset) -> xr.Dataset:
    """merge_lams of ``ds`` and a copy at another lam whose start and target ranks differ."""
    other = _moved(ds, lam=[0.004]).assign_attrs(start_rank=[4], target_rank=[3])
    return merge_lams([ds, other])


def test_stats_reads_a_rare_result_over_several_lam(tmp_path, capsys):
    estimates = [[np.linspace(1e-3, 3e-3, 30)], [np.linspace(2e-4, 4e-4, 30)]]
    whole = _two_lams(_one())
    path = _save(_with_runs(whole, estimates), tmp_path / "lams.nc")
    code, out, err = _run(["stats", path], capsys)
    assert code == 0 and err == []
    rows = out.splitlines()[2:4]
    assert rows[0].split()[:2] == ["0.002", "0.05"] and rows[1].split()[:2] == ["0.004", "0.05"]
    assert "0.002" in rows[0].split()[2] and "0.0003" in rows[1].split()[2]
    code, out, err = _run(["stats", path, "--json"], capsys)
    assert code == 0 and err == []
    summary = json.loads(out)
    # The ranks differ per lam: each cell has its own, the top level none.
    assert summary["start_rank"] is None and summary["target_rank"] is None
    ranks = [(c["lam"], c["start_rank"], c["target_rank"]) for c in summary["cells"]]
    assert ranks == [(0.002, 3, 2), (0.004, 4, 3)]
    assert summary["cells"][0]["p"] == pytest.approx(2e-3)


def test_stats_and_plot_read_a_rare_result_over_several_eta(tmp_path, capsys):
    one = _one()
    whole = merge_etas([one, _moved(one, eta=[0.1])])
    estimates = [[np.linspace(1e-4, 3e-4, 30), np.linspace(1e-3, 3e-3, 30)]]
    path = _save(_with_runs(whole, estimates), tmp_path / "etas.nc")
    code, out, _ = _run(["stats", path, "--json"], capsys)
    assert code == 0
    summary = json.loads(out)
    assert (summary["start_rank"], summary["target_rank"]) == (3, 2)
    assert [c["eta"] for c in summary["cells"]] == [0.05, 0.1]
    code, out, err = _run(["plot", path, "--out", str(tmp_path / "fig"), "--format", "png"], capsys)
    assert code == 0 and err == [] and (tmp_path / "fig" / "rare_probability.png").exists()


def test_plot_draws_a_rare_result_over_several_lam_with_their_own_ranks(tmp_path, capsys):
    from rankjump.plots import plot_rare_probability

    estimates = [[np.linspace(1e-3, 3e-3, 30)], [np.linspace(2e-4, 4e-4, 30)]]
    path = _save(_with_runs(_two_lams(_one()), estimates), tmp_path / "lams.nc")
    code, out, err = _run(["plot", path, "--out", str(tmp_path / "fig"), "--format", "png"], capsys)
    assert code == 0 and err == [] and out.strip().endswith("rare_probability.png")
    fig = plot_rare_probability(load_result(path, kinds=("rare",)))
    title = fig.get_suptitle()
    assert "rank <= 2 / 3 (lam 0.002 / 0.004)" in " ".join(title.split())
    assert "start_rank" not in title and "target_rank" not in title


@pytest.mark.slow
def test_rare_over_a_lam_list_is_read_by_stats_and_plot(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(config_to_toml(CFG.replace(optimizer={"lam": [0.002, 0.003]})))
    out = tmp_path / "rare.nc"
    assert main(["rare", str(config), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    for argv in (["stats", str(out)], ["stats", str(out), "--json"]):
        code, printed, err = _run(argv, capsys)
        assert code == 0 and err == [], err
    assert [c["start_rank"] for c in json.loads(printed)["cells"]] == [3, 3]
    code, _, err = _run(["plot", str(out), "--out", str(tmp_path / "fig")], capsys)
    assert code == 0 and err == []


# ------------------------------------------------------------- foreign or edited rare files


def _drop_attrs(*names):
    def edit(ds):
        for name in names:
            del ds.attrs[name]
        return ds

    return edit


EDITS = {
    "no level": (_drop_attrs("level"), "without the attribute level"),
    "no start_rank": (_drop_attrs("start_rank"), "without the attribute start_rank"),
    "no ranks": (
        _drop_attrs("start_rank", "target_rank"),
        "without the attributes start_rank, target_rank",
    ),
    "no config": (_drop_attrs("config"), "without the attribute config"),
    "config not TOML": (
        lambda ds: ds.assign_attrs(config="[run\nsteps = "),
        "attribute config is not a configuration",
    ),
    "level out of range": (
        lambda ds: ds.assign_attrs(level=95.0),
        "attribute level = 95.0: must lie in (0, 1)",
    ),
    "level as text": (lambda ds: ds.assign_attrs(level="0.95"), "attribute level = '0.95'"),
    "ranks for other lam": (
        lambda ds: ds.assign_attrs(start_rank=[3, 3, 3]),
        "attribute start_rank = ",
    ),
    "unknown method": (lambda ds: ds.assign_attrs(method="mcmc"), "attribute method = 'mcmc'"),
    "p over one dimension": (
        lambda ds: ds.assign(p=("x", [0.1])),
        "variable p is over (x); a rare result's is over (lam, eta)",
    ),
    "run estimates over runs only": (
        lambda ds: ds.assign(run_estimate=("run", [0.1, 0.2])),
        "variable run_estimate is over (run); a rare result's is over (lam, eta, run)",
    ),
    "eta_edge per cell": (
        lambda ds: ds.assign(eta_edge=(("lam", "eta"), [[0.1]])),
        "variable eta_edge is over (lam, eta)",
    ),
    "text in a variable": (
        lambda ds: ds.assign(p_hi=(("lam", "eta"), [["high"]])),
        "variable p_hi holds",
    ),
    "no lam values": (lambda ds: ds.drop_vars("lam"), "without its lam values"),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_an_edited_rare_file_is_refused_in_one_line_by_stats_and_plot(name, tmp_path, capsys):
    edit, words = EDITS[name]
    path = _save(edit(_one()), tmp_path / "edited.nc")
    figures = tmp_path / "fig"
    for argv in (["stats", path], ["stats", path, "--json"], ["plot", path, "--out", str(figures)]):
        line = _refused(argv, capsys, path, words)
        assert line.startswith(f"rankjump {argv[0]}: error: {path}: "), line
    assert not figures.exists()
    with pytest.raises(ResultError, match="rare result|variable|attribute"):
        load_result(path, kinds=("rare",))


def test_a_rare_file_with_its_dimensions_in_another_order_reads_as_the_original(tmp_path, capsys):
    ds = _with_runs(_two_lams(_one()), [[np.linspace(1e-3, 3e-3, 30)], [np.full(30, 2e-4)]])
    straight = _save(ds, tmp_path / "straight.nc")
    turned = _save(ds.transpose("run", "eta", "lam", ...), tmp_path / "turned.nc")
    printed = []
    for path in (straight, turned):
        code, out, _ = _run(["stats", path, "--json"], capsys)
        assert code == 0
        printed.append(json.loads(out)["cells"])
    assert printed[0] == printed[1]


# -------------------------------------------------- numbers that agree with what the file says


def test_an_interval_on_a_probability_ends_at_1():
    spread = [0.0, 0.0, 1.0]  # two runs died out, one reached the target at once
    clipped, raw = summarize(spread), summarize(spread, upper=math.inf)
    assert raw.ci[1] > 1 and raw.log_ci[1] > 0  # the t interval itself
    assert clipped.ci == (raw.ci[0], 1.0) and clipped.log_ci == (raw.log_ci[0], 0.0)
    assert clipped.mean == raw.mean and clipped.stderr == raw.stderr
    within = summarize([0.1, 0.2, 0.15])
    assert within == summarize([0.1, 0.2, 0.15], upper=math.inf)


def test_a_file_whose_interval_passes_1_shows_it_ending_at_1(tmp_path, capsys):
    """A file written before the clip: p_hi = 3.31 is read as 1, ln p's upper end as 0."""
    ds = _with_runs(_one(), [[np.linspace(0.6, 1.0, 30)]])  # reliable: the interval is shown
    ds["p_hi"][:] = 3.31
    ds["log_p_hi"][:] = math.log(3.31)
    path = _save(ds, tmp_path / "old.nc")
    assert load_result(path, kinds=("rare",))["p_hi"].values.tolist() == [[1.0]]
    code, out, _ = _run(["stats", path], capsys)
    assert code == 0 and "3.31" not in out and ", 1]" in out
    code, out, _ = _run(["stats", path, "--json"], capsys)
    cell = json.loads(out)["cells"][0]
    assert cell["t_ci"][1] == 1.0 and cell["log_ci"][1] == 0.0
    # The figure's error bar ends at 1 too, on an axis that stops just above it.
    from rankjump.plots import plot_rare_probability

    ax = plot_rare_probability(ds).axes[0]
    assert ax.get_ylim()[1] <= 1.2


def test_a_cell_stopped_at_max_iterations_says_why_it_has_no_estimate(tmp_path, capsys):
    path = tmp_path / "stopped.nc"
    save_result(_real(max_iterations=1), path)
    code, out, err = _run(["stats", str(path)], capsys)
    assert code == 0 and err == []
    row = out.splitlines()[2].split()
    assert row[2] == "-" and "nan" not in out
    assert "no estimate" in out
    assert "2 of 2 runs stopped at rare.max_iterations = 1 before they finished" in out
    code, out, _ = _run(["stats", str(path), "--json"], capsys)
    cell = json.loads(out)["cells"][0]
    assert cell["p"] is None and cell["runs_unfinished"] == 2 and cell["runs_finished"] == 0
    assert "rare.max_iterations = 1" in cell["no_estimate"]
    finished = json.loads(_stats_json(tmp_path, _one(), capsys))["cells"][0]
    assert finished["no_estimate"] is None and finished["runs_unfinished"] == 0


def _stats_json(tmp_path: Path, ds: xr.Dataset, capsys, *options) -> str:
    path = _save(ds, tmp_path / "stats.nc")
    code, out, err = _run(["stats", path, "--json", *options], capsys)
    assert code == 0 and err == [], err
    return out


@pytest.mark.parametrize("merge", [merge_etas, merge_lams])
def test_parts_merged_out_of_order_come_out_sorted(merge):
    one = _one()
    dim = "eta" if merge is merge_etas else "lam"
    values = [0.2, 0.05, 0.1] if dim == "eta" else [0.004, 0.002, 0.003]
    parts = [_moved(one, **{dim: [v]}) for v in values]
    for k, part in enumerate(parts):
        part["p"][:] = values[k] / 10  # a number to follow each part by
        if dim == "lam":
            part.attrs["start_rank"] = [k + 3]
            part["eta_edge"][:] = values[k]
    whole = merge(parts)
    assert whole[dim].values.tolist() == sorted(values)
    np.testing.assert_allclose(whole["p"].values.ravel(), np.array(sorted(values)) / 10)
    assert tomllib.loads(whole.attrs["config"])["optimizer"][dim] == sorted(values)
    if dim == "lam":
        assert whole.attrs["start_rank"] == [4, 5, 3]  # each lam keeps its own
        np.testing.assert_allclose(whole["eta_edge"].values, sorted(values))


def test_options_of_a_simulate_result_are_refused_on_a_rare_one(tmp_path, capsys):
    path = _save(_one(), tmp_path / "rare.nc")
    line = _refused(
        ["stats", "--level", "0.5", "--ci", "exact", "--on", "any_layer", path],
        capsys,
        "--on, --ci",
        path,
        "only --level applies",
    )
    assert "--level" not in line.split(":")[2]  # the options refused, not --level
    for option in (["--after", "10"], ["--start-rank", "3"], ["--ci", "wilson"]):
        _refused(["stats", path, *option], capsys, option[0], path)


def test_level_makes_a_rare_result_s_intervals_again_from_its_runs(tmp_path, capsys):
    # At the result's own level the intervals are the ones rare computed.
    real = _one()
    again = rare_at_level(real, real.attrs["level"])
    for name in ("p", "p_lo", "p_hi", "log_p_lo", "log_p_hi"):
        np.testing.assert_array_equal(again[name], real[name], err_msg=name)
    runs = np.linspace(1e-3, 3e-3, 30)
    ds = _with_runs(real, [[runs]])
    cell = json.loads(_stats_json(tmp_path, ds, capsys, "--level", "0.5"))
    half = summarize(runs, 0.5)
    assert cell["level"] == 0.5
    assert cell["cells"][0]["t_ci"] == pytest.approx(list(half.ci), rel=1e-12)
    assert cell["cells"][0]["log_ci"] == pytest.approx(list(half.log_ci), rel=1e-12)
    assert cell["cells"][0]["lo_any_law"] == pytest.approx(0.25 * runs.mean())
    wide = json.loads(_stats_json(tmp_path, ds, capsys))["cells"][0]["t_ci"]
    assert wide[0] < half.ci[0] and half.ci[1] < wide[1]
    code, out, _ = _run(["stats", str(tmp_path / "stats.nc"), "--level", "0.5"], capsys)
    assert code == 0 and "50% t interval" in out


def test_level_is_refused_on_a_rate_result(tmp_path, capsys):
    path = _save(_one().assign_attrs(method="rate"), tmp_path / "rate.nc")
    _refused(["stats", path, "--level", "0.5"], capsys, "--level 0.5", path, "rate-method")
    code, _, _ = _run(["stats", path, "--level", "0.95"], capsys)  # its own level: nothing to redo
    assert code == 0
