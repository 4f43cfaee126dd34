"""rankjump: vectorized Monte Carlo of SGD's one-way rank jumps in deep linear networks.

Importing rankjump enables JAX's float64 support (``jax_enable_x64``): GD minima are computed in
float64 and ``run.dtype = "float64"`` needs it. Every array rankjump makes has an explicit dtype,
so float32 runs stay float32.
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from rankjump import stats  # noqa: E402
from rankjump.config import (  # noqa: E402
    Config,
    ConfigError,
    config_from_dict,
    config_to_toml,
    load_config,
    loads_config,
)
from rankjump.intervals import binomial_ci, upper_bound  # noqa: E402
from rankjump.rare import rare  # noqa: E402
from rankjump.replays import ReplayError, replay  # noqa: E402
from rankjump.results import ResultError, load_result, save_result  # noqa: E402
from rankjump.simulate import simulate  # noqa: E402
from rankjump.splitting import AMSResult, Process, ams  # noqa: E402
from rankjump.starts import NotConvergedError, gd_minimum, load_weights, save_weights  # noqa: E402
from rankjump.stats import Report, analyze  # noqa: E402
from rankjump.sweep import InlineExecutor, SweepError, merge, sweep  # noqa: E402
from rankjump.tasks import Task, make_task  # noqa: E402
from rankjump.walk import Walk  # noqa: E402

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
    "rare",
    "replay",
    "save_weights",
    "sweep",
    "load_config",
    "load_result",
    "loads_config",
    "make_task",
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
