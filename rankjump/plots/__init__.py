"""The standard figures of a result Dataset (README.md, `rankjump plot`).

Every function takes the result Dataset and, optionally, its `rankjump.stats.analysis.Report` (made
with `analyze(ds)` when not given) and returns a `matplotlib.figure.Figure`. Probabilities,
intervals, transition counts and final ranks are read from the Report; the Dataset supplies what the
Report does not hold (the configuration, per-checkpoint rank occupancy, singular values). Diverged
trajectories are left out everywhere and counted in the caption, as in `rankjump.stats.analysis`.

Figures are built with `Figure()` rather than pyplot: nothing needs a display or a backend, no
global figure list grows during a sweep (no plt.close needed); a notebook with the inline
backend active (after `import matplotlib.pyplot`) shows a returned figure as usual. The
suptitle says what a figure shows; its caption (``fig.get_supxlabel()``, under the panels) names
the configuration (d, observed, noise, depth, width, batch, steps, trajectories) and adds notes
(diverged trajectories, cells left out). A ``rankjump rare`` result (splitting estimates, no
trajectories) has its own figure, :func:`plot_rare_probability`.

Modules: :mod:`~rankjump.plots.common` (captions, titles, axes style) and
:mod:`~rankjump.plots.cells` (cell selection, panel grid), shared by the figure modules
:mod:`~rankjump.plots.probability` (jump probability, ln P fit), :mod:`~rankjump.plots.occupancy`
(rank fractions, final rank), :mod:`~rankjump.plots.trajectories` (singular values, transitions)
and :mod:`~rankjump.plots.rare` (splitting estimates of a ``rankjump rare`` result);
:mod:`~rankjump.plots.save` writes them to files.
"""

from rankjump.plots.common import DPI, describe
from rankjump.plots.occupancy import plot_final_rank, plot_rank_fractions
from rankjump.plots.probability import (
    LogPFit,
    fit_log_probability,
    plot_jump_probability,
    plot_log_probability,
)
from rankjump.plots.rare import plot_rare_probability, save_rare
from rankjump.plots.rare_points import fit_rare_probability
from rankjump.plots.replay import collapse_summary, plot_replay
from rankjump.plots.save import save_all
from rankjump.plots.trajectories import plot_singular_values, plot_transitions

__all__ = [
    "DPI",
    "LogPFit",
    "collapse_summary",
    "describe",
    "fit_log_probability",
    "fit_rare_probability",
    "plot_final_rank",
    "plot_jump_probability",
    "plot_log_probability",
    "plot_rank_fractions",
    "plot_rare_probability",
    "plot_replay",
    "plot_singular_values",
    "plot_transitions",
    "save_all",
    "save_rare",
]
