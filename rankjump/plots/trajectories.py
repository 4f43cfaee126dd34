"""Single trajectories and their moves: singular values of A_theta along a few trajectories of
one cell, and the checkpoint-to-checkpoint rank transition counts of each cell."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from rankjump.plots.cells import (
    check_report,
    edge_labels,
    find_cell,
    panel_grid,
    reached,
    select_cells,
)
from rankjump.plots.common import MAX_CELLS, Cell, cell_name, diverged_note, set_title, step_axis
from rankjump.stats.reports import CellReport, Report

__all__ = ["plot_singular_values", "plot_transitions"]


def _tag(color: str) -> dict:
    """Text style of a line's in-place label: right-aligned, just above the line."""
    return {"ha": "right", "va": "bottom", "fontsize": 7, "color": color}


def _default_sv_cell(report: Report, r: int | None) -> CellReport:
    """The cell where most trajectories reached B_r (the first on a tie)."""
    counts = [(p.count if (p := reached(c, r)) else -1) for c in report.cells]
    return report.cells[int(np.argmax(counts))]


def plot_singular_values(
    ds: xr.Dataset,
    report: Report | None = None,
    *,
    cell: Cell | None = None,
    traj: Sequence[int] | None = None,
    n_jumped: int = 3,
    n_stayed: int = 3,
    r: int | None = None,
) -> Figure:
    """Singular values of A_theta (``sv``, log scale) along a few trajectories of one cell.

    Trajectories are split into those that reached B_r (r = start rank - 1 by default) and those
    that did not, one panel each. Modes 1 .. start rank + 1 are drawn, one colour per trajectory
    (the last one dotted: below the cut at the start). Horizontal lines mark the end-to-end
    threshold ``threshold_end`` of the cell's lam and the dtype floor ``rel_floor`` x s_1; the
    network's rank is judged on the layers (``threshold_layer``) unless the file's rank rule is
    "end_to_end".

    Args:
        ds: The result Dataset.
        report: Its analysis; computed when None.
        cell: (lam, eta); default the cell where most trajectories reached B_r.
        traj: Trajectory indices to draw; default the first n_jumped that reached B_r and the
            first n_stayed that did not, diverged ones excluded.
        n_jumped, n_stayed: How many of each by default.
        r: The rank set B_r.

    Returns:
        A figure with one or two panels sharing the y axis.
    """
    report = check_report(ds, report)
    c = _default_sv_cell(report, r) if cell is None else find_cell(report, cell)
    sub = ds.sel(lam=c.lam, eta=c.eta, method="nearest")
    alive = ~sub["diverged"].fillna(False).values.astype(bool)
    rank = sub["rank"].transpose("traj", "checkpoint").values.astype(np.float64)
    low = np.where(rank >= 0, rank, np.inf).min(axis=1)
    bound = (c.start_rank or 0) - 1 if r is None else r
    jumped = alive & (low <= bound)
    ids = np.arange(sub.sizes["traj"])
    if traj is None:
        picks = [ids[jumped][:n_jumped], ids[alive & ~jumped][:n_stayed]]
    else:
        chosen = np.asarray(traj, dtype=int)
        chosen = chosen[alive[chosen]]
        picks = [chosen[jumped[chosen]], chosen[~jumped[chosen]]]
    names = [f"reached rank <= {bound}", f"stayed above rank {bound}"]
    groups = [(name, p) for name, p in zip(names, picks, strict=True) if len(p)]
    n_modes = min(sub.sizes["k"], (c.start_rank or 0) + 1)
    steps = ds["step"].values
    sv = sub["sv"].transpose("traj", "checkpoint", "k").values
    fig = Figure(figsize=(5.2 * max(len(groups), 1) + 1.5, 4.8), layout="constrained")
    axes = fig.subplots(1, max(len(groups), 1), sharey=True, squeeze=False).ravel()
    lam_index = int(np.argmin(np.abs(ds["lam"].values - c.lam)))
    thresholds = ds.attrs.get("threshold_end")
    thr = None if thresholds is None else float(np.atleast_1d(thresholds)[lam_index])
    layer_thresholds = ds.attrs.get("threshold_layer")
    layer_thr = (
        None if layer_thresholds is None else float(np.atleast_1d(layer_thresholds)[lam_index])
    )
    rel = ds.attrs.get("rel_floor")
    floor_values, start = [], c.start_rank or 0
    for ax, (name, pick) in zip(axes, groups, strict=False):
        for i, t in enumerate(pick):
            color = f"C{i % 10}"
            for k in range(n_modes):
                dotted = k == n_modes - 1 and n_modes > start
                ax.plot(
                    steps,
                    sv[t, :, k],
                    ":" if dotted else "-",
                    color=color,
                    lw=1.0 if dotted else 1.4,
                    label=f"traj {t}" if k == 0 else None,
                )
            floor_values.append(sv[t, :, 0])
            if jumped[t] and start >= 1:  # where the network rank (judged on layers) dropped
                entry = int(np.argmax((rank[t] >= 0) & (rank[t] <= bound)))
                ax.plot(
                    steps[entry],
                    sv[t, entry, start - 1],
                    "o",
                    mfc=color,
                    mec="black",
                    label=f"rank <= {bound} first seen" if i == 0 else None,
                )
        ax.set_title(f"{name} ({len(pick)} shown)", fontsize=9)
        ax.set_xlabel("step")
        step_axis(ax)
    if not groups:
        axes[0].text(
            0.5, 0.5, "no non-diverged trajectory", ha="center", transform=axes[0].transAxes
        )
    axes[0].set_ylabel("singular values of A_theta")
    for ax in axes[: len(groups)]:
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="major")
        shown = len(ax.get_legend_handles_labels()[0])
        # The cut lines are labeled in place (right end), the legend names the trajectories.
        if thr is not None and thr > 0:
            label = f"threshold_end = {thr:.2g} (eps_layer^L)"
            ax.axhline(thr, color="C3", ls="--", lw=1, label=label)
            ax.text(0.99, thr, label, transform=ax.get_yaxis_transform(), **_tag("C3"))
        if rel is not None and floor_values:
            floor = float(rel) * np.nanmedian(np.array(floor_values), axis=0)
            label = f"rel_floor x s_1 = {float(rel):g} x s_1 (median)"
            ax.plot(steps, floor, color="0.35", ls="-.", lw=1, label=label)
            ax.text(0.99, floor[-1], label, transform=ax.get_yaxis_transform(), **_tag("0.35"))
        if shown:
            handles, labels = ax.get_legend_handles_labels()
            ax.legend(handles[:shown], labels[:shown], fontsize=7, loc="lower left", ncol=2)
    notes = [
        f"cell {cell_name(c)}: {c.diverged} diverged (excluded);"
        f" start rank {'-' if c.start_rank is None else c.start_rank};"
        f" modes 1..{n_modes} (dotted: mode {n_modes}); end_rank counts modes above the higher of"
        " the two lines"
        + (
            ""
            if ds.attrs.get("rank_rule") == "end_to_end"
            else ", while the network rank is judged on the layers"
            + ("" if layer_thr is None else f" (threshold_layer = {layer_thr:.2g} per layer,")
            + (" whose L-th power is threshold_end)" if layer_thr is not None else "")
            + ", so a mode can sit at the float floor before the rank drops"
        )
    ]
    set_title(fig, "Singular values of A_theta along single trajectories", ds, notes)
    return fig


