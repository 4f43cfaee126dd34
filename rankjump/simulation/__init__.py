"""Simulation: from a configuration and the devices to a result Dataset.

- :mod:`~rankjump.simulation.plan`: the :class:`Plan` of a run (lanes, chunks, the kernel's
  structure, thresholds, the traced values per lane) and the memory check made before anything
  is allocated;
- :mod:`~rankjump.simulation.minima`: GD-converged minima in float64;
- :mod:`~rankjump.simulation.starts`: the starting states of a plan (a shared GD minimum, a
  weights file, per-trajectory minima) and weights files;
- :mod:`~rankjump.simulation.runs`: :func:`simulate`, every chunk of a plan through the compiled
  kernel, assembled into a result;
- :mod:`~rankjump.simulation.replays`: :func:`replay`, one trajectory of a result again, finely.

The simulation core sits on config, model, dynamics, kernel, results and runtime; it imports
nothing from sweeps, rare events, stats, plots, bench or the command line.
"""

from rankjump.simulation.minima import GDMinimum, NotConvergedError, gd_minimum
from rankjump.simulation.plan import (
    Plan,
    check_memory,
    lane_keys,
    plan_run,
    record_bytes,
    structure_for,
    thresholds,
)
from rankjump.simulation.replays import (
    MAX_FINE_CHECKPOINTS,
    ReplayError,
    Window,
    jump_window,
    replay,
)
from rankjump.simulation.runs import (
    GD_VARS,
    assemble,
    progress_bar,
    run_chunks,
    run_lanes_of,
    simulate,
)
from rankjump.simulation.starts import (
    MinimaCache,
    Starts,
    eta_edge,
    load_weights,
    save_weights,
    shared_starts,
    start_lams,
)

__all__ = [
    "GD_VARS",
    "MAX_FINE_CHECKPOINTS",
    "GDMinimum",
    "MinimaCache",
    "NotConvergedError",
    "Plan",
    "ReplayError",
    "Starts",
    "Window",
    "assemble",
    "check_memory",
    "eta_edge",
    "gd_minimum",
    "jump_window",
    "lane_keys",
    "load_weights",
    "plan_run",
    "progress_bar",
    "record_bytes",
    "replay",
    "run_chunks",
    "run_lanes_of",
    "save_weights",
    "shared_starts",
    "simulate",
    "start_lams",
    "structure_for",
    "thresholds",
]
