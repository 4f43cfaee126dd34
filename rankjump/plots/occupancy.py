"""Where the trajectories are: the fraction at each rank against step, and the rank at the last
checkpoint (beside a GD run)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from rankjump.plots.cells import (
    cell_ranks,
    check_report,
    edge_labels,
    find_cell,
    panel_grid,
    select_cells,
)
from rankjump.plots.common import (
    MAX_CELLS,
    Cell,
    cell_name,
    diverged_note,
    kind_name,
    set_title,
    step_axis,
)
from rankjump.stats.reports import Report

__all__ = ["plot_final_rank", "plot_rank_fractions"]


def _rank_colors(ranks: Sequence[int]) -> dict[int, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    spread = max(len(ranks) - 1, 1)
    return {k: cmap(0.9 * i / spread) for i, k in enumerate(sorted(ranks))}


def plot_rank_fractions(
    ds: xr.Dataset,
    report: Report | None = None,
    *,
    cells: Iterable[Cell] | None = None,
    max_cells: int = MAX_CELLS,
) -> Figure:
    """Fraction of trajectories at each rank against step, a stacked area per cell.

    The Report holds no per-checkpoint occupancy, so this counts ranks in the Dataset under the
    statistics' rules: diverged trajectories out, each checkpoint over the trajectories recorded
    there.

    Args:
        ds: The result Dataset.
        report: Its analysis; computed when None.
        cells: (lam, eta) pairs to show; default all cells.
        max_cells: At most this many panels; the caption says when cells are left out.

    Returns:
        A figure with one panel per cell (one area per rank seen in the shown cells).
    """
    report = check_report(ds, report)
    chosen, note = select_cells(report, cells, max_cells)
    steps = ds["step"].values
    occupancy = []
    for cell in chosen:
        rank = cell_ranks(ds, cell)
        occupancy.append((rank[..., None] == np.arange(rank.max(initial=0) + 1)).sum(axis=0))
    ranks = sorted({k for occ in occupancy for k in np.flatnonzero(occ.sum(axis=0))})
    colors = _rank_colors(ranks)
    fig = Figure(layout="constrained")
    axes = panel_grid(fig, len(chosen), ds.sizes["eta"], cells is None, sharex=True, sharey=True)
    for ax, cell, occ in zip(axes, chosen, occupancy, strict=True):
        total = occ.sum(axis=1)
        frac = np.zeros((len(ranks), len(steps)))
        for i, k in enumerate(ranks):
            if k < occ.shape[1]:
                frac[i] = np.divide(occ[:, k], total, out=np.zeros(len(steps)), where=total > 0)
        if ranks:
            ax.stackplot(
                steps, frac, colors=[colors[k] for k in ranks], labels=[f"rank {k}" for k in ranks]
            )
        else:
            ax.text(
                0.5, 0.5, "no trajectory left", ha="center", va="center", transform=ax.transAxes
            )
        ax.set_title(f"{cell_name(cell)}\nn = {cell.n}, diverged {cell.diverged}", fontsize=9)
        ax.set_ylim(0, 1)
        if steps[-1] > steps[0]:
            ax.set_xlim(steps[0], steps[-1])
        step_axis(ax)
        edge_labels(ax, "step", "fraction of trajectories")
        ax.tick_params(labelsize=8)
    if ranks:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles[::-1], labels[::-1], loc="outside right upper", fontsize=8)
    set_title(fig, "Fraction of trajectories at each rank", ds, [diverged_note(chosen), note])
    return fig


def plot_final_rank(
    ds: xr.Dataset,
    report: Report | None = None,
    *,
    gd: xr.Dataset | None = None,
    gd_report: Report | None = None,
    cells: Iterable[Cell] | None = None,
    max_cells: int = MAX_CELLS,
) -> Figure:
    """Distribution of the rank at the last checkpoint per cell, with a GD run beside it.

    Args:
        ds: The result Dataset (SGD or another stochastic kind).
        report: Its analysis; computed when None.
        gd: Optional result of a GD run on the same (lam, eta) cells, e.g. the demo's gd.nc;
            its cells are matched to ours by (lam, eta).
        gd_report: The GD run's analysis; computed when None.
        cells: (lam, eta) pairs to show; default all cells.
        max_cells: At most this many panels.

    Returns:
        A figure with one bar chart per cell: fractions with interval error bars.
    """
    report = check_report(ds, report)
    if gd is not None:
        gd_report = check_report(gd, gd_report)
    chosen, note = select_cells(report, cells, max_cells)
    fig = Figure(layout="constrained")
    axes = panel_grid(fig, len(chosen), ds.sizes["eta"], cells is None, sharey=True)
    name, missing, panels = kind_name(ds), 0, []
    for cell in chosen:
        series = [(name, cell)]
        if gd_report is not None:
            try:
                series.append((kind_name(gd), find_cell(gd_report, (cell.lam, cell.eta))))
            except ValueError:
                missing += 1
        panels.append(series)
    ranks = sorted({k for series in panels for _, c in series for k in c.final_rank})
    for ax, cell, series in zip(axes, chosen, panels, strict=True):
        width = 0.8 / len(series)
        sizes = []
        for s, (label, c) in enumerate(series):
            props = [c.final_rank.get(k) for k in ranks]
            at = np.arange(len(ranks)) + (s - (len(series) - 1) / 2) * width
            p = np.array([q.p if q else 0.0 for q in props])
            n = max((q.n for q in props if q), default=0)
            ax.bar(at, p, width, color=f"C{s}", label=label)
            sizes.append(f"{label} n = {n}" + (f" ({c.diverged} div.)" if c.diverged else ""))
            if n > 1:  # one deterministic run has no interval worth drawing
                have = [i for i, q in enumerate(props) if q and q.n]
                lo = np.array([props[i].ci[0] for i in have])
                hi = np.array([props[i].ci[1] for i in have])
                err = [p[have] - lo, hi - p[have]]
                ax.errorbar(at[have], p[have], yerr=err, fmt="none", ecolor="black", capsize=3)
        ax.set_xticks(np.arange(len(ranks)), [str(k) for k in ranks])
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{cell_name(cell)}\n{', '.join(sizes)}", fontsize=9)
        edge_labels(ax, "rank at the last checkpoint", "fraction of trajectories")
    if any(len(series) > 1 for series in panels):
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    notes = [diverged_note(chosen)]
    if gd_report is not None:
        notes.append(f"{kind_name(gd)} run: {diverged_note(gd_report.cells)}")
        if missing:
            notes.append(f"{missing} cells have no matching {kind_name(gd)} cell")
    notes.append(note)
    steps = int(ds["step"].values[-1])
    what = f"{name} beside {kind_name(gd)}" if gd is not None else name
    set_title(fig, f"Rank at step {steps}: {what} ({100 * report.level:g}% intervals)", ds, notes)
    return fig
