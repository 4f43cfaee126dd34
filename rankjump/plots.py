"""The standard figures of a result Dataset (README.md, `rankjump plot`).

Every function takes the result Dataset and, optionally, its `rankjump.stats.Report` (made with
`analyze(ds)` when not given) and returns a `matplotlib.figure.Figure`. Probabilities, intervals,
transition counts and final ranks are read from the Report; the Dataset supplies what the Report
does not hold (the configuration, per-checkpoint rank occupancy, singular values). Diverged
trajectories are left out everywhere and counted in the caption, as in `rankjump.stats`.

Figures are built with `Figure()` rather than pyplot: nothing needs a display or a backend, no
global figure list grows during a sweep (no plt.close needed); a notebook with the inline
backend active (after `import matplotlib.pyplot`) shows a returned figure as usual. The
suptitle says what a figure shows; its caption (``fig.get_supxlabel()``, under the panels) names
the configuration (d, observed, noise, depth, width, batch, steps, trajectories) and adds notes
(diverged trajectories, cells left out).
"""

from __future__ import annotations

import math
import textwrap
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from rankjump.stats import CellReport, Proportion, Report, analyze

__all__ = [
    "DPI",
    "LogPFit",
    "describe",
    "fit_log_probability",
    "plot_final_rank",
    "plot_jump_probability",
    "plot_log_probability",
    "plot_rank_fractions",
    "plot_singular_values",
    "plot_transitions",
    "save_all",
]

DPI = 110
MAX_CELLS = 25
_KINDS = {"sgd": "SGD", "gd": "GD", "label_noise": "label-noise SGD", "langevin": "Langevin"}
Cell = tuple[float, float]
_ABOVE = {"loc": "lower center", "bbox_to_anchor": (0.5, 1.01), "fontsize": 8}  # legend over axes


# ------------------------------------------------------------------------------------ captions


def _config(ds: xr.Dataset) -> dict:
    try:
        return tomllib.loads(ds.attrs.get("config", ""))
    except (tomllib.TOMLDecodeError, TypeError):
        return {}


def _kind(ds: xr.Dataset) -> str:
    kind = _config(ds).get("optimizer", {}).get("kind", "sgd")
    return _KINDS.get(kind, str(kind))


def describe(ds: xr.Dataset) -> str:
    """One line naming the run's configuration, from the TOML text in ``ds.attrs["config"]``.

    Args:
        ds: A result Dataset.

    Returns:
        For example "10x10 rank-1 target, 50% observed, noise 0.3; depth 3, width 10, GD-minimum
        start; SGD, batch 1, 20000 steps, 128 trajectories per cell, float32; rank rule
        all_layers".
    """
    cfg = _config(ds)
    if not cfg:
        return "configuration not recorded"
    t, n, o, r = (cfg.get(s, {}) for s in ("task", "network", "optimizer", "run"))
    init = n.get("init", "?")
    init = "GD-minimum" if init == "gd_minimum" else init
    return (
        f"{t.get('d_out', '?')}x{t.get('d_in', '?')} rank-{t.get('rank', '?')} target, "
        f"{t.get('observed', 0):.0%} observed, noise {t.get('noise', 0):g}; "
        f"depth {n.get('depth', '?')}, width {n.get('width', '?')}, {init} start; "
        f"{_kind(ds)}, batch {o.get('batch_size', '?')}, {r.get('steps', '?')} steps, "
        f"{r.get('trajectories', ds.sizes.get('traj', '?'))} trajectories per cell, "
        f"{r.get('dtype', '?')}; rank rule "
        f"{ds.attrs.get('rank_rule') or cfg.get('rank', {}).get('rule', 'not recorded')}"
    )


def _diverged_note(cells: Iterable[CellReport]) -> str:
    cells = list(cells)
    div = sum(c.diverged for c in cells)
    total = sum(c.n + c.diverged + c.unobserved for c in cells)
    if not div:
        return f"no diverged trajectories (of {total})"
    worst = [f"{_cell_name(c)}: {c.diverged}" for c in cells if c.diverged][:4]
    more = "; ..." if sum(1 for c in cells if c.diverged) > 4 else ""
    return f"{div} of {total} trajectories diverged, excluded ({'; '.join(worst)}{more})"


def _wrap(line: str, width: int) -> str:
    """Wraps at "; " where possible, inside a clause only when the clause alone is too long."""
    rows: list[str] = []
    for clause in line.split("; "):
        if rows and len(rows[-1]) + 2 + len(clause) <= width:
            rows[-1] += "; " + clause
        else:
            if rows:
                rows[-1] += ";"
            rows += textwrap.wrap(clause, width) or [""]
    return "\n".join(rows)


