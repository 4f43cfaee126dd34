"""How rankjump runs JAX: one CPU device per core, float64 for one call at a time, and signals
that stop a run every time.

- :mod:`~rankjump.runtime.cores`: the host CPU split into one XLA device per core, done when
  ``rankjump`` is imported (``RANKJUMP_CPU_DEVICES`` sets the count);
- :mod:`~rankjump.runtime.precision`: :func:`float64_scope` and :func:`with_float64`, which turn
  JAX's float64 flag on for one call and restore it after;
- :mod:`~rankjump.runtime.signals`: Ctrl-C and SIGTERM remembered, so that none is lost.

Every other family may import this one; it imports none of them. Importing it does not import
JAX (the names of ``cores`` and ``precision`` are loaded on first use), so the executable can
hold signals before its heavy imports start.
"""

import importlib

from rankjump.runtime.signals import Terminated, raise_pending, stop_signals

__all__ = [
    "ENV",
    "Terminated",
    "available_cores",
    "environment_problem",
    "float64_scope",
    "raise_pending",
    "stop_signals",
    "use_every_core",
    "with_float64",
]

_LAZY = {
    "ENV": "cores",
    "available_cores": "cores",
    "environment_problem": "cores",
    "use_every_core": "cores",
    "float64_scope": "precision",
    "with_float64": "precision",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"rankjump.runtime.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
