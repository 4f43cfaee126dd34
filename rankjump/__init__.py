"""rankjump: vectorized Monte Carlo of SGD's one-way rank jumps in deep linear networks.

Importing rankjump leaves JAX's float64 flag (``jax_enable_x64``) as it finds it: the entry
points that compute in float64 (GD minima; ``run.dtype = "float64"``) turn it on for their call
only (:mod:`rankjump.precision`). Every array rankjump makes has an explicit dtype, so float32
runs stay float32.

Importing rankjump also splits the host CPU into one XLA device per core when JAX's backend has
not started and nothing else chose a count (:mod:`rankjump.cores`; ``RANKJUMP_CPU_DEVICES=1``
keeps one device), so that one process uses the whole machine.
"""

from rankjump.cores import use_every_core

use_every_core()

from rankjump.schema import rankjump_version

__version__ = rankjump_version()

from rankjump import stats
from rankjump.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_toml,
    load_config,
    loads_config,
)
from rankjump.intervals import binomial_ci, markov_lower, upper_bound
from rankjump.rare import merge_etas, merge_lams, rare
from rankjump.replays import ReplayError, replay
from rankjump.results import ResultError, load_result, save_result
from rankjump.simulate import simulate
from rankjump.splitting import AMSResult, Process, ams
from rankjump.starts import NotConvergedError, gd_minimum, load_weights, save_weights
from rankjump.stats import Report, analyze
from rankjump.sweep import InlineExecutor, SweepError, merge, sweep
from rankjump.tasks import Task, make_task
from rankjump.walk import Walk

__all__ = [
    "AMSResult",
    "Config",
    "ConfigError",
    "NotConvergedError",
    "Process",
    "ReplayError",
    "Report",
    "ResultError",
    "Task",
    "Walk",
    "ams",
    "analyze",
    "binomial_ci",
    "config_from_dict",
    "config_to_toml",
    "InlineExecutor",
    "SweepError",
    "gd_minimum",
    "load_weights",
    "merge",
    "merge_etas",
    "merge_lams",
    "rare",
    "replay",
    "save_weights",
    "sweep",
    "load_config",
    "load_result",
    "loads_config",
    "make_task",
    "markov_lower",
    "save_result",
    "simulate",
    "stats",
    "upper_bound",
    "plots",
]


def __getattr__(name):
    """``rankjump.plots`` is imported on first use (matplotlib is slow to import)."""
    if name == "plots":
        import importlib

        return importlib.import_module("rankjump.plots")
    raise AttributeError(f"module 'rankjump' has no attribute {name!r}")