def _title(fig: Figure, title: str, ds: xr.Dataset, notes: Sequence[str] = ()) -> None:
    """The title on top (bold); the configuration and the notes as a caption at the bottom."""
    width = max(60, int(fig.get_figwidth() * 72 / (0.52 * 8)))
    caption = "\n".join(_wrap(line, width) for line in (describe(ds), *notes) if line)
    fig.suptitle(title, fontsize=11, fontweight="bold")
    fig.supxlabel(caption, fontsize=8, color="0.2")


def _step_axis(ax: Axes) -> None:
    """At most 5 step ticks, thousands as "20k", so tick labels of small panels do not collide."""
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10], integer=True))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda v, _: f"{v / 1000:g}k" if abs(v) >= 1000 else f"{v:g}")
    )


def _cell_name(cell: CellReport) -> str:
    return f"lam {cell.lam:g}, eta {cell.eta:g}"


# --------------------------------------------------------------------------------- selection


def _report(ds: xr.Dataset, report: Report | None) -> Report:
    report = analyze(ds) if report is None else report
    if len(report.cells) != ds.sizes["lam"] * ds.sizes["eta"]:
        raise ValueError("report does not match the Dataset: different number of cells")
    return report


def _find(report: Report, cell: Cell) -> CellReport:
    for c in report.cells:
        if math.isclose(c.lam, cell[0], rel_tol=1e-9) and math.isclose(
            c.eta, cell[1], rel_tol=1e-9
        ):
            return c
    raise ValueError(f"no cell lam = {cell[0]:g}, eta = {cell[1]:g} in the result")


def _select(report: Report, cells: Iterable[Cell] | None, max_cells: int) -> tuple[list, str]:
    """The chosen cells (all by default), at most max_cells, and a note when some are left out.

    When the default selection is too large, the cells where most trajectories jumped below
    their start rank are kept (in grid order): those are the ones with something to see.
    """
    chosen = list(report.cells) if cells is None else [_find(report, c) for c in cells]
    if len(chosen) <= max_cells:
        return chosen, ""
    if cells is not None:
        return chosen[:max_cells], f"showing the first {max_cells} of {len(chosen)} chosen cells"

    def jumped(cell: CellReport) -> float:
        p = _reached(cell, None)
        return -1.0 if p is None else p.p

    keep = sorted(sorted(range(len(chosen)), key=lambda i: -jumped(chosen[i]))[:max_cells])
    note = f"showing the {max_cells} of {len(chosen)} cells with the largest jump probability"
    return [chosen[i] for i in keep], note


