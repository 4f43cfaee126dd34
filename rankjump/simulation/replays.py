"""``rankjump replay``: one trajectory of a result again, with fine checkpoints over a window.

A trajectory's path depends only on (run.seed, trajectory, step) (docs/theory.md, randomness):
rerun from the result's recorded configuration, it follows the same path, so the replay's
checkpoints at the original steps equal the original records (bit for bit in float64). Inside a
window it records every ``every`` steps, with the per-layer singular values (``layer_sv``), and
it gives the entry each step sampled (``sample_row``, ``sample_col``): what a jump's mechanism
needs to be seen.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from rankjump.config import loads_config
from rankjump.config.kinds import ENTRYWISE_KINDS
from rankjump.dynamics import TaskArrays, make_dynamics
from rankjump.kernel import interval_structure, split_lane_key
from rankjump.results.io import ResultError, load_result
from rankjump.results.schema import SAMPLE_STREAMS
from rankjump.runtime.precision import with_float64
from rankjump.simulation.plan import lane_keys, plan_run
from rankjump.simulation.runs import assemble, progress_bar, run_lanes_of
from rankjump.simulation.starts import shared_starts

__all__ = ["MAX_FINE_CHECKPOINTS", "ReplayError", "Window", "jump_window", "replay"]

MAX_FINE_CHECKPOINTS = 10_000  # the default --every keeps a window under this many checkpoints
MAX_WINDOW_STEPS = 10_000_000  # the sampled entries of every step of the window are kept


class ReplayError(ResultError):
    """A replay cannot be made as asked (cell, trajectory or window)."""


class Window(NamedTuple):
    """Steps ``start`` .. ``stop`` recorded every ``every`` steps."""

    start: int
    stop: int
    every: int


def _index(values: np.ndarray, value: float, name: str) -> int:
    """Position of ``value`` in a coordinate, to a relative 1e-9; a clear error otherwise."""
    close = np.flatnonzero(np.isclose(values, value, rtol=1e-9, atol=0.0))
    if not close.size:
        have = ", ".join(f"{v:g}" for v in values)
        raise ReplayError(f"--cell: {name} = {value:g} is not in the result ({name}: {have})")
    return int(close[0])


def _check_steps(source: xr.Dataset, run) -> None:
    """Refuse a result whose checkpoints are not those its configuration records (an edited
    file): a replay would follow the configuration and be compared with other steps."""
    steps = np.asarray(source["step"].values)
    want = run.record_every * np.arange(len(steps))
    if len(steps) > run.n_checkpoints or not np.array_equal(steps, want):
        shown = ", ".join(str(int(x)) for x in steps[:3]) + (", ..." if len(steps) > 3 else "")
        raise ReplayError(
            f"the result's configuration (run.steps = {run.steps}, run.record_every = "
            f"{run.record_every}) does not match its checkpoints (steps {shown}; "
            f"{len(steps)} of them): the file or its configuration was edited, so its "
            "trajectories cannot be replayed"
        )


def jump_window(
    rank: np.ndarray, sv: np.ndarray, steps: np.ndarray, record_every: int
) -> tuple[int, int]:
    """Default window around a trajectory's first jump, from its coarse records: from the last
    checkpoint before it where the vanishing mode (singular value r of A_theta, r the start
    rank; ``sv`` is (checkpoint, k)) still had half its starting size, to one interval after
    the first checkpoint below rank r. The mode collapses fast and then decays slowly to the
    threshold, so the window holds both."""
    r = int(rank[0])
    below = np.flatnonzero((rank >= 0) & (rank < r))
    if not below.size:
        raise ReplayError(
            f"the trajectory never drops below its start rank {r} in the file; give --from and --to"
        )
    entry = below[0]
    mode = sv[:, r - 1] if 0 < r <= sv.shape[1] else np.zeros(len(steps))
    basin = np.flatnonzero(mode[:entry] >= 0.5 * mode[0])
    first = basin[-1] if basin.size else max(entry - 1, 0)
    return int(steps[first]), min(int(steps[-1]), int(steps[entry]) + record_every)


def _window(start, stop, every, default, record_every: int, steps: int) -> Window:
    """Check (or fill in) the window: original checkpoints at both ends, ``every`` dividing
    ``record_every`` so that every original checkpoint inside is a fine one too."""
    start = default[0] if start is None else int(start)
    stop = default[1] if stop is None else int(stop)
    for name, value in (("--from", start), ("--to", stop)):
        if value % record_every or not 0 <= value <= steps:
            raise ReplayError(
                f"{name} {value}: must be a checkpoint of the result (a multiple of "
                f"run.record_every = {record_every} in [0, {steps}])"
            )
    if stop <= start:
        raise ReplayError(f"--to {stop}: must be after --from {start}")
    if stop - start > MAX_WINDOW_STEPS:
        raise ReplayError(
            f"--from {start} --to {stop}: a window of {stop - start} steps is longer than "
            f"{MAX_WINDOW_STEPS} (the entry of every step is kept); replay a shorter one"
        )
    if every is None:
        divisors = [d for d in range(1, record_every + 1) if record_every % d == 0]
        fine = (d for d in divisors if (stop - start) // d <= MAX_FINE_CHECKPOINTS)
        every = next(fine, record_every)
    if every < 1 or record_every % every:
        raise ReplayError(
            f"--every {every}: must divide run.record_every = {record_every} (so the original "
            "checkpoints are among the replay's)"
        )
    return Window(start, stop, every)


@with_float64
def replay(
    result: str | Path | xr.Dataset,
    lam: float,
    eta: float,
    traj: int,
    start: int | None = None,
    stop: int | None = None,
    every: int | None = None,
    progress: bool | None = None,
) -> xr.Dataset:
    """Rerun one trajectory of a result, finely over a window.

    Args:
        result: a result file (or its Dataset) from ``simulate`` or ``sweep``.
        lam, eta: the cell.
        traj: the trajectory index.
        start, stop: the window, original checkpoints (default: around the trajectory's first
            drop below its start rank, see :func:`jump_window`).
        every: fine checkpoint stride, a divisor of ``run.record_every`` (default: the smallest
            that keeps the window under :data:`MAX_FINE_CHECKPOINTS` checkpoints).
        progress: show a progress bar (default: only on a terminal).

    Per-trajectory GD starts are recomputed one lane at a time: equal to the run's (computed in
    chunks) wherever lanes do not change each other's rounding, as on the CPU here; on other
    devices a replay's start may then differ in the last bits.

    Returns:
        A result Dataset of one cell and one trajectory (the schema of ``simulate``) whose
        checkpoints are the original ones up to ``start`` and every ``every`` steps from
        ``start`` to ``stop``, plus ``layer_sv`` (per-layer singular values), and per step of
        the window the sampled entries ``sample_row``, ``sample_col`` (entry-wise kinds; and
        ``sample_noise`` for label noise). Attributes ``replay_*`` say what was replayed.
    """
    t0 = time.perf_counter()
    source = result if isinstance(result, xr.Dataset) else load_result(result)
    if source.attrs.get("sample_streams") != SAMPLE_STREAMS:
        raise ReplayError(
            "the result was made by a rankjump that drew its samples differently "
            f"({source.attrs.get('rankjump_version', 'unknown version')}); rerun it with this "
            "one to replay its trajectories"
        )
    cfg = loads_config(source.attrs["config"], source="the result's configuration")
    _check_steps(source, cfg.run)
    li = _index(source["lam"].values, lam, "lam")
    ei = _index(source["eta"].values, eta, "eta")
    positions = np.flatnonzero(source["traj"].values == traj)
    if not positions.size:
        n = source.sizes["traj"]
        raise ReplayError(f"--traj {traj}: the result has trajectories 0 .. {n - 1}")
    original = source.isel(lam=li, eta=ei, traj=int(positions[0]))
    run = cfg.run
    default = (None, None)
    if start is None or stop is None:
        try:
            default = jump_window(
                original["rank"].values,
                original["sv"].values,
                original["step"].values,
                run.record_every,
            )
        except ReplayError as err:
            raise ReplayError(f"--traj {traj} of (lam {lam:g}, eta {eta:g}): {err}") from None
    window = _window(start, stop, every, default, run.record_every, run.steps)
    if bool(original["diverged"]) and int(original["diverged_step"]) <= window.start:
        raise ReplayError(
            f"--traj {traj} diverged at step {int(original['diverged_step'])}, before the "
            f"window starts ({window.start})"
        )
    lam_value, eta_value = float(source["lam"][li]), float(source["eta"][ei])
    cell = cfg.replace(optimizer={"lam": [lam_value], "eta": [eta_value]})
    plan = plan_run(cell, devices=jax.devices()[:1], chunk=1)
    plan = plan._replace(lane_traj=np.array([traj]), lane_lam=np.zeros(1, int))
    plan = plan._replace(lane_eta=np.zeros(1, int))
    starts = shared_starts(plan)
    phases = [(run.record_every, 0, window.start), (window.every, window.start, window.stop)]
    parts, state, extra = [], None, {}
    with progress_bar(window.stop, "replay", progress) as bar:
        for stride, a, b in phases:
            if b == a:
                continue
            s = interval_structure(plan.structure, stride, (b - a) // stride)
            s = s._replace(layer_sv=True, init=s.init if state is None else "given")
            rec, ex, state = run_lanes_of(
                plan._replace(structure=s), [0], 1, starts, bar, k0=a // stride, state=state
            )
            extra = extra or ex
            parts.append(rec if not parts else jax.tree_util.tree_map(lambda x: x[:, 1:], rec))
    records = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=1), *parts)
    steps = np.concatenate(
        [np.arange(0, window.start, run.record_every), np.arange(*window, dtype=np.int64)]
        + [np.array([window.stop])]
    )
    ds = assemble(plan, records, extra, starts, time.perf_counter() - t0, steps, [traj])
    for name, (dims, values) in _samples(cell, plan, traj, window).items():
        ds[name] = (dims, values)
    ds = ds.assign_coords(sample_step=np.arange(window.start, window.stop))
    ds["sample_row"].attrs["long_name"] = "row i of the entry sampled at each step of the window"
    ds["sample_col"].attrs["long_name"] = "column j of the entry sampled at each step"
    if "layer_sv" in ds:
        ds["layer_sv"].attrs["long_name"] = "singular values of each layer W_l"
    ds.attrs.update(
        replay_source="" if isinstance(result, xr.Dataset) else str(result),
        replay_traj=int(traj),
        replay_from=window.start,
        replay_to=window.stop,
        replay_every=window.every,
        replay_start_rank=int(original["rank"].values[0]),
    )
    return ds


def _samples(cfg, plan, traj: int, window: Window) -> dict:
    """The entries (and label noise) each step of the window sampled, drawn as the kernel draws
    them: trajectory ``traj``'s dynamics key, counter = the global step."""
    opt, task = cfg.optimizer, plan.task
    if opt.kind not in ENTRYWISE_KINDS:
        empty = np.zeros((window.stop - window.start, 0), np.int32)
        return {
            "sample_row": (("sample_step", "batch"), empty),
            "sample_col": (
                ("sample_step", "batch"),
                empty,
            ),
        }
    dtype = jnp.dtype(cfg.run.dtype)
    dyn = make_dynamics(
        opt.kind, TaskArrays.of(task, dtype), plan.structure.shapes, opt.batch_size, dtype
    )
    _, key_dyn = split_lane_key(lane_keys(cfg.run.seed, [traj])[0])
    idx, noise = dyn.draw_steps(key_dyn, jnp.arange(window.start, window.stop, dtype=jnp.uint32))
    idx = np.asarray(idx)
    out = {
        "sample_row": (("sample_step", "batch"), np.asarray(task.rows)[idx]),
        "sample_col": (("sample_step", "batch"), np.asarray(task.cols)[idx]),
    }
    if opt.kind == "label_noise":
        out["sample_noise"] = (("sample_step", "batch"), opt.label_noise * np.asarray(noise))
    return out
