"""Rare events: jump probabilities too small for plain Monte Carlo, by forward flux (the
default) or splitting.

- :mod:`~rankjump.rare_events.types`: what the engine knows of a process (:class:`Process`) and
  what it returns (:class:`AMSResult`, :class:`Reactive`);
- :mod:`~rankjump.rare_events.splitting`: :func:`ams`, generalized adaptive multilevel
  splitting, runs in lockstep;
- :mod:`~rankjump.rare_events.walk`: a random walk with an exact answer, the engine's test
  process;
- :mod:`~rankjump.rare_events.settings`: what ``rankjump rare`` accepts (:func:`check_rare`) and
  the ``[rare]`` section handed to the engine (:func:`run_splitting`);
- :mod:`~rankjump.rare_events.network`: one (lam, eta) cell of a configuration as a process
  (:class:`NetworkProcess`) and its scores;
- :mod:`~rankjump.rare_events.flux`: forward flux from the real start (plain paths, every kick
  continued), no model and no score; :mod:`~rankjump.rare_events.looks` how it reads kicks, and
  :mod:`~rankjump.rare_events.flux_result` what it returns;
- :mod:`~rankjump.rare_events.rate` and :mod:`~rankjump.rare_events.commit`: the rate method
  (kicks out of the basin, then their commitment), :mod:`~rankjump.rare_events.rate_result`
  what it returns;
- :mod:`~rankjump.rare_events.batches`: runs added in batches until a cell is reliable
  (``rare.runs = "auto"``);
- :mod:`~rankjump.rare_events.grid`: :func:`rare`, every cell of a configuration into one result;
- :mod:`~rankjump.rare_events.merging`: :func:`merge_lams` / :func:`merge_etas`, results run in
  parts joined into one.

Rare events sit on :mod:`rankjump.simulation` (the plan, the starts) and the kernel's compiled
stepping, and read :mod:`rankjump.stats.intervals`.
"""

from rankjump.rare_events.batches import STOPS, concat_results, in_batches
from rankjump.rare_events.commit import Commitment, commit_continue, commit_split
from rankjump.rare_events.dataset import RESULT_KIND
from rankjump.rare_events.flux import flux_cell
from rankjump.rare_events.flux_result import FLUX_VARIABLES, FluxResult
from rankjump.rare_events.grid import rare
from rankjump.rare_events.looks import count_above
from rankjump.rare_events.merging import merge_etas, merge_lams
from rankjump.rare_events.network import SCORES, NetworkProcess
from rankjump.rare_events.rate import KickWindow, basin_pool, progress_at, rate_cell
from rankjump.rare_events.rate_result import (
    RATE_RUN_VARIABLES,
    RATE_VARIABLES,
    RateResult,
    as_cell,
    combine,
    probability,
    rate_variables,
)
from rankjump.rare_events.settings import check_rare, run_splitting
from rankjump.rare_events.splitting import ams, kill_rule
from rankjump.rare_events.types import AMSResult, Process, Reactive
from rankjump.rare_events.walk import Walk, WalkState, exact_probability

__all__ = [
    "FLUX_VARIABLES",
    "FluxResult",
    "count_above",
    "flux_cell",
    "RATE_RUN_VARIABLES",
    "RATE_VARIABLES",
    "RESULT_KIND",
    "SCORES",
    "STOPS",
    "AMSResult",
    "Commitment",
    "KickWindow",
    "NetworkProcess",
    "Process",
    "RateResult",
    "Reactive",
    "Walk",
    "WalkState",
    "ams",
    "as_cell",
    "basin_pool",
    "check_rare",
    "commit_continue",
    "combine",
    "commit_split",
    "concat_results",
    "exact_probability",
    "in_batches",
    "kill_rule",
    "merge_etas",
    "merge_lams",
    "probability",
    "progress_at",
    "rare",
    "rate_cell",
    "rate_variables",
    "run_splitting",
]