def _grid(
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


def _is_bottom(ax: Axes) -> bool:
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


def _reached(cell: CellReport, r: int | None) -> Proportion | None:
    """P(B_r reached by the horizon); r = start rank - 1 by default; None if not defined."""
    if r is None:
        r = (cell.start_rank or 0) - 1
    s = cell.rank_sets.get(r)
    return s.reached if s is not None and s.reached.n else None


def _r_label(report: Report, r: int | None) -> str:
    if r is not None:
        return f"rank <= {r}"
    starts = {c.start_rank for c in report.cells if c.start_rank is not None}
    return f"rank <= {starts.pop() - 1}" if len(starts) == 1 else "rank < start rank"


def _cell_ranks(ds: xr.Dataset, cell: CellReport) -> np.ndarray:
    """(traj, checkpoint) ranks of the cell's non-diverged trajectories, -1 where unrecorded."""
    sub = ds.sel(lam=cell.lam, eta=cell.eta, method="nearest")
    rank = sub["rank"].transpose("traj", "checkpoint").values.astype(np.float64)
    rank = np.where(rank >= 0, rank, -1).astype(np.int64)  # NaN >= 0 is False
    return rank[~sub["diverged"].fillna(False).values.astype(bool)]


# ------------------------------------------------------------------------------ probabilities


def plot_jump_probability(
    ds: xr.Dataset, report: Report | None = None, *, x: str = "eta", r: int | None = None
) -> Figure:
    """P(reached B_r by the last checkpoint) against eta (one line per lam) or lam (per eta).

    Args:
        ds: The result Dataset.
        report: Its analysis; computed when None.
        x: "eta" or "lam", the horizontal axis; the other one labels the lines.
        r: The rank set B_r = {rank <= r}; default each cell's start rank - 1.

    Returns:
        A figure with one axes: a line with markers and a confidence band per line value. The x
        axis is logarithmic when its values are positive and span more than a factor 4.
    """
    if x not in ("eta", "lam"):
        raise ValueError(f"x must be 'eta' or 'lam', got {x!r}")
    report = _report(ds, report)
    other = "lam" if x == "eta" else "eta"
    xs = ds[x].values.astype(float)
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    for value in ds[other].values:
        pts = [
            (xv, _reached(_find(report, (value, xv) if x == "eta" else (xv, value)), r))
            for xv in xs
        ]
        pts = [(xv, p) for xv, p in pts if p is not None]
        if not pts:
            continue
        xv = np.array([q[0] for q in pts])
        p = np.array([q[1].p for q in pts])
        lo, hi = (np.array([q[1].ci[i] for q in pts]) for i in (0, 1))
        (line,) = ax.plot(xv, p, "o-", label=f"{other} = {value:g}")
        if len(xv) > 1:
            ax.fill_between(xv, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        else:
            ax.errorbar(xv, p, yerr=[p - lo, hi - p], color=line.get_color(), capsize=3)
    if np.all(xs > 0) and xs.max() > 4 * xs.min():
        ax.set_xscale("log")
    ax.set_xlabel("learning rate eta" if x == "eta" else "weight decay lam")
    steps = int(ds["step"].values[-1])
    ax.set_ylabel(f"P({_r_label(report, r)} reached by step {steps})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if ax.get_lines():
        title = f"{100 * report.level:g}% {report.ci_method} bands"
        ax.legend(title=title, title_fontsize=8, **_ABOVE, ncols=4)
    _title(fig, f"Jump probability against {x}", ds, [_diverged_note(report.cells)])
    return fig


class LogPFit(NamedTuple):
    """Least-squares line ln P = intercept + slope / (eta lam) over cells with 0 < P < 1."""

    slope: float
    intercept: float
    cells: int


def _log_points(report: Report, r: int | None) -> list[tuple[float, Proportion, CellReport]]:
    """(1 / (eta lam), P, cell) for cells with lam > 0 and a defined P."""
    out = []
    for cell in report.cells:
        p = _reached(cell, r)
        if p is not None and cell.lam > 0:
            out.append((1.0 / (cell.eta * cell.lam), p, cell))
    return out


def fit_log_probability(report: Report, r: int | None = None) -> LogPFit | None:
    """Fits ln P against 1 / (eta lam) by least squares (docs/theory.md: ln P >~ -c / (eta lam)).

    Args:
        report: The analysis of a result.
        r: The rank set B_r; default each cell's start rank - 1.

    Returns:
        The fit over cells with 0 < P < 1, or None when fewer than 2 distinct 1/(eta lam) remain.
    """
    pts = [(x, p.p) for x, p, _ in _log_points(report, r) if 0 < p.p < 1]
    if len({x for x, _ in pts}) < 2:
        return None
    xs, ps = np.array(pts).T
    slope, intercept = np.polyfit(xs, np.log(ps), 1)
    return LogPFit(float(slope), float(intercept), len(pts))


def plot_log_probability(
    ds: xr.Dataset, report: Report | None = None, *, r: int | None = None
) -> Figure:
    """ln P(reached B_r) against 1 / (eta lam) with the least-squares line and its slope.

    Cells with 0 < P < 1 are drawn with their interval (one marker series per lam) and fitted;
    cells with P = 0 are drawn at the log of their upper interval end (open triangles), not
    fitted. With fewer than 2 usable cells the figure says so instead of a line.

    Args:
        ds: The result Dataset.
        report: Its analysis; computed when None.
        r: The rank set B_r; default each cell's start rank - 1.

    Returns:
        A figure with one axes.
    """
    report = _report(ds, report)
    pts = _log_points(report, r)
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    for lam in ds["lam"].values:
        use = [(x, p) for x, p, c in pts if c.lam == lam and 0 < p.p < 1]
        if use:
            x = np.array([u[0] for u in use])
            p = np.array([u[1].p for u in use])
            lo = np.array([max(u[1].ci[0], 1e-300) for u in use])
            hi = np.array([u[1].ci[1] for u in use])
            err = [np.log(p) - np.log(lo), np.log(hi) - np.log(p)]
            ax.errorbar(x, np.log(p), yerr=err, fmt="o", capsize=3, label=f"lam = {lam:g}")
    zero = [(x, p) for x, p, _ in pts if p.p == 0 and p.ci[1] > 0]
    if zero:
        ax.plot(
            [z[0] for z in zero],
            [np.log(z[1].ci[1]) for z in zero],
            "v",
            mfc="none",
            color="gray",
            label="P = 0 (not fitted): ln of upper CI end",
        )
    fit = fit_log_probability(report, r)
    notes = [_diverged_note(report.cells)]
    if fit is None:
        msg = "fewer than 2 cells with 0 < P < 1 (and lam > 0): no fit"
        ax.text(0.5, 0.5, msg, transform=ax.transAxes, ha="center", va="center", color="C3")
        notes.append(msg)
    else:
        xs = np.array([x for x, p, _ in pts if 0 < p.p < 1])
        grid = np.linspace(xs.min(), xs.max(), 50)
        ax.plot(
            grid,
            fit.intercept + fit.slope * grid,
            "k--",
            label=f"least squares over {fit.cells} cells: slope {fit.slope:.4g}"
            f" (c = {-fit.slope:.3g}), intercept {fit.intercept:.3g}",
        )
    ax.set_xlabel("1 / (eta lam)")
    ax.set_ylabel(f"ln P({_r_label(report, r)} reached by step {int(ds['step'].values[-1])})")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**_ABOVE, ncols=2)
    _title(
        fig, "ln P against 1/(eta lam); docs/theory.md predicts ln P >~ -c / (eta lam)", ds, notes
    )
    return fig


# ------------------------------------------------------------------------------ trajectories


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
    report = _report(ds, report)
    chosen, note = _select(report, cells, max_cells)
    steps = ds["step"].values
    occupancy = []
    for cell in chosen:
        rank = _cell_ranks(ds, cell)
        occupancy.append((rank[..., None] == np.arange(rank.max(initial=0) + 1)).sum(axis=0))
    ranks = sorted({k for occ in occupancy for k in np.flatnonzero(occ.sum(axis=0))})
    colors = _rank_colors(ranks)
    fig = Figure(layout="constrained")
    axes = _grid(fig, len(chosen), ds.sizes["eta"], cells is None, sharex=True, sharey=True)
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
        ax.set_title(f"{_cell_name(cell)}\nn = {cell.n}, diverged {cell.diverged}", fontsize=9)
        ax.set_ylim(0, 1)
        if steps[-1] > steps[0]:
            ax.set_xlim(steps[0], steps[-1])
        _step_axis(ax)
        if _is_bottom(ax):
            ax.tick_params(labelbottom=True)
            ax.set_xlabel("step")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("fraction of trajectories")
        ax.tick_params(labelsize=8)
    if ranks:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles[::-1], labels[::-1], loc="outside right upper", fontsize=8)
    _title(fig, "Fraction of trajectories at each rank", ds, [_diverged_note(chosen), note])
    return fig


def _tag(color: str) -> dict:
    """Text style of a line's in-place label: right-aligned, just above the line."""
    return {"ha": "right", "va": "bottom", "fontsize": 7, "color": color}


def _default_sv_cell(report: Report, r: int | None) -> CellReport:
    """The cell where most trajectories reached B_r (the first on a tie)."""
    counts = [(p.count if (p := _reached(c, r)) else -1) for c in report.cells]
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
    report = _report(ds, report)
    c = _default_sv_cell(report, r) if cell is None else _find(report, cell)
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
        _step_axis(ax)
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
        f"cell {_cell_name(c)}: {c.diverged} diverged (excluded);"
        f" start rank {'-' if c.start_rank is None else c.start_rank};"
        f" modes 1..{n_modes} (dotted: mode {n_modes}); end_rank counts modes above the higher of"
        " the two lines"
        + (
            ""
            if ds.attrs.get("rank_rule") == "end_to_end"
            else ", while the network rank is judged on the layers (threshold_layer), so a"
            " mode can sit at the float floor before the rank drops"
        )
    ]
    _title(fig, "Singular values of A_theta along single trajectories", ds, notes)
    return fig


