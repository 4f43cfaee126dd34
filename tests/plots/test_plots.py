"""Tests of rankjump.plots and the `plot` subcommand, on small hand-made result Datasets."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import PolyCollection
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from support import jumps, make_ds

from rankjump import plots
from rankjump.cli import plot as plots_cli
from rankjump.results.io import save_result
from rankjump.stats.analysis import analyze


@pytest.fixture
def grid_ds() -> xr.Dataset:
    """2 lam x 2 eta, 8 trajectories, 5 checkpoints; one diverged trajectory in the last cell."""
    rank = jumps(8, 5, [[1, 2], [3, 4]])
    diverged = np.zeros((2, 2, 8), bool)
    diverged[1, 1, 7] = True
    rank[1, 1, 7, 3:] = -1
    return make_ds(rank, lam=[0.1, 0.2], eta=[0.5, 1.0], diverged=diverged)


def caption(fig: Figure) -> str:
    return fig.get_suptitle() + "\n" + fig.get_supxlabel()


def visible(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def test_describe_names_the_configuration(grid_ds):
    text = plots.describe(grid_ds)
    for part in ("5x4 rank-2 target", "60% observed", "noise 0", "depth 3", "width 4"):
        assert part in text
    for part in ("SGD, batch 1", "400 steps", "8 trajectories per cell", "float64", "rule all_"):
        assert part in text
    assert plots.describe(grid_ds.drop_attrs()) == "configuration not recorded"


@pytest.mark.parametrize(("x", "other"), [("eta", "lam"), ("lam", "eta")])
def test_jump_probability_lines_bands_and_labels(grid_ds, x, other):
    report = analyze(grid_ds)
    fig = plots.plot_jump_probability(grid_ds, report, x=x)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 2
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2
    assert x in ax.get_xlabel()
    assert ax.get_ylabel() == "P(rank <= 2 by step 400 | not diverged)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"{other} = {v:g}" for v in grid_ds[other].values]
    # The line of lam = 0.2 against eta holds that row's P: 3/8, then 4/7 (one diverged).
    first = {"eta": [1 / 8, 2 / 8], "lam": [1 / 8, 3 / 8]}[x]
    np.testing.assert_allclose(lines[0].get_ydata(), first)
    last = {"eta": [3 / 8, 4 / 7], "lam": [2 / 8, 4 / 7]}[x]
    np.testing.assert_allclose(lines[1].get_ydata(), last)
    assert ax.get_xscale() == "linear"
    text = caption(fig)
    assert "Jump probability against " + x in text and "depth 3" in text
    assert "1 of 32 trajectories diverged, excluded (lam 0.2, eta 1: 1)" in text


def test_jump_probability_log_scale_and_bad_axis():
    ds = make_ds(jumps(4, 3, [[1, 2, 3]]), lam=[0.01], eta=[0.01, 0.1, 1.0])
    fig = plots.plot_jump_probability(ds, x="eta")
    assert fig.axes[0].get_xscale() == "log"
    with pytest.raises(ValueError, match="x must be"):
        plots.plot_jump_probability(ds, x="batch")


def test_log_probability_fit_has_the_constructed_slope():
    # P = 1/2, 1/4, 1/8 at 1/(eta lam) = 10, 20, 30: ln P = -(ln 2 / 10) / (eta lam) exactly.
    ds = make_ds(jumps(8, 4, [[4, 2, 1]]), lam=[0.1], eta=[1.0, 0.5, 1 / 3])
    report = analyze(ds)
    expected = -math.log(2) / 10
    fit = plots.fit_log_probability(report)
    assert fit.cells == 3
    assert fit.slope == pytest.approx(expected, rel=1e-9)
    assert fit.intercept == pytest.approx(0.0, abs=1e-9)
    fig = plots.plot_log_probability(ds, report)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "1 / (eta lam)"
    assert ax.get_ylabel().startswith("ln P(rank <= 2")
    (line,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    x, y = line.get_xydata().T
    assert (y[-1] - y[0]) / (x[-1] - x[0]) == pytest.approx(expected, rel=1e-9)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"slope {expected:.4g}" in labels[0] and "over 3 cells" in labels[0]
    assert "lam = 0.1" in labels
    assert "ln P against 1/(eta lam)" in fig.get_suptitle()


def test_log_probability_with_too_few_cells_says_so():
    # P = 0, 1 and 1/2: one usable cell, no fit; the P = 0 cell is drawn at its upper CI end.
    ds = make_ds(jumps(4, 3, [[0, 4, 2]]), lam=[0.1], eta=[0.5, 1.0, 2.0])
    assert plots.fit_log_probability(analyze(ds)) is None
    fig = plots.plot_log_probability(ds)
    (ax,) = fig.axes
    assert not [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert any("fewer than 2 cells" in t.get_text() for t in ax.texts)
    assert "fewer than 2 cells" in caption(fig)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["P = 0 (not fitted): ln of upper CI end", "lam = 0.1"]


def test_rank_fractions_stack_to_one_without_diverged(grid_ds):
    fig = plots.plot_rank_fractions(grid_ds)
    axes = visible(fig)
    assert len(axes) == 4
    for ax in axes:
        assert len(ax.collections) == 2  # ranks 2 and 3
    assert axes[2].get_xlabel() == "step" and axes[0].get_xlabel() == ""
    assert axes[0].get_ylabel() == "fraction of trajectories"
    assert axes[3].get_title() == "lam 0.2, eta 1\nn = 7, diverged 1"
    # Last cell, last checkpoint: 4 of the 7 kept trajectories at rank 2, the top of the stack 1.
    low, top = (c.get_paths()[0].vertices[:, 1].max() for c in axes[3].collections)
    assert low == pytest.approx(4 / 7) and top == pytest.approx(1.0)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["rank 3", "rank 2"]
    assert "1 of 32 trajectories diverged" in caption(fig)


def test_rank_fractions_choice_and_cap(grid_ds):
    fig = plots.plot_rank_fractions(grid_ds, max_cells=3)
    assert len(visible(fig)) == 3
    assert "showing the 3 of 4 cells with the largest jump probability" in caption(fig)
    # The cell left out is the one where the fewest trajectories dropped below the start rank.
    cells = analyze(grid_ds).cells
    p = [c.rank_sets[c.start_rank - 1].reached.p for c in cells]
    kept = [f"lam {c.lam:g}, eta {c.eta:g}" for i, c in enumerate(cells) if i != np.argmin(p)]
    assert [ax.get_title().split("\n")[0] for ax in visible(fig)] == kept
    assert len(set(p)) == len(p)  # the choice is not a tie
    fig = plots.plot_rank_fractions(grid_ds, cells=[(0.2, 0.5)])
    (ax,) = visible(fig)
    assert ax.get_title().startswith("lam 0.2, eta 0.5")
    with pytest.raises(ValueError, match="no cell lam = 0.3"):
        plots.plot_rank_fractions(grid_ds, cells=[(0.3, 0.5)])


def test_singular_values_split_jumped_and_stayed(grid_ds):
    fig = plots.plot_singular_values(grid_ds, n_jumped=2, n_stayed=3)
    axes = fig.axes
    assert len(axes) == 2
    assert axes[0].get_title() == "reached rank <= 2 (2 shown)"
    assert axes[1].get_title() == "stayed above rank 2 (3 shown)"
    assert all(ax.get_yscale() == "log" for ax in axes)
    assert axes[0].get_ylabel() == "singular values of A_theta"
    # Default cell: most jumps (lam 0.2, eta 1: 4, the diverged trajectory 7 excluded).
    assert "cell lam 0.2, eta 1: 1 diverged" in caption(fig)
    # The layer threshold the rank is judged by is named with its value, beside the line drawn.
    assert "threshold_layer = 0.001 per layer" in caption(fig).replace("\n", " ")
    legend = [t.get_text() for t in axes[1].get_legend().get_texts()]
    assert legend == ["traj 4", "traj 5", "traj 6"]
    for ax, n_traj in zip(axes, (2, 3), strict=True):
        labels = [ln.get_label() for ln in ax.get_lines()]
        modes = [lb for lb in labels if lb.startswith("traj") or lb.startswith("_child")]
        assert len(modes) >= 4 * n_traj  # modes 1..start rank + 1 per trajectory
        assert "threshold_end = 1e-09 (eps_layer^L)" in labels
        assert any(lb.startswith("rel_floor x s_1") for lb in labels)
        assert any(t.get_text().startswith("threshold_end") for t in ax.texts)
    (thr,) = [ln for ln in axes[0].get_lines() if ln.get_label().startswith("threshold_end")]
    assert thr.get_ydata()[0] == pytest.approx(1e-9)
    assert "rank <= 2 first seen" in [t.get_text() for t in axes[0].get_legend().get_texts()]


def test_singular_values_given_cell_and_trajectories(grid_ds):
    fig = plots.plot_singular_values(grid_ds, cell=(0.2, 1.0), traj=[0, 6, 7])
    assert [ax.get_title() for ax in fig.axes] == [
        "reached rank <= 2 (1 shown)",
        "stayed above rank 2 (1 shown)",  # trajectory 7 diverged: left out
    ]
    fig = plots.plot_singular_values(grid_ds, cell=(0.1, 0.5), traj=[5, 6])
    (ax,) = fig.axes
    assert ax.get_title() == "stayed above rank 2 (2 shown)"


def test_transitions_heatmaps_annotate_counts():
    rank = jumps(4, 4, [[1, 2]])
    rank[0, 1, 0, 3] = 3  # one upward move in the second cell
    ds = make_ds(rank, lam=[0.1], eta=[0.5, 1.0])
    report = analyze(ds)
    fig = plots.plot_transitions(ds, report)
    axes = visible(fig)
    assert len(axes) == 2
    for ax, cell in zip(axes, report.cells, strict=True):
        assert len(ax.images) == 1
        texts = {(t.get_position(), t.get_text()) for t in ax.texts}
        for (i, j), value in np.ndenumerate(cell.transitions):
            assert ((j, i), str(value)) in texts
        assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "3"]
    assert axes[0].get_xlabel() == "rank at next checkpoint"
    assert axes[0].get_ylabel() == "rank at checkpoint"
    assert axes[1].get_title() == "lam 0.1, eta 1\nupward 1 of 12"
    (up,) = [t for t in axes[1].texts if t.get_position() == (1, 0)]
    assert up.get_text() == "1" and up.get_color() == "C3"
    assert "pooled: 1 upward moves in 24 transitions" in caption(fig)


def test_final_rank_sgd_alone_and_beside_gd(grid_ds):
    fig = plots.plot_final_rank(grid_ds)
    axes = visible(fig)
    assert len(axes) == 4
    assert all(sum(isinstance(c, BarContainer) for c in ax.containers) == 1 for ax in axes)
    assert not fig.legends
    assert fig.get_suptitle() == "Rank at step 400: SGD (95% intervals)"
    heights = [b.get_height() for b in axes[3].containers[0]]
    assert heights == pytest.approx([4 / 7, 3 / 7])
    assert axes[3].get_title() == "lam 0.2, eta 1\nSGD n = 7 (1 div.)"
    assert "1 of 32 trajectories diverged" in caption(fig)

    gd = make_ds(jumps(1, 5, [[0, 0], [0, 0]]), lam=[0.1, 0.2], eta=[0.5, 1.0])
    gd.attrs["config"] = gd.attrs["config"].replace('kind = "sgd"', 'kind = "gd"')
    fig = plots.plot_final_rank(grid_ds, gd=gd)
    axes = visible(fig)
    for ax in axes:
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert len(bars) == 2
        assert [b.get_height() for b in bars[1]] == pytest.approx([0.0, 1.0])
        assert ax.get_title().endswith("GD n = 1")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["SGD", "GD"]
    assert "SGD beside GD" in fig.get_suptitle()
    assert "GD run: no diverged trajectories (of 4)" in caption(fig)


def test_report_must_match(grid_ds):
    small = make_ds(jumps(2, 3, [[1]]), lam=[0.1], eta=[0.5])
    with pytest.raises(ValueError, match="report does not match"):
        plots.plot_transitions(grid_ds, analyze(small))


def test_save_all_writes_png_and_pdf(tmp_path):
    # One lam: no figure against lam (the CLI test below has one, on the 2 x 2 grid).
    ds = make_ds(jumps(4, 3, [[1, 2]]), lam=[0.1], eta=[0.5, 1.0])
    paths = plots.save_all(ds, tmp_path / "figs")
    stems = [
        "jump_probability_vs_eta",
        "log_p_vs_inv_eta_lam",
        "rank_fractions",
        "singular_values",
        "transitions",
        "final_rank",
    ]
    assert [p.name for p in paths] == [f"{s}.{f}" for s in stems for f in ("png", "pdf")]
    for p in paths:
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG" if p.suffix == ".png" else b"%PDF")
        assert p.stat().st_size > 1000
    with pytest.raises(ValueError, match="format 'bmpx'"):
        plots.save_all(ds, tmp_path, formats=("bmpx",))


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    plots_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_bad_files_exit_2(tmp_path, capsys):
    args = _parse(["plot", str(tmp_path / "missing.nc"), "--out", str(tmp_path / "o")])
    assert args.func is plots_cli.run and args.format == ("png", "pdf")
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.nc: no such result file" in err
    junk = tmp_path / "junk.nc"
    junk.write_text("not netCDF")
    assert plots_cli.run(_parse(["plot", str(junk), "--out", str(tmp_path / "o")])) == 2
    assert "not a readable netCDF result file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_writes_and_prints_paths(grid_ds, tmp_path, capsys):
    path = save_result(grid_ds, tmp_path / "r.nc")
    gd = save_result(grid_ds.isel(traj=[0]), tmp_path / "gd.nc")
    out = tmp_path / "a" / "b"
    argv = ["plot", str(path), "--out", str(out), "--gd", str(gd), "--format", "png"]
    assert plots_cli.run(_parse(argv)) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 7 and all(p.endswith(".png") for p in printed)
    assert str(out / "jump_probability_vs_lam.png") in printed
    assert sorted(printed) == sorted(str(p) for p in out.iterdir())
    with pytest.raises(SystemExit):
        _parse(["plot", str(path), "--out", str(out), "--format", "png,nope"])


def test_a_line_the_points_reject_is_not_drawn():
    """P = 0.5, 0.05 and 0.045 at 1/(eta lam) = 10, 20, 30 over 4,000 trajectories a cell: ln P
    is far from a line (weighted chi-square in the hundreds on 1 degree of freedom), so the
    figure draws none and says why."""
    ds = make_ds(jumps(4000, 3, [[2000, 200, 180]]), lam=[0.1], eta=[1.0, 0.5, 1 / 3])
    fit = plots.fit_log_probability(analyze(ds))
    assert fit.cells == 3 and fit.rejected and fit.chi2 > 100 and fit.p_value < 1e-6
    fig = plots.plot_log_probability(ds)
    (ax,) = fig.axes
    assert not [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert any("is rejected" in t.get_text() for t in ax.texts)
    assert "a line in 1/(eta lam) is rejected over these 3 cells" in caption(fig)
