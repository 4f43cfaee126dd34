"""Which cells a figure shows and where: the Report of a result, cell lookup and selection, the
panel grid, and the per-cell quantities several figures read (P(B_r reached), ranks).

Public so that the figure modules of :mod:`rankjump.plots` can share them; not re-exported from
the package root.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rankjump.plots.common import Cell
from rankjump.stats.analysis import analyze
from rankjump.stats.reports import CellReport, Proportion, Report

__all__ = [
    "cell_ranks",
    "check_report",
    "edge_labels",
    "find_cell",
    "is_bottom",
    "panel_grid",
    "r_label",
    "reached",
    "select_cells",
]


def check_report(ds: xr.Dataset, report: Report | None) -> Report:
    """``report``, or ``analyze(ds)`` when None; a ValueError when its cells are not ds's."""
    report = analyze(ds) if report is None else report
    if len(report.cells) != ds.sizes["lam"] * ds.sizes["eta"]:
        raise ValueError("report does not match the Dataset: different number of cells")
    return report


def find_cell(report: Report, cell: Cell) -> CellReport:
    """The CellReport at (lam, eta) (relative tolerance 1e-9); a ValueError naming it if absent."""
    for c in report.cells:
        if math.isclose(c.lam, cell[0], rel_tol=1e-9) and math.isclose(
            c.eta, cell[1], rel_tol=1e-9
        ):
            return c
    raise ValueError(f"no cell lam = {cell[0]:g}, eta = {cell[1]:g} in the result")


def select_cells(report: Report, cells: Iterable[Cell] | None, max_cells: int) -> tuple[list, str]:
    """The chosen cells (all by default), at most max_cells, and a note when some are left out.

    When the default selection is too large, the cells where most trajectories jumped below
    their start rank are kept (in grid order): those are the ones with something to see.
    """
    chosen = list(report.cells) if cells is None else [find_cell(report, c) for c in cells]
    if len(chosen) <= max_cells:
        return chosen, ""
    if cells is not None:
        return chosen[:max_cells], f"showing the first {max_cells} of {len(chosen)} chosen cells"

    def jumped(cell: CellReport) -> float:
        p = reached(cell, None)
        return -1.0 if p is None else p.p

    keep = sorted(sorted(range(len(chosen)), key=lambda i: -jumped(chosen[i]))[:max_cells])
    note = f"showing the {max_cells} of {len(chosen)} cells with the largest jump probability"
    return [chosen[i] for i in keep], note


def panel_grid(
    fig: Figure, n: int, n_eta: int, full: bool, panel: tuple[float, float] = (3.0, 2.6), **kw
) -> list[Axes]:
    """n panels: rows lam and columns eta for a whole small grid, else rows of at most 4."""
    ncols = max(1, n_eta if full and n_eta <= 5 else min(n, 4))
    nrows = max(1, -(-n // ncols))
    fig.set_size_inches(1.5 + panel[0] * ncols, 2.0 + panel[1] * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def is_bottom(ax: Axes) -> bool:
    """No visible panel below: the last row, or a panel above an empty slot of it."""
    spec = ax.get_subplotspec()
    below = [
        other
        for other in ax.figure.axes
        if other.get_visible()
        and other.get_subplotspec() is not None
        and other.get_subplotspec().colspan == spec.colspan
        and other.get_subplotspec().rowspan.start > spec.rowspan.start
    ]
    return not below


def edge_labels(ax: Axes, xlabel: str, ylabel: str) -> None:
    """The x label (with tick labels) on panels with none below, the y label on the first column."""
    if is_bottom(ax):
        ax.tick_params(labelbottom=True)
        ax.set_xlabel(xlabel)
    if ax.get_subplotspec().is_first_col():
        ax.set_ylabel(ylabel)


def reached(cell: CellReport, r: int | None) -> Proportion | None:
    """P(B_r reached by the horizon); r = start rank - 1 by default; None if not defined."""
    if r is None:
        r = (cell.start_rank or 0) - 1
    s = cell.rank_sets.get(r)
    return s.reached if s is not None and s.reached.n else None


def r_label(report: Report, r: int | None) -> str:
    """The rank set for axis labels: "rank <= r", by default start rank - 1 when all cells agree."""
    if r is not None:
        return f"rank <= {r}"
    starts = {c.start_rank for c in report.cells if c.start_rank is not None}
    return f"rank <= {starts.pop() - 1}" if len(starts) == 1 else "rank < start rank"


def cell_ranks(ds: xr.Dataset, cell: CellReport) -> np.ndarray:
    """(traj, checkpoint) ranks of the cell's non-diverged trajectories, -1 where unrecorded."""
    sub = ds.sel(lam=cell.lam, eta=cell.eta, method="nearest")
    rank = sub["rank"].transpose("traj", "checkpoint").values.astype(np.float64)
    rank = np.where(rank >= 0, rank, -1).astype(np.int64)  # NaN >= 0 is False
    return rank[~sub["diverged"].fillna(False).values.astype(bool)]