def plot_transitions(
    ds: xr.Dataset,
    report: Report | None = None,
    *,
    cells: Iterable[Cell] | None = None,
    max_cells: int = MAX_CELLS,
) -> Figure:
    """Checkpoint-to-checkpoint transition counts (CellReport.transitions) as annotated heatmaps.

    Rows are the rank at a checkpoint, columns the rank at the next one; entries right of the
    diagonal are upward moves, drawn in red when non-zero. Colour is log(1 + count).

    Args:
        ds: The result Dataset.
        report: Its analysis; computed when None.
        cells: (lam, eta) pairs to show; default all cells.
        max_cells: At most this many panels.

    Returns:
        A figure with one heatmap (image) per cell.
    """
    report = check_report(ds, report)
    chosen, note = select_cells(report, cells, max_cells)
    fig = Figure(layout="constrained")
    axes = panel_grid(fig, len(chosen), ds.sizes["eta"], cells is None, panel=(3.0, 3.2))
    ranks = sorted({k for cell in chosen for k in cell.ranks})  # one rank axis for all panels
    for ax, cell in zip(axes, chosen, strict=True):
        at = [ranks.index(k) for k in cell.ranks]
        counts = np.zeros((len(ranks), len(ranks)), dtype=np.int64)
        counts[np.ix_(at, at)] = cell.transitions
        ax.set_title(
            f"{cell_name(cell)}\nupward {cell.upward.count} of {cell.upward.transitions}",
            fontsize=9,
            color="C3" if cell.upward.count else "black",
        )
        if not counts.size:
            ax.text(0.5, 0.5, "no trajectories", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        shade = np.log1p(counts)
        ax.imshow(shade, cmap="Blues", vmin=0, vmax=max(shade.max(), 1e-9))
        for (i, j), value in np.ndenumerate(counts):
            up = j > i and value > 0
            dark = shade[i, j] > 0.6 * shade.max()
            ax.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                fontsize=8,
                color="C3" if up else ("white" if dark else "black"),
                fontweight="bold" if up else "normal",
            )
        ticks = np.arange(len(ranks))
        ax.set_xticks(ticks, [str(k) for k in ranks])
        ax.set_yticks(ticks, [str(k) for k in ranks])
        edge_labels(ax, "rank at next checkpoint", "rank at checkpoint")
    upward = report.pooled.count
    notes = [
        f"pooled: {upward} upward moves in {report.pooled.transitions} transitions"
        f" ({100 * report.level:g}% upper bound {report.pooled.upper_bound:.2g} per transition);"
        " entries right of the diagonal are upward moves (red when non-zero)",
        diverged_note(chosen),
        note,
    ]
    set_title(
        fig,
        "Rank transitions between consecutive checkpoints (row: from, column: to)",
        ds,
        notes,
    )
    return fig
