"""Writing figures to files: every standard figure of a result at once (`rankjump plot`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import xarray as xr
from matplotlib.figure import Figure

from rankjump.plots.common import DPI
from rankjump.plots.occupancy import plot_final_rank, plot_rank_fractions
from rankjump.plots.probability import plot_jump_probability, plot_log_probability
from rankjump.plots.trajectories import plot_singular_values, plot_transitions
from rankjump.stats.analysis import analyze

__all__ = ["check_formats", "save_all", "write_figures"]


def check_formats(formats: Sequence[str]) -> list[str]:
    """File formats as extensions ("png", not ".PNG"), each one matplotlib can write.

    Raises:
        ValueError: For none or an unknown one, naming it and the known formats.
    """
    formats = [f.lower().lstrip(".") for f in formats]
    known = Figure().canvas.get_supported_filetypes()
    bad = [f for f in formats if f not in known]
    if bad or not formats:
        raise ValueError(
            f"format {bad[0] if bad else '(none)'!r}: must be one of {', '.join(sorted(known))}"
        )
    return formats


def write_figures(
    figures: Sequence[tuple[str, Callable[[], Figure]]],
    out_dir: str | Path,
    formats: Sequence[str],
    dpi: int,
) -> list[Path]:
    """Makes each (name, make) figure in turn and writes it as out_dir/name.fmt in every format.

    Args:
        figures: File stems and functions that build the figure (called once each, in order).
        out_dir: Folder for the files (created if needed).
        formats: File formats, already checked by :func:`check_formats`.
        dpi: Resolution of raster formats.

    Returns:
        The paths written, figure by figure, each in the order of ``formats``.
    """
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
    formats = check_formats(formats)
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
    return write_figures(figures, out_dir, formats, dpi)
