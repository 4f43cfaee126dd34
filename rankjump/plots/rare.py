"""The figure of a ``rankjump rare`` result: splitting estimates of p = P(enter B_target within
run.steps) against 1 / (eta lam) on a log scale (so ln p), with plain Monte Carlo proportions of
``rankjump simulate`` results beside them. The numbers come from :mod:`rankjump.plots.rare_points`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rankjump.plots.common import DPI, LEGEND_ABOVE, describe, run_config, set_title
from rankjump.plots.rare_points import (
    RareEvent,
    check_rare,
    fit_rare_probability,
    monte_carlo_points,
    rare_event,
    reliable_cells,
    runs_made,
)
from rankjump.plots.save import check_formats, write_figures
from rankjump.stats.diagnostics import MAX_TOP_SHARE, MIN_EFFECTIVE_RUNS
from rankjump.stats.intervals import markov_lower

__all__ = ["plot_rare_probability", "save_rare"]

_FOOT = 0.03  # height, in axes units, of the markers of cells without an estimate > 0


def _open(ax: Axes, x, y, marker: str, color: str, label: str, **kw) -> None:
    """Open markers without a line: bounds and cells without an estimate."""
    ax.plot(x, y, marker, mfc="none", color=color, ms=8, ls="none", label=label, **kw)


def _interval(ax: Axes, x, p, lo, hi, fmt: str, color: str, label: str, **kw) -> None:
    """Points p at x with error bars from lo to hi."""
    err = [p - lo, hi - p]
    ax.errorbar(x, p, yerr=err, fmt=fmt, color=color, capsize=3, label=label, **kw)


def _draw_rare(ax: Axes, ds: xr.Dataset, colors: dict[float, str]) -> list[str]:
    """Splitting estimates, one series per lam, and their fit lines; returns caption notes."""
    notes, zero_runs, at_foot, reach_zero, flagged = [], [], False, False, False
    foot = ax.get_xaxis_transform()  # x in data, y in axes units
    estimate = "forward flux" if ds.attrs.get("method") == "flux" else "splitting"
    fits = fit_rare_probability(ds)
    for lam in ds["lam"].values:
        cell, color, name = ds.sel(lam=lam), colors[float(lam)], f"lam = {lam:g}"
        etas = cell["eta"].values
        p, p_hi, lo, hi = (
            cell[v].values.astype(float) for v in ("p", "p_hi", "log_p_lo", "log_p_hi")
        )
        p_hi, hi = np.minimum(p_hi, 1.0), np.minimum(hi, 0.0)  # a probability's ends at 1
        made = runs_made(cell)
        zero = (cell["run_estimate"] == 0).sum("run").values
        died = cell["run_extinct"].astype(bool).sum("run").values
        unfinished = (made & ~cell["run_finished"].astype(bool)).sum("run").values
        m = made.sum("run").values
        zero_runs += [
            f"lam {lam:g}, eta {e:g}: {z} of {mm}" + (f" ({d} died out)" if d else "")
            for e, z, d, mm in zip(etas, zero, died, m, strict=True)
            if z
        ]
        notes += [
            f"lam {lam:g}, eta {e:g}: {u} of {mm} runs unfinished (max_iterations), no estimate"
            for e, u, mm in zip(etas, unfinished, m, strict=True)
            if u
        ]
        if lam <= 0:
            notes.append(f"lam {lam:g}: no 1 / (eta lam), its {len(etas)} cells are not drawn")
            continue
        x = 1.0 / (etas * lam)
        reliable = reliable_cells(cell)
        unreliable = (p > 0) & ~reliable
        pos, bound = (p > 0) & reliable, (p == 0) & (p_hi > 0)
        extinct, missing = (p == 0) & ~bound, np.isnan(p)
        at_foot |= bool(extinct.any() or missing.any())
        if pos.any():
            # An interval reaching p = 0 has no lower end on the log axis: an arrow to the foot.
            open_below = pos & (lo == -np.inf)
            band = np.where(open_below, p, np.exp(lo))[pos], np.exp(hi[pos])
            _interval(ax, x[pos], p[pos], *band, "o", color, f"{name}: {estimate}")
            # On the arrow, a bar at the lower end that holds whatever the runs' law.
            low = markov_lower(p[open_below], ds.attrs["level"])
            if open_below.any():
                label = f"{name}: lower end for any law of the runs"
                ax.plot(x[open_below], low, "_", color=color, ms=12, mew=1.5, label=label)
            for xv, pv, lv in zip(x[open_below], p[open_below], low, strict=True):
                ax.update_datalim([(xv, lv / 3)])  # room below the bar, so the arrow shows
                ax.annotate(
                    "",
                    (xv, _FOOT),
                    xycoords=foot,
                    xytext=(xv, pv),
                    textcoords="data",
                    arrowprops={"arrowstyle": "->", "color": color, "lw": 1.2},
                )
            reach_zero |= bool(open_below.any())
        if unreliable.any():
            # A few runs carry p: no two-sided interval holds, only the any-law lower end.
            low = markov_lower(p[unreliable], ds.attrs["level"])
            label = f"{name}: unreliable, down to the lower end for any law"
            err = [p[unreliable] - low, np.zeros_like(low)]
            ax.errorbar(
                x[unreliable],
                p[unreliable],
                yerr=err,
                fmt="o",
                mfc="none",
                color=color,
                capsize=3,
                label=label,
            )
            flagged = True
        if bound.any():
            _open(ax, x[bound], p_hi[bound], "v", color, f"{name}: p = 0, upper interval end")
        if extinct.any():
            at = np.full(extinct.sum(), _FOOT)
            label = f"{name}: p = 0 (every run estimated 0)"
            _open(ax, x[extinct], at, "v", color, label, transform=foot)
            for xv in x[extinct]:
                ax.annotate(
                    "p = 0",
                    (xv, _FOOT),
                    xycoords=foot,
                    xytext=(0, 7),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                    color=color,
                )
        if missing.any():
            at = np.full(missing.sum(), _FOOT)
            _open(ax, x[missing], at, "x", color, f"{name}: no estimate", transform=foot)
        if (fit := fits.get(float(lam))) is not None:
            grid = np.linspace(x[pos].min(), x[pos].max(), 50)
            how = (
                "line through 2 cells" if fit.cells == 2 else f"weighted fit over {fit.cells} cells"
            )
            label = f"{name}: {how}, slope {fit.slope:.4g}"
            ax.plot(grid, np.exp(fit.intercept + fit.slope * grid), "--", color=color, label=label)
    if zero_runs:
        more = "; ..." if len(zero_runs) > 8 else ""
        notes.insert(0, f"runs estimating 0: {'; '.join(zero_runs[:8])}{more}")
    if at_foot:
        notes.append("triangles or crosses at the foot of the axes: cells with no estimate > 0")
    if flagged:
        notes.append(
            f"hollow circles: unreliable cells (fewer than {MIN_EFFECTIVE_RUNS:g} effective runs or"
            f" a run carrying more than {MAX_TOP_SHARE:.0%} of the sum), no two-sided interval, a"
            " bar down to the lower end for any law; left out of the fits"
        )
    if reach_zero:
        notes.append(
            "arrows down to the foot of the axes: t intervals whose lower end is p = 0; the bars on"
            " them, (1 - level) / 2 x p, hold whatever the runs' law (Markov's inequality)"
        )
    return notes


def _draw_beside(
    ax: Axes,
    event: RareEvent,
    beside: Sequence[xr.Dataset],
    labels: Sequence[str],
    colors: dict[float, str],
) -> list[str]:
    """Plain Monte Carlo proportions of entering B_target, open squares; returns caption notes."""
    notes = []
    for mc, label in zip(beside, labels, strict=True):
        try:
            points = monte_carlo_points(mc, event)
        except ValueError as err:
            raise ValueError(f"{label}: {err}") from None
        for lam, pts in points.series.items():
            color = colors.setdefault(lam, f"C{len(colors) % 10}")
            name = f"lam = {lam:g}: plain MC ({label})"
            x = np.array([q[0] for q in pts])
            p = np.array([q[1].p for q in pts])
            ci = np.array([q[1].ci for q in pts]).reshape(-1, 2)
            pos = p > 0
            if pos.any():
                _interval(ax, x[pos], p[pos], *ci[pos].T, "s", color, name, mfc="none")
            if (~pos).any():
                _open(
                    ax,
                    x[~pos],
                    ci[~pos, 1],
                    "^",
                    color,
                    f"{name}, none entered: upper interval end",
                )
        report, steps = points.report, int(mc["step"].values[-1])
        notes.append(
            f"plain MC ({label}): {mc.sizes.get('traj', '?')} trajectories per cell, entered by"
            f" step {steps}"
            + (f" (splitting: {event.horizon})" if steps != event.horizon else "")
            + f", {100 * report.level:g}% {report.ci_method} intervals"
            + (f"; {points.skipped} cells without B_target, not drawn" if points.skipped else "")
        )
    return notes


def _ranks(values: dict[float, int]) -> str:
    """The rank all lam share, or each lam's: "3 / 4 (lam 0.002 / 0.003)"."""
    if len(set(values.values())) == 1:
        return str(next(iter(values.values())))
    lams = " / ".join(f"{lam:g}" for lam in values)
    return f"{' / '.join(str(r) for r in values.values())} (lam {lams})"


