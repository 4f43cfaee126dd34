"""Helpers every figure of :mod:`rankjump.plots` shares: constants, captions, titles, axes style.

These names are public so the figure modules can share them; the package root re-exports only
``DPI`` and ``describe``.
"""

from __future__ import annotations

import textwrap
import tomllib
from collections.abc import Iterable, Sequence

import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from rankjump.config.kinds import kind_label
from rankjump.stats.reports import CellReport

__all__ = [
    "DPI",
    "LEGEND_ABOVE",
    "MAX_CELLS",
    "Cell",
    "cell_name",
    "describe",
    "diverged_note",
    "kind_name",
    "run_config",
    "set_title",
    "step_axis",
    "wrap_caption",
]

DPI = 110  # resolution of raster files
MAX_CELLS = 25  # panels of a per-cell figure, at most
Cell = tuple[float, float]  # (lam, eta)
# Keyword arguments of Axes.legend that put the legend over the axes, centred.
LEGEND_ABOVE = {"loc": "lower center", "bbox_to_anchor": (0.5, 1.01), "fontsize": 8}


def run_config(ds: xr.Dataset) -> dict:
    """The configuration recorded in ``ds.attrs["config"]`` (TOML), {} when absent or unreadable."""
    try:
        return tomllib.loads(ds.attrs.get("config", ""))
    except (tomllib.TOMLDecodeError, TypeError):
        return {}


def kind_name(ds: xr.Dataset) -> str:
    """The optimizer's name for titles ("SGD", "GD", ...); SGD when the file does not say."""
    kind = run_config(ds).get("optimizer", {}).get("kind", "sgd")
    return kind_label(kind)


def describe(ds: xr.Dataset, *, per_cell: str | None = None) -> str:
    """One line naming the run's configuration, from the TOML text in ``ds.attrs["config"]``.

    Args:
        ds: A result Dataset.
        per_cell: What one cell holds; default "N trajectories per cell" from run.trajectories.

    Returns:
        For example "10x10 rank-1 target, 50% observed, noise 0.3; depth 3, width 10, GD-minimum
        start; SGD, batch 1, 20000 steps, 128 trajectories per cell, float32; rank rule
        all_layers".
    """
    cfg = run_config(ds)
    if not cfg:
        return "configuration not recorded"
    t, n, o, r = (cfg.get(s, {}) for s in ("task", "network", "optimizer", "run"))
    init = n.get("init", "?")
    init = "GD-minimum" if init == "gd_minimum" else init
    if per_cell is None:
        per_cell = f"{r.get('trajectories', ds.sizes.get('traj', '?'))} trajectories per cell"
    return (
        f"{t.get('d_out', '?')}x{t.get('d_in', '?')} rank-{t.get('rank', '?')} target, "
        f"{t.get('observed', 0):.0%} observed, noise {t.get('noise', 0):g}; "
        f"depth {n.get('depth', '?')}, width {n.get('width', '?')}, {init} start; "
        f"{kind_name(ds)}, batch {o.get('batch_size', '?')}, {r.get('steps', '?')} steps, "
        f"{per_cell}, "
        f"{r.get('dtype', '?')}; rank rule "
        f"{ds.attrs.get('rank_rule') or cfg.get('rank', {}).get('rule', 'not recorded')}"
    )


def diverged_note(cells: Iterable[CellReport]) -> str:
    """Caption line: how many trajectories diverged (and were excluded), in which cells."""
    cells = list(cells)
    div = sum(c.diverged for c in cells)
    total = sum(c.n + c.diverged + c.unobserved for c in cells)
    if not div:
        return f"no diverged trajectories (of {total})"
    worst = [f"{cell_name(c)}: {c.diverged}" for c in cells if c.diverged][:4]
    more = "; ..." if sum(1 for c in cells if c.diverged) > 4 else ""
    return f"{div} of {total} trajectories diverged, excluded ({'; '.join(worst)}{more})"


def wrap_caption(line: str, width: int) -> str:
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


def set_title(
    fig: Figure,
    title: str,
    ds: xr.Dataset,
    notes: Sequence[str] = (),
    *,
    description: str | None = None,
) -> None:
    """The title on top (bold); the configuration and the notes as a caption at the bottom.

    Args:
        fig: The figure.
        title: What the figure shows.
        ds: The result; its configuration is the caption's first line.
        notes: Further caption lines (empty ones are skipped).
        description: The first line instead of ``describe(ds)``.
    """
    width = max(60, int(fig.get_figwidth() * 72 / (0.52 * 8)))
    first = describe(ds) if description is None else description
    caption = "\n".join(wrap_caption(line, width) for line in (first, *notes) if line)
    fig.suptitle(title, fontsize=11, fontweight="bold")
    fig.supxlabel(caption, fontsize=8, color="0.2")


def step_axis(ax: Axes) -> None:
    """At most 5 step ticks, thousands as "20k", so tick labels of small panels do not collide."""
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10], integer=True))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda v, _: f"{v / 1000:g}k" if abs(v) >= 1000 else f"{v:g}")
    )


def cell_name(cell: CellReport) -> str:
    """The cell as "lam 0.1, eta 0.5", for titles and notes."""
    return f"lam {cell.lam:g}, eta {cell.eta:g}"
