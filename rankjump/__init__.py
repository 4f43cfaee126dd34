"""rankjump: vectorized Monte Carlo of SGD's one-way rank jumps in deep linear networks.

Importing rankjump enables JAX's float64 support (``jax_enable_x64``): GD minima are computed in
float64 and ``run.dtype = "float64"`` needs it. Every array rankjump makes has an explicit dtype,
so float32 runs stay float32.

It also runs XLA's CPU intra-op work single-threaded (``--xla_cpu_multi_thread_eigen=false``,
added to ``XLA_FLAGS`` unless that flag is already set, before JAX starts its backend): with the
multi-threaded Eigen pool, jit(vmap(scan)) programs of this package's shape wedge the pool on
some CPUs (all threads idle, the call never returns). Parallelism on a CPU comes from sharding
the trajectory axis over host devices instead.
"""

import os

if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from rankjump.config import (  # noqa: E402
    Config,
    ConfigError,
    config_from_dict,
    config_to_toml,
    load_config,
    loads_config,
)
from rankjump import stats  # noqa: E402
from rankjump.intervals import binomial_ci, upper_bound  # noqa: E402
from rankjump.results import ResultError, load_result, save_result  # noqa: E402
from rankjump.simulate import simulate  # noqa: E402
from rankjump.starts import NotConvergedError, gd_minimum  # noqa: E402
from rankjump.stats import Report, analyze  # noqa: E402
from rankjump.tasks import Task, make_task  # noqa: E402

__all__ = [
    "Config",
    "ConfigError",
    "NotConvergedError",
    "Report",
    "ResultError",
    "Task",
    "analyze",
    "binomial_ci",
    "config_from_dict",
    "config_to_toml",
    "gd_minimum",
    "load_config",
    "load_result",
    "loads_config",
    "make_task",
    "save_result",
    "simulate",
    "stats",
    "upper_bound",
]
