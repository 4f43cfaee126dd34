"""rankjump: vectorized Monte Carlo of SGD's one-way rank jumps in deep linear networks.

The top level holds the entry points a user calls (configuration, :func:`simulate`,
:func:`sweep`, :func:`rare`, :func:`replay`, :func:`analyze`, results and weights files) and the
families as subpackages, which hold everything else:

- :mod:`rankjump.runtime`: one CPU device per core, float64 for one call;
- :mod:`rankjump.config`: typed, validated settings, TOML, ``--set`` overrides, the demo default;
- :mod:`rankjump.model`: task, network, spectra, ranks, closed forms;
- :mod:`rankjump.dynamics`: one step per kind for ONE network, and the kinds' registry;
- :mod:`rankjump.kernel`: the compiled, vmapped stepping of chunks of lanes, with records;
- :mod:`rankjump.results`: the result file (schema, atomic writes, the loader);
- :mod:`rankjump.simulation`: plan, starts, GD minima, :func:`simulate`, :func:`replay`;
- :mod:`rankjump.sweeps`: resumable jobs, merge, Slurm;
- :mod:`rankjump.rare_events`: the splitting engine, its processes and methods, :func:`rare`;
- :mod:`rankjump.stats`: intervals, reports, :func:`analyze`;
- :mod:`rankjump.plots`, :mod:`rankjump.bench`, :mod:`rankjump.cli` (imported on first use).

Importing rankjump leaves JAX's float64 flag (``jax_enable_x64``) as it finds it: the entry
points that compute in float64 (GD minima; ``run.dtype = "float64"``) turn it on for their call
only (:mod:`rankjump.runtime.precision`). Every array rankjump makes has an explicit dtype, so
float32 runs stay float32.

Importing rankjump also splits the host CPU into one XLA device per core when JAX's backend has
not started and nothing else chose a count (:mod:`rankjump.runtime.cores`;
``RANKJUMP_CPU_DEVICES=1`` keeps one device), so that one process uses the whole machine.

Old import paths (``rankjump.splitting``, ``rankjump.ams``, ...) still work for one release,
with a DeprecationWarning (:mod:`rankjump.compat`).
"""

import sys

from rankjump.runtime.signals import as_command, hold_until_command

if as_command():
    hold_until_command()  # Ctrl-C during the imports below stops the command as it starts

from rankjump.runtime.cores import use_every_core

use_every_core()

from rankjump import compat

compat.install(sys.modules[__name__])

from rankjump.results.schema import rankjump_version

__version__ = rankjump_version()

from rankjump import (
    config,
    dynamics,
    kernel,
    model,
    rare_events,
    results,
    runtime,
    simulation,
    stats,
    sweeps,
)
from rankjump.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_toml,
    demo_config,
    load_config,
    loads_config,
)
from rankjump.rare_events import merge_etas, merge_lams, rare
from rankjump.results import ResultError, load_result, save_result
from rankjump.simulation import (
    NotConvergedError,
    ReplayError,
    load_weights,
    replay,
    save_weights,
    simulate,
)
from rankjump.stats import Report, analyze
from rankjump.sweeps import SweepError, merge, sweep

__all__ = [
    "Config",
    "ConfigError",
    "NotConvergedError",
    "ReplayError",
    "Report",
    "ResultError",
    "SweepError",
    "analyze",
    "bench",
    "cli",
    "config",
    "config_from_dict",
    "config_to_toml",
    "demo_config",
    "dynamics",
    "kernel",
    "load_config",
    "load_result",
    "load_weights",
    "loads_config",
    "merge",
    "merge_etas",
    "merge_lams",
    "model",
    "plots",
    "rare",
    "rare_events",
    "replay",
    "results",
    "runtime",
    "save_result",
    "save_weights",
    "simulate",
    "simulation",
    "stats",
    "sweep",
    "sweeps",
]

_LAZY = ("bench", "cli", "plots")  # matplotlib, argparse and torch are slow to import


def __getattr__(name):
    """The lazy subpackages on first use; old names (:mod:`rankjump.compat`) with a warning."""
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"rankjump.{name}")
    return compat.old_name(name)
