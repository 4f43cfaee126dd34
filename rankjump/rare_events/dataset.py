"""A rare result as a Dataset: per cell the estimate and intervals, per run the runs' records,
the reactive paths, the method's own numbers, the diagnostics of the runs, and the attributes
that say how it was made and what its p rests on (:data:`ASSUMPTIONS`)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from rankjump.config import config_to_toml
from rankjump.rare_events.batches import STOPS
from rankjump.rare_events.types import AMSResult
from rankjump.results.schema import provenance
from rankjump.stats.diagnostics import result_diagnostics

__all__ = ["ASSUMPTIONS", "RESULT_KIND", "result_dataset"]

RESULT_KIND = "rare"  # attrs["result_kind"] of a rare result (a simulate result has none)


def result_dataset(cfg, finished) -> xr.Dataset:
    """The Dataset of ``finished`` cells (lam-major rows of
    :class:`rankjump.rare_events.partial.FinishedCell`) of a run of ``cfg``."""
    n_lam, n_eta = len(finished), len(finished[0])
    finished = {(i, j): row[j] for i, row in enumerate(finished) for j in range(n_eta)}
    order = [finished[i, j] for i in range(n_lam) for j in range(n_eta)]
    cells = [c.result for c in order]
    extras = [c.extra for c in order]
    stops = [STOPS.index(c.stop) for c in order]
    wall = sum(c.seconds for c in order)
    start_rank = np.array([finished[i, 0].start_rank for i in range(n_lam)], int)
    target_rank = np.array([finished[i, 0].target_rank for i in range(n_lam)], int)
    edge = np.array([finished[i, 0].eta_edge for i in range(n_lam)], float)
    made = np.array([len(c.estimate) for c in cells])
    n_runs = int(made.max())
    cells = [_padded_runs(c, n_runs) for c in cells]
    ds = _dataset(cfg, cells, (n_lam, n_eta, n_runs), start_rank, target_rank, wall)
    ds["runs_stop"] = (
        ("lam", "eta"),
        np.asarray(stops, np.int8).reshape(n_lam, n_eta),
        {
            "long_name": "why the cell's runs stopped (rare.runs)",
            "flag_values": list(range(len(STOPS))),
            "flag_meanings": " ".join(STOPS),
        },
    )
    ds["run_made"] = (
        ("lam", "eta", "run"),
        np.arange(n_runs) < made.reshape(n_lam, n_eta, 1),
        {"long_name": "the run was made (cells of rare.runs = 'auto' hold different counts)"},
    )
    edge_text = (
        "1 / max_e h_e at the start: the edge of stability (rankjump.simulation.starts.eta_edge)"
    )
    ds["eta_edge"] = ("lam", edge, {"long_name": edge_text})
    for name in extras[0]:  # per cell, per run ((runs,) arrays) or over the given dims
        value, text, *over = extras[0][name]
        if over:  # (value, long name, dims after the cell's)
            values = np.asarray([np.asarray(e[name][0], float) for e in extras])
            dims = ("lam", "eta", *over[0])
        else:
            values = np.asarray([_pad(np.asarray(e[name][0], float), n_runs) for e in extras])
            dims = ("lam", "eta", "run")[: values.ndim + 1]
        values = values.reshape(n_lam, n_eta, *values.shape[1:])
        ds[name] = (dims, values, {"long_name": text})
    return ds


def _pad(x: np.ndarray, n: int, fill=np.nan) -> np.ndarray:
    """A per-run array (first axis) padded to ``n`` runs with ``fill``; a scalar as it is."""
    if x.ndim == 0 or len(x) == n:
        return x
    return np.concatenate([x, np.full((n - len(x), *x.shape[1:]), fill, x.dtype)])


def _padded_runs(c: AMSResult, n: int) -> AMSResult:
    """A cell's result padded to ``n`` runs (cells of ``rare.runs = "auto"`` hold different
    counts): padded runs are unfinished, with no estimate and no cost; the summary and the
    reactive paths are the cell's own."""
    if len(c.estimate) == n:
        return c
    return c._replace(
        estimate=_pad(c.estimate, n),
        finished=_pad(c.finished, n, False),
        extinct=_pad(c.extinct, n, False),
        floored=_pad(c.floored, n, False),
        iterations=_pad(c.iterations, n, 0),
        killed=_pad(c.killed, n, 0),
        levels=_pad(c.levels, n),
        cost=_pad(c.cost, n, 0),
    )


# What each method's p rests on beyond the simulator itself (a rare result's attrs["assumptions"],
# printed by `rankjump stats`); the sensitivities are measured in docs/theory.md, section 6.
ASSUMPTIONS = {
    "flux": (
        "none: unbiased whatever rare.kick, rare.basin and the look stride (run.record_every); "
        "kicks at 0.2, 0.3, 0.45 move p by at most 6% and basins at 0.6, 0.7, 0.8 not at all "
        "(eta 0.16 and two cells near 1e-4, the same paths)"
    ),
    "ams": "none: unbiased whatever the score (generalized AMS, ties killed together)",
    "rate": (
        "a constant rate of committed kicks from the start and a delay from kick to entry "
        "(P(T) = 1 - exp(-k E[(T - D)+])), kicks counted in windows from one pool of basin states "
        "after rare.burn_in: 0.020 against plain Monte Carlo's 0.029 at eta 0.17"
    ),
}