def plot_rare_probability(
    ds: xr.Dataset,
    beside: Sequence[xr.Dataset] = (),
    ax: Axes | None = None,
    *,
    labels: Sequence[str] | None = None,
) -> Figure:
    """p = P(enter B_target within run.steps) against 1 / (eta lam), log scale in p (so ln p).

    Splitting estimates are filled circles, one series per lam (labeled "lam = ..."), with the
    interval on ln p (``log_p_lo``, ``log_p_hi``) as error bars (an arrow down to the foot of the
    axes where the interval reaches p = 0), and a dashed weighted least-squares line per lam
    (:func:`~rankjump.plots.rare_points.fit_rare_probability`, slope in the legend). A cell whose
    runs all estimate 0 is an open triangle at ``p_hi`` when that is > 0, else at the foot of the
    axes marked "p = 0"; a cell without an estimate (unfinished runs) a cross there; the caption
    counts each cell's runs that estimated 0. Every ``beside`` result adds open squares: the
    fraction of its trajectories that entered B_target by its last checkpoint, with binomial
    intervals at the same level (0 as an open triangle at the upper interval end), conditioned on
    the rare result's start rank.

    Args:
        ds: A `rankjump rare` result Dataset.
        beside: `rankjump simulate` result Datasets on the same cells (plain Monte Carlo).
        ax: Axes to draw into (its figure is returned, the title goes on the axes and there is
            no caption); default a new figure.
        labels: Names of the ``beside`` results in the legend; default "1", "2", ...

    Returns:
        The figure.

    Raises:
        ValueError: For a Dataset that is not a whole rare result, or a ``beside`` result that
            cannot be analysed (the message starts with its label).
    """
    event = rare_event(ds)
    labels = [str(i + 1) for i in range(len(beside))] if labels is None else list(labels)
    if len(labels) != len(beside):
        raise ValueError(f"{len(labels)} labels for {len(beside)} beside results")
    fig = Figure(figsize=(7.2, 5.6), layout="constrained") if ax is None else ax.figure
    own, ax = ax is None, fig.subplots() if ax is None else ax
    colors = {float(lam): f"C{i % 10}" for i, lam in enumerate(ds["lam"].values)}
    notes = _draw_rare(ax, ds, colors) + _draw_beside(ax, event, beside, labels, colors)
    target = f"rank <= {_ranks(event.targets)}"
    cfg = run_config(ds).get("rare", {})
    n, kill = cfg.get("replicas", "?"), cfg.get("kill", "?")
    counts = np.unique(runs_made(ds).sum("run").values)
    m = f"{counts[0]}" if len(counts) == 1 else f"{counts.min()} to {counts.max()}"
    ax.set_yscale("log")
    bottom, top = ax.get_ylim()
    if top > 1.2:  # a probability's axis: no decades above 1
        ax.set_ylim(min(bottom, 0.1), 1.2)
    ax.set_xlabel("1 / (eta lam)")
    ax.set_ylabel(f"P(enter {target} within {event.horizon} steps)")
    ax.grid(alpha=0.3, which="both")
    if entries := len(ax.get_legend_handles_labels()[0]):
        longest = max(len(label) for label in ax.get_legend_handles_labels()[1])
        ncols = 2 if longest <= 44 else 1  # longer labels side by side are wider than the figure
        ax.legend(**LEGEND_ABOVE, ncols=ncols)
        if own:  # room for the legend's rows over the axes
            # ... and for the caption's lines under them, so the axes keep their height
            fig.set_size_inches(7.2, 5.0 + 0.2 * math.ceil(entries / ncols) + 0.15 * len(notes))
    method = str(ds.attrs.get("method", "ams")).upper()
    flux = method == "FLUX"
    how = (
        f"forward flux, {cfg.get('paths', '?')} plain paths x {m} runs per cell"
        if flux
        else f"{method} splitting, {n} replicas x {m} runs per cell"
    )
    lines = [
        f"Entering B_target = {{{target}}} within {event.horizon} steps from rank"
        f" {_ranks(event.starts)}",
        how + (", beside plain Monte Carlo" if beside else ""),
        f"error bars: {100 * event.level:g}% t intervals on "
        + ("p (the rate method)" if method == "RATE" else "ln p"),
    ]
    width = int(fig.get_figwidth() * 72 / (0.62 * 11))  # characters of bold 11 pt text
    title = "\n".join(textwrap.fill(line, width) for line in lines)
    if not own:
        ax.set_title(title, fontsize=9, wrap=True)
        return fig
    per_cell = (
        f"{cfg.get('paths', '?')} plain paths x {m} runs per cell (kick {cfg.get('kick', 0.3)}, "
        f"{cfg.get('commit_reps', '?')} continuations of each)"
        if flux
        else f"{n} replicas x {m} runs per cell (kill {kill}, score {ds.attrs.get('score')})"
    )
    set_title(fig, title, ds, notes, description=describe(ds, per_cell=per_cell))
    return fig


def save_rare(
    ds: xr.Dataset,
    out_dir: str | Path,
    beside: Sequence[xr.Dataset] = (),
    formats: Sequence[str] = ("png", "pdf"),
    *,
    labels: Sequence[str] | None = None,
    dpi: int = DPI,
) -> list[Path]:
    """Writes rare_probability.<format> (:func:`plot_rare_probability`) into out_dir.

    Returns:
        The paths written, in the order of ``formats``.

    Raises:
        ValueError: For an unknown format, or as :func:`plot_rare_probability`.
    """
    formats = check_formats(formats)
    check_rare(ds)
    figure = ("rare_probability", lambda: plot_rare_probability(ds, beside, labels=labels))
    return write_figures([figure], out_dir, formats, dpi)
