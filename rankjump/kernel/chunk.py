"""The compiled kernel: one chunk of lanes, scanned over checkpoint intervals.

A lane is one (cell, trajectory) pair of the lam x eta grid. A chunk of lanes runs through ONE
compiled program (:func:`compiled_chunk`): shapes and step counts are static (:class:`Structure`),
while lam, eta, the schedule's phase values and the thresholds are traced per lane
(:class:`LaneParams`). The scan over intervals works on the whole chunk, so the host callback at
each checkpoint reports progress (:data:`PROGRESS`) once per chunk, not once per lane.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from rankjump.dynamics import Hyper, State, TaskArrays, new_state
from rankjump.kernel.layout import options_for
from rankjump.kernel.records import record
from rankjump.kernel.stepping import advance
from rankjump.kernel.types import LaneParams, Structure
from rankjump.model.network import init_balanced, init_gaussian

__all__ = [
    "PROGRESS",
    "Progress",
    "compiled_advance",
    "compiled_chunk",
    "lane_mesh",
    "run_lanes",
    "set_listener",
    "split_lane_key",
    "trace_count",
]


class Progress:
    """Where running chunk programs report each finished checkpoint interval.

    A program is compiled once per :class:`Structure`, with a host callback to :meth:`tick`
    baked in; ``tick`` forwards the interval's index to the listener of the moment, set for the
    duration of a ``with PROGRESS.listening(fn):`` block (progress bars). Without a listener the
    ticks are dropped.
    """

    def __init__(self):
        self._listener = None

    @contextlib.contextmanager
    def listening(self, fn):
        """Call ``fn(k)`` on the host when interval k of a running chunk program finishes."""
        before, self._listener = self._listener, fn
        try:
            yield
        finally:
            self._listener = before

    def set(self, fn) -> None:
        """Set the listener (``None`` removes it)."""
        self._listener = fn

    def tick(self, k) -> None:
        """Interval ``k`` finished (called from inside the compiled program)."""
        if self._listener is not None:
            self._listener(int(k))


PROGRESS = Progress()
_TRACES = {"count": 0}


def set_listener(fn) -> None:
    """``PROGRESS.set(fn)``: call ``fn(k)`` when interval k of a running chunk finishes."""
    PROGRESS.set(fn)


def trace_count() -> int:
    """How many times the chunk program has been traced (a recompilation guard for tests)."""
    return _TRACES["count"]


def split_lane_key(key) -> tuple[jax.Array, jax.Array]:
    """A trajectory's key -> (the key of its drawn init, the key of its dynamics' samples)."""
    key_init, key_dyn = jax.random.split(key)
    return key_init, key_dyn


def _phase_hyper(hyper: Hyper, boundaries, step) -> Hyper:
    """The constant hyperparameters of the schedule phase in effect at ``step`` (the phase values
    sit on the last axis of ``hyper.lam`` and ``hyper.eta``: one lane's or a chunk's)."""
    phase = jnp.sum(step >= boundaries).astype(jnp.int32)
    return hyper._replace(lam=hyper.lam[..., phase], eta=hyper.eta[..., phase])


def _start(key, start, p: LaneParams, s: Structure):
    """One lane's starting weights and its dynamics key."""
    dtype = jnp.dtype(s.dtype)
    key_init, key_dyn = split_lane_key(key)
    if s.init == "gaussian":
        start = init_gaussian(key_init, s.shapes, 1.0, dtype)
        start = tuple(w * p.init_scale for w in start)
    elif s.init == "balanced":
        start = init_balanced(key_init, s.shapes, s.init_rank, 1.0, dtype)
        start = tuple(w * p.init_scale for w in start)
    return tuple(start), key_dyn