def _commit_text(r) -> str:
    """How a rate result's kicked states were continued (its attrs["commit"])."""
    if r.commit == "split":
        return f"split: one AMS run per window run, score {r.commit_score}"
    return f"continue: {r.commit_reps} continuations of each kicked state"


def _dataset(cfg, cells, shape, start_rank, target_rank, wall) -> xr.Dataset:
    n_lam, n_eta, n_runs = shape
    n_ckpt = cfg.run.n_checkpoints  # the start and every record_every steps
    n_reactive = max((len(c.reactive.run) for c in cells), default=0)

    def grid(f, dtype=float):
        return np.asarray([f(c) for c in cells], dtype).reshape(
            n_lam, n_eta, *np.shape(f(cells[0]))
        )

    def padded(f, fill, tail=()):
        out = np.full((len(cells), n_reactive, *tail), fill)
        for c, cell in enumerate(cells):
            values = f(cell)
            out[c, : len(values)] = values
        return out.reshape(n_lam, n_eta, n_reactive, *tail)

    cell, per_run, paths = ("lam", "eta"), ("lam", "eta", "run"), ("lam", "eta", "reactive")
    ds = xr.Dataset(
        {
            "p": (cell, grid(lambda c: c.summary.mean)),
            "p_stderr": (cell, grid(lambda c: c.summary.stderr)),
            "p_lo": (cell, grid(lambda c: c.summary.ci[0])),
            "p_hi": (cell, grid(lambda c: c.summary.ci[1])),
            "log_p_lo": (cell, grid(lambda c: c.summary.log_ci[0])),
            "log_p_hi": (cell, grid(lambda c: c.summary.log_ci[1])),
            "run_estimate": (per_run, grid(lambda c: c.estimate)),
            "run_finished": (per_run, grid(lambda c: c.finished, bool)),
            "run_extinct": (per_run, grid(lambda c: c.extinct, bool)),
            "run_iterations": (per_run, grid(lambda c: c.iterations, np.int64)),
            "run_cost": (per_run, grid(lambda c: c.cost, np.int64)),
            "run_diverged": (per_run, grid(lambda c: _pad(c.diverged, n_runs, 0), np.int64)),
            "reactive_run": (paths, padded(lambda c: c.reactive.run, -1).astype(np.int64)),
            "reactive_weight": (paths, padded(lambda c: c.reactive.weight, np.nan)),
            "reactive_score": (
                (*paths, "checkpoint"),
                padded(lambda c: c.reactive.scores, np.nan, (n_ckpt,)),
            ),
        },
        coords={
            "lam": np.asarray(cfg.optimizer.lam),
            "eta": np.asarray(cfg.optimizer.eta),
            "run": np.arange(n_runs),
            "step": ("checkpoint", cfg.run.record_every * np.arange(n_ckpt)),
        },
    )
    level = cells[0].summary.level
    ds["p"].attrs["long_name"] = (
        f"P(enter B_r, r = target_rank, within {cfg.run.steps} steps), mean of the runs' estimates"
    )
    ds["p_lo"].attrs["long_name"] = f"{level:.0%} t interval on p, lower end (clipped at 0)"
    ds["log_p_lo"].attrs["long_name"] = (
        f"ln of the {level:.0%} t interval on p, lower end (-inf where it reaches 0)"
        if cfg.rare.method == "rate"
        else f"{level:.0%} delta-method interval on ln p, lower end"
    )
    ds["run_cost"].attrs["long_name"] = "trajectory-steps simulated by the run"
    ds["run_diverged"].attrs["long_name"] = (
        "paths of the run that diverged (||theta||^2 above run.diverge_norm2 or not finite): "
        "they never reach the target"
    )
    per_run = cfg.rare.paths if cfg.rare.method == "flux" else cfg.rare.replicas
    ds = ds.assign(result_diagnostics(ds, per_run))
    ds["reactive_weight"].attrs["long_name"] = "prod_q (1 - K_q / N) / N of the path's run"
    ds.attrs.update(
        {
            "producer": "rankjump",
            **provenance(),
            "result_kind": RESULT_KIND,
            "config": config_to_toml(cfg),
            "method": cfg.rare.method,
            "score": {"rate": "smallest_layer", "flux": "none"}.get(
                cfg.rare.method, cfg.rare.score
            ),
            **({"commit": _commit_text(cfg.rare)} if cfg.rare.method == "rate" else {}),
            "assumptions": ASSUMPTIONS[cfg.rare.method],
            "start_rank": start_rank.tolist(),
            "target_rank": target_rank.tolist(),
            "level": level,
            "wall_time_s": wall,
        }
    )
    return ds
