"""Float64 where rankjump needs it, and nowhere else.

JAX makes float64 arrays only while its ``jax_enable_x64`` flag is on. rankjump never switches
it on for the program that imports it: the public entry points that may compute in float64 (GD
minima are always float64; ``run.dtype = "float64"`` asks for it) run inside
:func:`float64_scope`, which turns the flag on for the call and puts it back as it found it
(``jax.enable_x64``, a thread-local setting that jit caches take into account). Every array
rankjump makes has an explicit dtype, so float32 runs stay float32 inside the scope.

Calling lower-level functions (the kernel's compiled programs, the dynamics) directly with float64
data needs the same scope around the call: ``with rankjump.runtime.precision.float64_scope(): ...``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import jax

__all__ = ["float64_scope", "with_float64"]

P = ParamSpec("P")
R = TypeVar("R")


def float64_scope():
    """A context in which JAX makes float64 arrays; the flag is restored on exit."""
    return jax.enable_x64(True)


def with_float64(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` run inside :func:`float64_scope` (for public entry points)."""

    @functools.wraps(fn)
    def scoped(*args: P.args, **kwargs: P.kwargs) -> R:
        with float64_scope():
            return fn(*args, **kwargs)

    return scoped
