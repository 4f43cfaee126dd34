"""Jump probability figures: P(B_r reached) against eta or lam, and ln P against 1 / (eta lam)
with its least-squares line (docs/theory.md: ln P >~ -c / (eta lam))."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from scipy import stats

from rankjump.plots.cells import check_report, find_cell, r_label, reached
from rankjump.plots.common import LEGEND_ABOVE, diverged_note, set_title
from rankjump.stats.reports import CellReport, Proportion, Report

__all__ = ["LogPFit", "fit_log_probability", "plot_jump_probability", "plot_log_probability"]


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
    report = check_report(ds, report)
    other = "lam" if x == "eta" else "eta"
    xs = ds[x].values.astype(float)
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    for value in ds[other].values:
        pts = [
            (xv, reached(find_cell(report, (value, xv) if x == "eta" else (xv, value)), r))
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
    ax.set_ylabel(f"P({r_label(report, r)} by step {steps} | not diverged)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if ax.get_lines():
        title = f"{100 * report.level:g}% {report.ci_method} bands"
        ax.legend(title=title, title_fontsize=8, **LEGEND_ABOVE, ncols=4)
    set_title(fig, f"Jump probability against {x}", ds, [diverged_note(report.cells)])
    return fig


class LogPFit(NamedTuple):
    """Weighted least-squares line ln P = intercept + slope / (eta lam) over cells with
    0 < P < 1, and how well it fits: ``chi2`` on ``cells - 2`` degrees of freedom, its ``p_value``
    (NaN with 2 cells), ``rejected`` below 0.05."""

    slope: float
    intercept: float
    cells: int
    chi2: float = math.nan
    p_value: float = math.nan

    @property
    def rejected(self) -> bool:
        """A straight line is rejected at significance 0.05."""
        return bool(self.p_value < 0.05)


def _log_points(report: Report, r: int | None) -> list[tuple[float, Proportion, CellReport]]:
    """(1 / (eta lam), P, cell) for cells with lam > 0 and a defined P."""
    out = []
    for cell in report.cells:
        p = reached(cell, r)
        if p is not None and cell.lam > 0:
            out.append((1.0 / (cell.eta * cell.lam), p, cell))
    return out


def fit_log_probability(report: Report, r: int | None = None) -> LogPFit | None:
    """Fits ln P against 1 / (eta lam) by least squares (docs/theory.md: ln P >~ -c / (eta lam)).

    Args:
        report: The analysis of a result.
        r: The rank set B_r; default each cell's start rank - 1.

    Returns:
        The fit over cells with 0 < P < 1, each weighted by its interval on ln P (the standard
        error, half the interval's width on ln P over the normal quantile of its level), with the
        chi-square of its residuals; None when fewer than 2 distinct 1/(eta lam) remain.
    """
    pts = [(x, p) for x, p, _ in _log_points(report, r) if 0 < p.p < 1]
    if len({x for x, _ in pts}) < 2:
        return None
    z = stats.norm.ppf(0.5 + report.level / 2)
    xs = np.array([x for x, _ in pts])
    ys = np.log([p.p for _, p in pts])
    se = np.array([(np.log(p.ci[1]) - np.log(max(p.ci[0], 1e-300))) / (2 * z) for _, p in pts])
    slope, intercept = np.polyfit(xs, ys, 1, w=1 / np.maximum(se, 1e-12))
    chi2 = float(np.sum(((ys - intercept - slope * xs) / np.maximum(se, 1e-12)) ** 2))
    dof = len(pts) - 2
    p_value = float(stats.chi2.sf(chi2, dof)) if dof > 0 else math.nan
    return LogPFit(float(slope), float(intercept), len(pts), chi2, p_value)


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
    report = check_report(ds, report)
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
    notes = [diverged_note(report.cells)]
    if fit is None:
        msg = "fewer than 2 cells with 0 < P < 1 (and lam > 0): no fit"
        ax.text(0.5, 0.5, msg, transform=ax.transAxes, ha="center", va="center", color="C3")
        notes.append(msg)
    elif fit.rejected:
        msg = (
            f"a line in 1/(eta lam) is rejected over these {fit.cells} cells (weighted chi-square "
            f"{fit.chi2:.3g} on {fit.cells - 2} degrees of freedom, p = {fit.p_value:.2g}): "
            "none drawn"
        )
        ax.text(0.02, 0.02, msg, transform=ax.transAxes, fontsize=7, color="C3", wrap=True)
        notes.append(msg)
    else:
        xs = np.array([x for x, p, _ in pts if 0 < p.p < 1])
        grid = np.linspace(xs.min(), xs.max(), 50)
        how = (
            f"line through the {fit.cells} cells (too few to test it)"
            if math.isnan(fit.p_value)
            else f"weighted least squares over {fit.cells} cells (chi-square p = {fit.p_value:.2g})"
        )
        ax.plot(
            grid, fit.intercept + fit.slope * grid, "k--", label=f"{how}: slope {fit.slope:.4g}"
        )
        notes.append(f"the line: ln P = {fit.intercept:.3g} + {fit.slope:.4g} / (eta lam)")
    ax.set_xlabel("1 / (eta lam)")
    steps = int(ds["step"].values[-1])
    ax.set_ylabel(f"ln P({r_label(report, r)} by step {steps} | not diverged)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**LEGEND_ABOVE, ncols=1)
    set_title(
        fig, "ln P against 1/(eta lam); docs/theory.md predicts ln P >~ -c / (eta lam)", ds, notes
    )
    return fig