# -------------------------------------------------------------------------------- summaries


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
    report = _report(ds, report)
    chosen, note = _select(report, cells, max_cells)
    fig = Figure(layout="constrained")
    axes = _grid(fig, len(chosen), ds.sizes["eta"], cells is None, panel=(3.0, 3.2))
    ranks = sorted({k for cell in chosen for k in cell.ranks})  # one rank axis for all panels
    for ax, cell in zip(axes, chosen, strict=True):
        at = [ranks.index(k) for k in cell.ranks]
        counts = np.zeros((len(ranks), len(ranks)), dtype=np.int64)
        counts[np.ix_(at, at)] = cell.transitions
        ax.set_title(
            f"{_cell_name(cell)}\nupward {cell.upward.count} of {cell.upward.transitions}",
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
        if _is_bottom(ax):
            ax.tick_params(labelbottom=True)
            ax.set_xlabel("rank at next checkpoint")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("rank at checkpoint")
    upward = report.pooled.count
    notes = [
        f"pooled: {upward} upward moves in {report.pooled.transitions} transitions"
        f" ({100 * report.level:g}% upper bound {report.pooled.upper_bound:.2g} per transition);"
        " entries right of the diagonal are upward moves (red when non-zero)",
        _diverged_note(chosen),
        note,
    ]
    _title(
        fig,
        "Rank transitions between consecutive checkpoints (row: from, column: to)",
        ds,
        notes,
    )
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
    report = _report(ds, report)
    if gd is not None:
        gd_report = _report(gd, gd_report)
    chosen, note = _select(report, cells, max_cells)
    fig = Figure(layout="constrained")
    axes = _grid(fig, len(chosen), ds.sizes["eta"], cells is None, sharey=True)
    name, missing, panels = _kind(ds), 0, []
    for cell in chosen:
        series = [(name, cell)]
        if gd_report is not None:
            try:
                series.append((_kind(gd), _find(gd_report, (cell.lam, cell.eta))))
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
        ax.set_title(f"{_cell_name(cell)}\n{', '.join(sizes)}", fontsize=9)
        if _is_bottom(ax):
            ax.tick_params(labelbottom=True)
            ax.set_xlabel("rank at the last checkpoint")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("fraction of trajectories")
    if any(len(series) > 1 for series in panels):
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    notes = [_diverged_note(chosen)]
    if gd_report is not None:
        notes.append(f"{_kind(gd)} run: {_diverged_note(gd_report.cells)}")
        if missing:
            notes.append(f"{missing} cells have no matching {_kind(gd)} cell")
    notes.append(note)
    steps = int(ds["step"].values[-1])
    what = f"{name} beside {_kind(gd)}" if gd is not None else name
    _title(fig, f"Rank at step {steps}: {what} ({100 * report.level:g}% intervals)", ds, notes)
    return fig


# ------------------------------------------------------------------------------------- saving


def save_all(
    ds: xr.Dataset,
    out_dir: str | Path,
    gd: xr.Dataset | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    *,
    dpi: int = DPI,
) -> list[Path]:
    """Writes the standard figures of a result into out_dir (created if needed).

    Files (each in every format): jump_probability_vs_eta (when there are several eta or a single
    cell), jump_probability_vs_lam (several lam), log_p_vs_inv_eta_lam, rank_fractions,
    singular_values, transitions, final_rank (beside GD when gd is given).

    Args:
        ds: The result Dataset.
        out_dir: Folder for the files.
        gd: Optional GD result on the same cells for the final-rank figure.
        formats: File formats (extensions matplotlib knows), e.g. ("png", "pdf").
        dpi: Resolution of raster formats.

    Returns:
        The paths written, in the order above.

    Raises:
        ValueError: For an unknown format or a Dataset without the result schema.
    """
    formats = [f.lower().lstrip(".") for f in formats]
    known = Figure().canvas.get_supported_filetypes()
    bad = [f for f in formats if f not in known]
    if bad or not formats:
        raise ValueError(
            f"format {bad[0] if bad else '(none)'!r}: must be one of {', '.join(sorted(known))}"
        )
    report = analyze(ds)
    figures = []
    if ds.sizes["eta"] > 1 or ds.sizes["lam"] == 1:
        figures.append(
            ("jump_probability_vs_eta", lambda: plot_jump_probability(ds, report, x="eta"))
        )
    if ds.sizes["lam"] > 1:
        figures.append(
            ("jump_probability_vs_lam", lambda: plot_jump_probability(ds, report, x="lam"))
        )
    figures += [
        ("log_p_vs_inv_eta_lam", lambda: plot_log_probability(ds, report)),
        ("rank_fractions", lambda: plot_rank_fractions(ds, report)),
        ("singular_values", lambda: plot_singular_values(ds, report)),
        ("transitions", lambda: plot_transitions(ds, report)),
        ("final_rank", lambda: plot_final_rank(ds, report, gd=gd)),
    ]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in figures:
        fig = make()
        for fmt in formats:
            path = out / f"{name}.{fmt}"
            fig.savefig(path, dpi=dpi)
            paths.append(path)
    return paths
