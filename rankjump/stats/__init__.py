"""Statistics of results: jump probabilities with intervals, rank sets, the upward check.

- :mod:`~rankjump.stats.intervals`: binomial intervals, the mean of independent runs with its t
  and log intervals, and the lower end that holds for any law (:func:`markov_lower`);
- :mod:`~rankjump.stats.diagnostics`: how many runs carry a mean of run estimates, and whether
  its interval can be trusted (:func:`diagnose`);
- :mod:`~rankjump.stats.rare_levels`: a rare result's intervals at another level, from its runs'
  estimates (:func:`rare_at_level`);
- :mod:`~rankjump.stats.reports`: the records of a report (:class:`Report` and its parts);
- :mod:`~rankjump.stats.cells`: one cell's transitions, rank sets and first passages;
- :mod:`~rankjump.stats.analysis`: :func:`analyze`, a result Dataset to a :class:`Report`.

It imports only :mod:`rankjump.config` and :mod:`rankjump.model`: rare events, plots and the
command line read it.
"""

from rankjump.stats.analysis import ON_CHOICES, analyze
from rankjump.stats.cells import analyze_cell, rank_set_stats
from rankjump.stats.diagnostics import (
    MAX_TOP_SHARE,
    MIN_EFFECTIVE_RUNS,
    RunDiagnostics,
    diagnose,
    hill_tail_index,
    result_diagnostics,
)
from rankjump.stats.intervals import (
    CI_METHODS,
    Summary,
    binomial_ci,
    markov_lower,
    summarize,
    upper_bound,
)
from rankjump.stats.rare_levels import rare_at_level
from rankjump.stats.reports import (
    CellReport,
    Proportion,
    RankSet,
    Report,
    UpwardCheck,
    UpwardEvent,
)

__all__ = [
    "CI_METHODS",
    "MAX_TOP_SHARE",
    "MIN_EFFECTIVE_RUNS",
    "ON_CHOICES",
    "CellReport",
    "Proportion",
    "RankSet",
    "Report",
    "RunDiagnostics",
    "Summary",
    "UpwardCheck",
    "UpwardEvent",
    "analyze",
    "analyze_cell",
    "binomial_ci",
    "diagnose",
    "hill_tail_index",
    "markov_lower",
    "rank_set_stats",
    "rare_at_level",
    "result_diagnostics",
    "summarize",
    "upper_bound",
]
