"""Rare events: jump probabilities too small for plain Monte Carlo, by splitting.

- :mod:`~rankjump.rare_events.types`: what the engine knows of a process (:class:`Process`) and
  what it returns (:class:`AMSResult`, :class:`Reactive`);
- :mod:`~rankjump.rare_events.splitting`: :func:`ams`, generalized adaptive multilevel
  splitting, runs in lockstep;
- :mod:`~rankjump.rare_events.walk`: a random walk with an exact answer, the engine's test
  process;
- :mod:`~rankjump.rare_events.network`: one (lam, eta) cell of a configuration as a process
  (:class:`NetworkProcess`), its scores, and the ``[rare]`` section's settings of the engine
  (:func:`run_splitting`);
- :mod:`~rankjump.rare_events.rate` and :mod:`~rankjump.rare_events.commit`: the rate method
  (kicks out of the basin, then their commitment);
- :mod:`~rankjump.rare_events.grid`: :func:`rare`, every cell of a configuration into one result,
  and :func:`merge_lams` / :func:`merge_etas` for results run in parts.

Rare events sit on :mod:`rankjump.simulation` (the plan, the starts) and the kernel's compiled
stepping, and read :mod:`rankjump.stats.intervals`.
"""

from rankjump.rare_events.commit import Commitment, commit_continue, commit_split
from rankjump.rare_events.grid import RESULT_KIND, merge_etas, merge_lams, rare
from rankjump.rare_events.network import SCORES, NetworkProcess, run_splitting
from rankjump.rare_events.rate import (
    RATE_RUN_VARIABLES,
    RATE_VARIABLES,
    KickWindow,
    RateResult,
    as_cell,
    basin_pool,
    progress_at,
    rate_cell,
    rate_variables,
)
from rankjump.rare_events.splitting import ams, kill_rule
from rankjump.rare_events.types import AMSResult, Process, Reactive
from rankjump.rare_events.walk import Walk, WalkState, exact_probability

__all__ = [
    "RATE_RUN_VARIABLES",
    "RATE_VARIABLES",
    "RESULT_KIND",
    "SCORES",
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
    "commit_continue",
    "commit_split",
    "exact_probability",
    "kill_rule",
    "merge_etas",
    "merge_lams",
    "progress_at",
    "rare",
    "rate_cell",
    "rate_variables",
    "run_splitting",
]