def run_lanes(
    keys,
    starts,
    params: LaneParams,
    task: TaskArrays,
    boundaries,
    k0,
    s: Structure,
    batched: bool = True,
):
    """Run lanes for ``s.n_intervals`` intervals from global interval ``k0``.

    Args:
        keys: per-lane keys (trajectory t: ``fold_in(root, t)``).
        starts: per-lane starting weights, or a :class:`State` (weights, lazy scale and
            optimizer state, e.g. the final state of an earlier call, to continue exactly), or
            None when ``s.init`` draws them.
        params: per-lane traced values.
        task: the observed entries.
        boundaries: (n_phases - 1,) steps at which the schedule's phases begin.
        k0: index of the first interval (keys and schedule continue from there).
        s: the static structure.
        batched: lanes have a leading axis; False runs one lane without it.

    Returns:
        ``(records, state)``: records with axes (lane, checkpoint, ...) holding
        ``n_intervals + 1`` checkpoints (the start first), and the final :class:`State` (lanes
        first; ``materialize`` gives the weights).
    """
    if not batched:

        def lead(tree):
            return jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], tree)

        out = run_lanes(lead(keys), lead(starts), lead(params), task, boundaries, k0, s)
        return jax.tree_util.tree_map(lambda x: x[0], out)

    scale = opt = None
    if isinstance(starts, State):
        starts, scale, opt = starts.weights, starts.scale, starts.opt
    start_axis = None if starts is None else 0
    weights, key_dyn = jax.vmap(lambda k, w, p: _start(k, w, p, s), (0, start_axis, 0))(
        keys, starts, params
    )
    if opt is None:
        opt = jax.vmap(s.dynamics(task).init_opt)(weights)
    state = new_state(weights=weights, scale=scale, step=k0 * s.record_every, opt=opt)
    lam0 = _phase_hyper(params.hyper, boundaries, k0 * s.record_every).lam

    def body(carry, k):
        # The start's record is the first iteration's (one copy of the record in the program).
        state, alive = carry
        hyper = _phase_hyper(params.hyper, boundaries, k * s.record_every)
        state = jax.lax.cond(
            k < k0, lambda st: st, lambda st: advance(st, key_dyn, hyper, task, s), state
        )
        state, rec = record(state, alive, params, jnp.where(k < k0, lam0, hyper.lam), task, s)
        jax.lax.cond(k < k0, lambda: None, lambda: jax.debug.callback(PROGRESS.tick, k))
        return (state, rec.alive), rec

    ks = k0 + jnp.arange(-1, s.n_intervals)
    alive = jnp.ones(keys.shape[0], bool)
    (state, _), recs = jax.lax.scan(body, (state, alive), ks)
    records = jax.tree_util.tree_map(lambda b: jnp.moveaxis(b, 0, 1), recs)
    return records, state


@functools.lru_cache(maxsize=32)
def compiled_chunk(s: Structure, mesh: Mesh | None = None):
    """The jit-compiled program for one chunk of lanes:
    ``(keys, starts, params, task, boundaries, k0) -> (records, final state)``.

    With a ``mesh`` of several devices (axis ``"lanes"``), each device runs the program on its
    own share of the lanes (``shard_map``; lanes are independent, so no device waits for
    another), the task, schedule and ``k0`` replicated.
    """

    def chunk(keys, starts, params, task, boundaries, k0):
        _TRACES["count"] += 1
        return run_lanes(keys, starts, params, task, boundaries, k0, s)

    if mesh is not None and mesh.size > 1:
        lanes, whole = PartitionSpec("lanes"), PartitionSpec()
        chunk = jax.shard_map(
            chunk,
            mesh=mesh,
            in_specs=(lanes, lanes, lanes, whole, whole, whole),
            out_specs=lanes,
            check_vma=False,
        )
    return jax.jit(chunk, compiler_options=options_for(s))


@functools.lru_cache(maxsize=32)
def compiled_advance(s: Structure, mesh: Mesh | None = None):
    """The stepping alone, jit-compiled: one interval of a lanes-first chunk, no checkpoint,
    ``(state, key_dyn, hyper, task) -> state``, each lane from its own ``state.step`` (the
    benchmark times it against peers that only step, too; splitting advances replicas with
    it). With a ``mesh`` of several devices each steps its share of the lanes
    (:func:`lane_mesh`)."""

    def program(state, key_dyn, hyper, task):
        return advance(state, key_dyn, hyper, task, s)

    if mesh is not None and mesh.size > 1:
        lanes = PartitionSpec("lanes")
        program = jax.shard_map(
            program,
            mesh=mesh,
            in_specs=(lanes, lanes, lanes, PartitionSpec()),
            out_specs=lanes,
            check_vma=False,
        )
    return jax.jit(program, compiler_options=options_for(s))


def lane_mesh(n: int, devices=None) -> Mesh:
    """A mesh (axis ``"lanes"``) over as many of ``devices`` (default: all) as divide ``n``
    lanes evenly."""
    devices = jax.devices() if devices is None else list(devices)
    count = max(k for k in range(1, len(devices) + 1) if n % k == 0)
    return Mesh(np.array(devices[:count]), ("lanes",))
