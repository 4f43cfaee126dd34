"""Tests of the rare-event figure (rankjump.plots.rare) and `rankjump plot` on a rare result.

One real `rankjump rare` run (two cells: one whose runs all go extinct, one with an estimate > 0)
is shared by the module; other cases are that result with values set by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from support import jumps, make_ds

from rankjump import demo_config
from rankjump.cli.main import main
from rankjump.plots import fit_rare_probability, plot_rare_probability
from rankjump.rare_events.grid import rare
from rankjump.results.io import save_result
from rankjump.stats.analysis import analyze

LAM, ETAS, STEPS = 0.002, [0.17, 0.19], 12000


@pytest.fixture(scope="module")
def rare_ds() -> xr.Dataset:
    cfg = demo_config().replace(
        optimizer={"eta": ETAS},
        run={"steps": STEPS, "record_every": 2000, "trajectories": 64},
        rare={"method": "ams", "replicas": 8, "kill": 1, "runs": 2},
    )
    ds = rare(cfg, progress=False)
    # The cases below rely on these outcomes of the fixed seed.
    assert ds["p"].sel(eta=0.17).item() == 0 and ds["p"].sel(eta=0.19).item() > 0
    # Two runs never pass the diagnostics; the figure of reliable cells is tested on these cells
    # marked reliable, that of unreliable ones in its own test.
    assert not ds["reliable"].any()
    ds["reliable"][:] = True
    return ds


@pytest.fixture(scope="module")
def files(rare_ds, tmp_path_factory) -> dict:
    """The rare result and a hand-made simulate result on its cells, saved as netCDF."""
    root = tmp_path_factory.mktemp("rare_files")
    junk = root / "junk.nc"
    junk.write_text("not netCDF")
    return {
        "rare": save_result(rare_ds, root / "rare.nc"),
        "mc": save_result(_mc(), root / "mc.nc"),
        "junk": junk,
    }


def _mc() -> xr.Dataset:
    """16 trajectories per cell from rank 3: none drop to 2 at eta 0.17, 5 do at eta 0.19."""
    return make_ds(jumps(16, 3, [[0, 5]]), lam=[LAM], eta=ETAS)


def _two_lam(ds: xr.Dataset) -> xr.Dataset:
    """The result with a second lam (0.004) whose two cells have estimates set by hand."""
    two = xr.concat([ds, ds.assign_coords(lam=[0.004])], "lam")
    p = np.array([1e-3, 2e-2])
    for name, value in {
        "p": p,
        "p_hi": 3 * p,
        "log_p_lo": np.log(p) - [0.5, 0.2],
        "log_p_hi": np.log(p) + [0.7, 0.3],
        "run_estimate": np.stack([p, p], axis=-1),
    }.items():
        two[name].loc[{"lam": 0.004}] = value
    return two


def _series(fig: Figure, label: str) -> list:
    return [c for c in fig.axes[0].containers if c.get_label() == label]


def _line(fig: Figure, start: str):
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith(start)]
    return line


def _bars(container: ErrorbarContainer) -> np.ndarray:
    """(point, 2) lower and upper ends of the vertical error bars."""
    return np.array([seg[:, 1] for seg in container.lines[2][0].get_segments()])


def test_one_series_per_lam_at_the_estimates(rare_ds):
    ds = _two_lam(rare_ds)
    fig = plot_rare_probability(ds)
    for lam in (LAM, 0.004):
        (series,) = _series(fig, f"lam = {lam:g}: splitting")
        cell = ds.sel(lam=lam)
        drawn = cell["p"].values > 0
        assert drawn.sum() == (1 if lam == LAM else 2)
        x, y = series.lines[0].get_data()
        np.testing.assert_allclose(x, 1 / (cell["eta"].values[drawn] * lam))
        np.testing.assert_allclose(y, cell["p"].values[drawn])
        ends = np.exp(np.stack([cell["log_p_lo"], cell["log_p_hi"]], axis=-1))[drawn]
        np.testing.assert_allclose(_bars(series), ends)
    assert fig.axes[0].get_yscale() == "log" and fig.axes[0].get_xlabel() == "1 / (eta lam)"
    # Two cells at lam 0.004: the fit is the line through them; one at lam 0.002: no fit.
    fits = fit_rare_probability(ds)
    assert list(fits) == [0.004]
    x = 1 / (np.array(ETAS) * 0.004)
    slope = (math.log(2e-2) - math.log(1e-3)) / (x[1] - x[0])
    assert fits[0.004].slope == pytest.approx(slope) and fits[0.004].cells == 2
    line = _line(fig, "lam = 0.004: line through 2 cells")
    assert f"slope {slope:.4g}" in line.get_label()
    np.testing.assert_allclose(np.log(line.get_ydata()[[0, -1]]), np.log([2e-2, 1e-3]))


def test_unreliable_cells_are_hollow_with_only_the_lower_end_for_any_law(rare_ds):
    ds = _two_lam(rare_ds)
    ds["reliable"].loc[{"lam": 0.004, "eta": 0.19}] = False
    fig = plot_rare_probability(ds)
    (series,) = _series(fig, "lam = 0.004: unreliable, down to the lower end for any law")
    p = ds["p"].sel(lam=0.004, eta=0.19).item()
    np.testing.assert_allclose(series.lines[0].get_xydata(), [[1 / (0.19 * 0.004), p]])
    assert series.lines[0].get_markerfacecolor() == "none"
    np.testing.assert_allclose(_bars(series), [[0.025 * p, p]])  # no upper end
    (kept,) = _series(fig, "lam = 0.004: splitting")
    np.testing.assert_allclose(kept.lines[0].get_xdata(), [1 / (0.17 * 0.004)])
    assert "hollow circles: unreliable cells" in fig.get_supxlabel()
    # Left out of the fit: one reliable cell is left at lam 0.004, so no line there.
    assert 0.004 not in fit_rare_probability(ds)


def test_the_fit_weights_cells_by_their_interval(rare_ds):
    ds = rare_ds.isel(eta=[1, 1, 1]).assign_coords(eta=[0.1, 0.2, 0.4])
    x = 1 / (ds["eta"].values * LAM)
    on_line = np.exp(-1.0 - 0.002 * x)
    p = on_line * [1, 1, 5]  # the third cell off the line

    def miss(half_width_of_third: float) -> float:
        """How far the fit line passes from the third cell, in ln p."""
        half = np.array([0.1, 0.1, half_width_of_third])
        logs = {"p": p, "log_p_lo": np.log(p) - half, "log_p_hi": np.log(p) + half}
        for name, value in logs.items():
            ds[name].loc[{"lam": LAM}] = value
        fit = fit_rare_probability(ds)[LAM]
        return abs(fit.intercept + fit.slope * x[2] - np.log(p[2]))

    assert miss(1e3) == pytest.approx(np.log(5), rel=1e-3)  # a wide interval barely counts
    assert miss(1e-3) < 0.01  # a narrow one pulls the line through the cell


def test_zero_and_missing_estimates_are_shown(rare_ds):
    x0 = 1 / (0.17 * LAM)
    fig = plot_rare_probability(rare_ds)
    foot = _line(fig, f"lam = {LAM:g}: p = 0 (every run estimated 0)")
    assert foot.get_xdata().tolist() == pytest.approx([x0])
    assert foot.get_transform() == fig.axes[0].get_xaxis_transform()
    assert any(t.get_text() == "p = 0" for t in fig.axes[0].texts)
    assert rare_ds["run_extinct"].sel(lam=LAM, eta=0.17).values.all()  # both runs died out
    assert "runs estimating 0: lam 0.002, eta 0.17: 2 of 2 (2 died out)" in fig.get_supxlabel()
    # A run that finished with no replica at the target estimates 0 too, without dying out.
    finished = rare_ds.copy(deep=True)
    finished["run_extinct"][:] = False
    fig = plot_rare_probability(finished)
    assert _line(fig, f"lam = {LAM:g}: p = 0 (every run estimated 0)")
    label = fig.get_supxlabel()
    assert "runs estimating 0: lam 0.002, eta 0.17: 2 of 2" in label and "died out" not in label
    # With an upper interval end above 0 the cell is drawn there.
    bounded = rare_ds.copy(deep=True)
    bounded["p_hi"].loc[{"lam": LAM, "eta": 0.17}] = 1e-4
    line = _line(plot_rare_probability(bounded), f"lam = {LAM:g}: p = 0, upper interval end")
    np.testing.assert_allclose(line.get_xydata(), [[x0, 1e-4]])
    # An estimate whose interval reaches 0 gets an arrow from it down to the foot, and a note.
    open_below = rare_ds.copy(deep=True)
    open_below["log_p_lo"].loc[{"lam": LAM, "eta": 0.19}] = -np.inf
    fig = plot_rare_probability(open_below)
    (arrow,) = [t for t in fig.axes[0].texts if t.arrow_patch is not None]
    p = rare_ds["p"].sel(lam=LAM, eta=0.19).item()
    assert arrow.xy == pytest.approx((1 / (0.19 * LAM), 0.03)) and arrow.xyann == pytest.approx(
        (1 / (0.19 * LAM), p)
    )
    bar = _line(fig, f"lam = {LAM:g}: lower end for any law of the runs")
    np.testing.assert_allclose(bar.get_xydata(), [[1 / (0.19 * LAM), 0.025 * p]])
    assert fig.axes[0].get_ylim()[0] <= 0.025 * p / 3  # room for the arrow below the bar
    assert _bars(fig.axes[0].containers[0])[0] == pytest.approx(
        [p, np.exp(rare_ds["log_p_hi"].sel(lam=LAM, eta=0.19).item())]
    )
    assert "arrows down to the foot of the axes: t intervals whose lower end is p = 0" in (
        fig.get_supxlabel()
    )
    assert "Markov's inequality" in fig.get_supxlabel()
    assert not [t for t in plot_rare_probability(rare_ds).axes[0].texts if t.arrow_patch]
    # An unfinished run leaves the cell without an estimate: a cross at the foot and a note.
    unfinished = rare_ds.copy(deep=True)
    unfinished["p"].loc[{"lam": LAM, "eta": 0.19}] = np.nan
    unfinished["run_finished"].loc[{"lam": LAM, "eta": 0.19, "run": 1}] = False
    fig = plot_rare_probability(unfinished)
    assert _line(fig, f"lam = {LAM:g}: no estimate").get_xdata() == pytest.approx(1 / (0.19 * LAM))
    assert "lam 0.002, eta 0.19: 1 of 2 runs unfinished" in fig.get_supxlabel()


def test_beside_points_are_the_simulate_proportions(rare_ds):
    mc = _mc()
    fig = plot_rare_probability(rare_ds, [mc], labels=["mc.nc"])
    reached = [c.rank_sets[2].reached for c in analyze(mc, start_rank=3).cells]
    assert [(r.count, r.n) for r in reached] == [(0, 16), (5, 16)]
    (series,) = _series(fig, f"lam = {LAM:g}: plain MC (mc.nc)")
    x, y = series.lines[0].get_data()
    assert x == pytest.approx([1 / (0.19 * LAM)]) and y == pytest.approx([5 / 16])
    np.testing.assert_allclose(_bars(series), [reached[1].ci])
    bound = _line(fig, f"lam = {LAM:g}: plain MC (mc.nc), none entered")
    np.testing.assert_allclose(bound.get_xydata(), [[1 / (0.17 * LAM), reached[0].ci[1]]])
    text = fig.get_supxlabel()
    assert "plain MC (mc.nc): 16 trajectories per cell, entered by step 200" in text
    assert "(splitting: 12000)" in text


def test_titles_say_event_and_method(rare_ds):
    fig = plot_rare_probability(rare_ds, [_mc()])
    title = " ".join(fig.get_suptitle().split())
    assert "Entering B_target = {rank <= 2} within 12000 steps from rank 3" in title
    assert "AMS splitting, 8 replicas x 2 runs per cell, beside plain Monte Carlo" in title
    caption = fig.get_supxlabel()
    assert "8 replicas x 2 runs per cell (kill 1, score layer_mean)" in caption
    assert "64 trajectories" not in caption
    assert "95% t intervals on ln p" in title
    # The rate method stores the t interval on p, and the title says so.
    rate = rare_ds.copy()
    rate.attrs["method"] = "rate"
    title = " ".join(plot_rare_probability(rate).get_suptitle().split())
    assert "RATE splitting" in title and "95% t intervals on p (the rate method)" in title
    host = Figure()
    axes = host.subplots(1, 2)
    assert plot_rare_probability(rare_ds, ax=axes[1]) is host
    assert "AMS splitting" in axes[1].get_title() and not host.get_suptitle()
    assert axes[1].get_lines() and not axes[0].get_lines()


def test_a_rare_figure_needs_a_rare_result(rare_ds):
    with pytest.raises(ValueError, match="not a `rankjump rare` result"):
        plot_rare_probability(_mc())
    with pytest.raises(ValueError, match="without p_hi"):
        plot_rare_probability(rare_ds.drop_vars("p_hi"))
    with pytest.raises(ValueError, match="1 labels for 2 beside results"):
        plot_rare_probability(rare_ds, [_mc(), _mc()], labels=["a"])


def test_cli_writes_the_rare_figure(files, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["plot", str(files["rare"]), "--out", str(out), "--beside", str(files["mc"])]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "rare_probability.png"), str(out / "rare_probability.pdf")]
    assert (out / "rare_probability.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--beside", "{rare}"], "--beside {rare}: a `rankjump rare` result"),
        (["--beside", "{mc}", "{junk}"], "--beside {junk}: not a readable netCDF result file"),
        (["--beside", "{junk}.missing"], "--beside {junk}.missing: no such result file"),
        (["--gd", "{mc}"], "--gd {mc}: goes with a simulate result"),
    ],
)
def test_cli_rare_errors_name_the_file(files, tmp_path, capsys, argv, message):
    out = tmp_path / "figs"
    argv = [a.format(**files) for a in argv]
    assert main(["plot", str(files["rare"]), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(**files) in err
    assert not out.exists()


def test_cli_beside_needs_a_rare_file(files, tmp_path, capsys):
    argv = ["plot", str(files["mc"]), "--out", str(tmp_path), "--beside", str(files["mc"])]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{files['mc']} is a simulation" in err
