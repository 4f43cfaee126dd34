"""What ``rankjump rare`` accepts of a configuration, and the ``[rare]`` section handed to the
splitting engine (:func:`run_splitting`): the one place the section's replicas, kill, runs and
iteration cap reach :func:`rankjump.rare_events.splitting.ams`.

A configuration is checked in two steps before the splitting starts: :func:`check_rare` reads the
configuration alone (what the engine cannot run, and whether the runs fit in memory,
:func:`check_rare_memory`); :func:`rankjump.rare_events.grid.check_starts` then computes every
lam's start (shared with the cells that follow) and refuses what the start decides: a start
already diverged, a kick the threshold makes unreachable, the default commitment's memory.
"""

from __future__ import annotations

import math

import numpy as np

from rankjump.config import Config, ConfigError
from rankjump.config.kinds import KINDS
from rankjump.model.network import layer_shapes
from rankjump.rare_events.splitting import ams

__all__ = ["FLUX_LANES", "check_rare", "check_rare_memory", "commit_stride", "run_splitting"]

FLUX_LANES = 1 << 16  # plain paths the flux method steps at once (a group of its runs)


def commit_stride(cfg: Config) -> int:
    """Steps between the looks of the rate method's basin walk and continuations of kicked
    states: gcd(run.record_every, 100), so a delay is known to within 100 steps."""
    return math.gcd(cfg.run.record_every, 100)


def check_rare(cfg: Config) -> None:
    """Refuse, before any compute, a configuration that ``rankjump rare`` cannot estimate: its
    start must be one shared network, without a schedule, judged by the "all_layers" rule, and
    its kind one that the method runs (:data:`rankjump.config.kinds.KINDS` says why not)."""
    net, opt = cfg.network, cfg.optimizer
    if not (net.init == "file" or (net.init == "gd_minimum" and net.gd_start == "shared")):
        raise ConfigError(
            'network.init: rare needs one shared start ("gd_minimum" with gd_start = '
            '"shared", or "file")'
        )
    if opt.n_phases > 1:
        raise ConfigError("optimizer.schedule_steps: rare runs without a schedule")
    if cfg.rank.rule != "all_layers":
        raise ConfigError('rank.rule: rare estimates entry into B_r under "all_layers" only')
    kind = KINDS[opt.kind]
    if kind.rare is not None:
        raise ConfigError(f"optimizer.kind = {opt.kind!r}: rankjump rare refuses it: {kind.rare}")
    if cfg.rare.method == "rate" and kind.rate is not None:
        raise ConfigError(
            f'optimizer.kind = {opt.kind!r}: rare.method = "rate" refuses it: {kind.rate}'
        )
    r, stride = cfg.rare, commit_stride(cfg)
    if r.method == "rate" and r.commit_steps is not None and r.commit_steps % stride:
        raise ConfigError(
            f"rare.commit_steps = {r.commit_steps}: must be a multiple of {stride}, the stride "
            f"at which kicked states are looked at (gcd(run.record_every, 100))"
        )
    check_rare_memory(cfg, r.commit_steps)


def check_rare_memory(cfg: Config, commit_steps: int | None) -> None:
    """Refuse, before anything is allocated, runs whose paths would not fit in the memory
    available now: a call of the engine holds every replica's state and score at every
    checkpoint of its runs, and as much again for the reactive paths of the cell (their states
    are dropped when the cell ends). ``commit_steps``: the rate method's commitment horizon
    (None: not known yet, left out)."""
    from rankjump.simulation.plan import _available_bytes

    r, run, opt = cfg.rare, cfg.run, cfg.optimizer
    shapes = layer_shapes(cfg.task.d_out, cfg.task.d_in, cfg.network.width, cfg.network.depth)
    weights = sum(a * b for a, b in shapes) * np.dtype(run.dtype).itemsize
    state = weights * (2 if opt.kind == "sgd_momentum" else 1) + 16  # and scale, step
    once = r.auto_batch if r.runs == "auto" else r.runs  # runs of one call of the engine
    every = r.max_runs if r.runs == "auto" else r.runs  # runs of a cell
    lanes = once * r.replicas
    if r.method == "flux":  # the paths of a group of runs on the device, their kicks' states
        lanes = min(FLUX_LANES, r.paths * once)
        need = 4 * lanes * state
        fields, what = "rare.paths", "plain paths"
        way = "fewer rare.paths"
    elif r.method == "ams":
        ckpts = run.n_checkpoints
        kept = every * r.replicas * ckpts * state
        need = lanes * ckpts * (state + 8) + kept
        fields, what = "rare.runs, rare.replicas, run.record_every", f"{ckpts} checkpoints"
        way = "fewer checkpoints (a larger run.record_every)"
    else:
        ckpts = r.window // r.window_every + 1
        need = lanes * ckpts * (state + 8) + every * r.replicas * ckpts * state
        need += r.pool * state * 2
        fields, what = "rare.runs, rare.replicas, rare.window_every", f"{ckpts} window checkpoints"
        way = "fewer window checkpoints (a larger rare.window_every)"
        if commit_steps is not None:
            looks = commit_steps // commit_stride(cfg) + 1
            per = 2 * looks * (state + 8) if r.commit == "split" else r.commit_reps * state
            need += lanes * per
            if r.commit == "split":
                fields += ", rare.commit_steps"
                what += f" and {looks} commitment checkpoints"
                way += " or a shorter rare.commit_steps"
    need += 8 * weights * min(lanes, 1 << 20)  # the lanes advanced at once
    have = _available_bytes()
    if have is None or need <= 0.8 * have:
        return
    gib = 2.0**30
    runs = f"{r.max_runs} runs (rare.max_runs)" if r.runs == "auto" else f"{r.runs} runs"
    held = f"{lanes} {what}" if r.method == "flux" else f"{runs} x {r.replicas} replicas x {what}"
    raise ConfigError(
        f"{fields}: rare would hold about {need / gib:.3g} GiB ({held}) and {have / gib:.3g} GiB "
        f"is available; use fewer runs or replicas, or {way}"
    )


def run_splitting(process, key, rare, steps: int, every: int, on_iteration=None, **options):
    """:func:`rankjump.rare_events.splitting.ams` with the ``[rare]`` section's replicas, kill,
    runs and iteration cap, over ``steps`` steps scored every ``every``: the one place the
    section is handed to the engine. ``options`` go to ``ams`` as they are (``runs`` in place of
    ``rare.runs``, ``starts``, ``floor``)."""
    settings = {
        "replicas": rare.replicas,
        "kill": rare.kill,
        "runs": rare.runs,
        "max_iterations": rare.max_iterations,
    }
    return ams(
        process,
        key,
        **{**settings, **options},
        steps=steps,
        every=every,
        on_iteration=on_iteration,
    )
