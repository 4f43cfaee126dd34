"""Old import paths, kept for one release with a DeprecationWarning (as optax keeps its own).

Before the package was split into families, every module sat in ``rankjump/`` itself
(``rankjump.splitting``, ``rankjump.simulate``, ...) and the top level exported some engine
pieces (``rankjump.ams``, ``rankjump.Walk``, ...). :data:`MODULES` maps each old module to its
new home and :data:`NAMES` each old top-level name to the subpackage that holds it now.
``import rankjump.splitting`` and ``from rankjump.simulate import plan_run`` keep working (a
finder on ``sys.meta_path`` hands out the new module under the old name), as does
``rankjump.ams``; each warns once where it is used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

__all__ = ["MODULES", "NAMES", "install", "old_name"]

MODULES = {
    "atomic": "rankjump.results.atomic",
    "cell_stats": "rankjump.stats.cells",
    "cluster": "rankjump.sweeps.cluster",
    "command": "rankjump.cli.command",
    "cores": "rankjump.runtime.cores",
    "demo": "rankjump.cli.demo",
    "flops": "rankjump.bench.flops",
    "intervals": "rankjump.stats.intervals",
    "minima": "rankjump.simulation.minima",
    "network": "rankjump.model.network",
    "overrides": "rankjump.config.overrides",
    "peer_steps": "rankjump.bench.peer_steps",
    "peers": "rankjump.bench.peers",
    "plan": "rankjump.simulation.plan",
    "plots_cli": "rankjump.cli.plot",
    "precision": "rankjump.runtime.precision",
    "ranks": "rankjump.model.ranks",
    "rare": "rankjump.rare_events",
    "rare_cli": "rankjump.cli.rare",
    "rare_commit": "rankjump.rare_events.commit",
    "rare_network": "rankjump.rare_events",
    "rare_rate": "rankjump.rare_events",
    "replay_cli": "rankjump.cli.replay",
    "replay_plot": "rankjump.plots.replay",
    "replays": "rankjump.simulation.replays",
    "schema": "rankjump.results.schema",
    "side_by_side": "rankjump.bench.side_by_side",
    "simulate": "rankjump.simulation.runs",
    "spectra": "rankjump.model.spectra",
    "splitting": "rankjump.rare_events.splitting",
    "splitting_types": "rankjump.rare_events.types",
    "starts": "rankjump.simulation.starts",
    "stats_cli": "rankjump.cli.stats",
    "sweep": "rankjump.sweeps.jobs",
    "sweep_files": "rankjump.sweeps.files",
    "sweep_merge": "rankjump.sweeps.merging",
    "tasks": "rankjump.model.tasks",
    "theory": "rankjump.model.theory",
    "timing": "rankjump.bench.timing",
    "walk": "rankjump.rare_events.walk",
}

NAMES = {
    "AMSResult": "rankjump.rare_events",
    "InlineExecutor": "rankjump.sweeps",
    "Process": "rankjump.rare_events",
    "Task": "rankjump.model",
    "Walk": "rankjump.rare_events",
    "ams": "rankjump.rare_events",
    "binomial_ci": "rankjump.stats",
    "gd_minimum": "rankjump.simulation",
    "make_task": "rankjump.model",
    "markov_lower": "rankjump.stats",
    "upper_bound": "rankjump.stats",
}

# Moved modules whose names that the names of functions at the top level shadow: the import
# system must not bind the module over the function (``rankjump.simulate`` stays callable).
_SHADOWED = {"rare", "simulate", "sweep"}


def _warn(old: str, new: str) -> None:
    """A DeprecationWarning attributed to the first frame outside rankjump's own modules and the
    import machinery (which ``warnings`` skips without counting)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and (
        "importlib" in frame.f_code.co_filename
        or frame.f_globals.get("__name__") in (__name__, "rankjump")
    ):
        level += not _bootstrap_frame(frame)
        frame = frame.f_back
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; use {new}",
        DeprecationWarning,
        stacklevel=level,
    )


def _bootstrap_frame(frame) -> bool:
    """A frame of the import system's bootstrap (``warnings`` skips those itself)."""
    name = frame.f_code.co_filename
    return "importlib" in name and "_bootstrap" in name


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``rankjump.OLD`` for each old module and loads it as its new module."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.rpartition(".")
        if package == "rankjump" and old in MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = MODULES[spec.name.rpartition(".")[2]]
        _warn(spec.name, new)
        return importlib.import_module(new)

    def exec_module(self, module):
        """The new module is already executed."""


_FINDER = _Alias()


class _Package(types.ModuleType):
    """The ``rankjump`` module's class: an old module imported under its old name is not bound
    over a top-level function of the same name (``rankjump.simulate``, ``rankjump.sweep``,
    ``rankjump.rare``)."""

    def __setattr__(self, name, value):
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


def install(package: types.ModuleType) -> None:
    """Put the finder on ``sys.meta_path`` (once) and give ``package`` its class."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
    package.__class__ = _Package


def old_name(name: str):
    """The object an old top-level name (:data:`NAMES`) or module (:data:`MODULES`) now is,
    with a DeprecationWarning; AttributeError for any other name."""
    if name in NAMES:
        _warn(f"rankjump.{name}", f"{NAMES[name]}.{name}")
        return getattr(importlib.import_module(NAMES[name]), name)
    if name in MODULES:
        return importlib.import_module(f"rankjump.{name}")  # warns through the finder
    raise AttributeError(f"module 'rankjump' has no attribute {name!r}")
