"""How rankjump runs JAX: one CPU device per core, and float64 for one call at a time.

- :mod:`~rankjump.runtime.cores`: the host CPU split into one XLA device per core, done when
  ``rankjump`` is imported (``RANKJUMP_CPU_DEVICES`` sets the count);
- :mod:`~rankjump.runtime.precision`: :func:`float64_scope` and :func:`with_float64`, which turn
  JAX's float64 flag on for one call and restore it after.

Every other family may import this one; it imports none of them.
"""

from rankjump.runtime.cores import ENV, available_cores, use_every_core
from rankjump.runtime.precision import float64_scope, with_float64

__all__ = ["ENV", "available_cores", "float64_scope", "use_every_core", "with_float64"]
