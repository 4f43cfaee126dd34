"""``rankjump rare``: jump probabilities too small for plain Monte Carlo, by splitting.

For every (lam, eta) cell of a configuration, :func:`rankjump.rare_events.splitting.ams` runs
``rare.runs`` independent runs of ``rare.replicas`` replicas of the network
(:class:`rankjump.rare_events.network.NetworkProcess`) and estimates P(enter B_{target} within
``run.steps``) with an interval on p and on ln p. The result is a labeled Dataset (netCDF on disk)
with, per cell, the estimate and interval, each run's estimate, iterations and cost in
trajectory-steps, and the reactive paths: the final replicas that reached the target set, with their
weights and scores at every checkpoint. With ``rare.method = "rate"`` the cell is estimated from the
rate of kicks out of the basin instead (:mod:`rankjump.rare_events.rate`; no reactive paths, and the
rate, the kick probability per window, the committor and the delay are added).
"""

from __future__ import annotations

import time

import jax
import numpy as np
import xarray as xr
from tqdm import tqdm

from rankjump.config import Config, config_to_toml
from rankjump.rare_events.batches import STOPS, concat_results, in_batches
from rankjump.rare_events.network import NetworkProcess
from rankjump.rare_events.rate import rate_cell
from rankjump.rare_events.rate_result import as_cell, combine, rate_variables
from rankjump.rare_events.settings import check_rare, run_splitting
from rankjump.rare_events.types import AMSResult
from rankjump.results.schema import provenance
from rankjump.runtime.precision import with_float64
from rankjump.stats.diagnostics import result_diagnostics

__all__ = ["RESULT_KIND", "rare"]

RESULT_KIND = "rare"  # attrs["result_kind"] of a rare result (a simulate result has none)


def _cell(cfg: Config, lam: float, eta: float, key, progress: bool | None):
    """(the cell's result, its process, extra variables of the method, why its runs stopped
    (:data:`rankjump.rare_events.batches.STOPS`), seconds)."""
    r, run = cfg.rare, cfg.run
    bar = tqdm(
        desc=f"lam {lam:g}, eta {eta:g}",
        unit="iteration",
        disable=None if progress is None else not progress,
        mininterval=0.5,
        leave=False,
    )

    def tick(iteration: int, finished: int, level: float, stage: str = "") -> None:
        bar.update(iteration - bar.n)
        done = f"{stage}: runs done" if stage else "runs done"
        of = f"/{r.runs}" if r.runs != "auto" else " (this batch)"
        bar.set_postfix_str(f"{done} {finished}{of}, lowest level {level:.3f}", False)

    t0 = time.perf_counter()
    with bar:
        if r.method == "rate":

            def batch(b: int, first: int, count: int):
                part = key if b == 0 else jax.random.fold_in(key, b)  # a pool of its own
                return rate_cell(cfg.replace(rare={"runs": count}), lam, eta, part, tick)

            parts, stop = in_batches(batch, lambda ps: as_cell(combine(ps, run.steps)), r)
            result = combine(parts, run.steps)
            out, extra, process = as_cell(result), rate_variables(result), result.network
        else:
            process = NetworkProcess(cfg, lam, eta)

            def batch(b: int, first: int, count: int):
                return run_splitting(
                    process, key, r, run.steps, run.record_every, tick, runs=count, first_run=first
                )

            def joined(ps):
                return concat_results(ps, ps[0].summary.level)

            parts, stop = in_batches(batch, joined, r)
            out, extra = joined(parts), {}
    return out, process, extra, stop, time.perf_counter() - t0


@with_float64
def rare(cfg: Config, progress: bool | None = None) -> xr.Dataset:
    """Estimate the jump probability of every cell of ``cfg`` by splitting (``[rare]``).

    Cell (i, j) uses the key ``fold_in(PRNGKey(run.seed), i * n_eta + j)``, so a cell's numbers
    do not depend on the other cells.

    Returns:
        A Dataset over (lam, eta) with ``p`` and its interval, per-run values over ``run``, and
        reactive paths over ``reactive`` and ``checkpoint`` (padded with NaN).
    """
    check_rare(cfg)
    opt, run = cfg.optimizer, cfg.run
    n_lam, n_eta = len(opt.lam), len(opt.eta)
    root = jax.random.PRNGKey(run.seed)
    cells, extras, stops, wall = [], [], [], 0.0
    start_rank, target_rank = np.zeros(n_lam, int), np.zeros(n_lam, int)
    edge = np.zeros(n_lam)
    for i, lam in enumerate(opt.lam):
        for j, eta in enumerate(opt.eta):
            key = jax.random.fold_in(root, i * n_eta + j)
            out, process, extra, stop, seconds = _cell(cfg, lam, eta, key, progress)
            extras.append(extra)
            stops.append(STOPS.index(stop))
            if progress is not False:
                s, dead, m = out.summary, int(out.extinct.sum()), len(out.estimate)
                why = "" if stop == "fixed" else f", stopped: {stop}"
                print(
                    f"  lam {lam:g}, eta {eta:g}: p = {s.mean:.3g} [{s.ci[0]:.3g}, {s.ci[1]:.3g}]"
                    f" ({int(out.iterations.sum())} iterations, {dead} of {m} runs died"
                    f" out{why}, {seconds:.1f} s)",
                    flush=True,
                )
            cells.append(out)
            wall += seconds
            start_rank[i], target_rank[i] = process.start_rank, process.target_rank
            edge[i] = process.eta_edge
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
    for name in extras[0]:  # per cell, or per run where the method gives (runs,) arrays
        values = np.asarray([_pad(np.asarray(e[name][0], float), n_runs) for e in extras])
        dims = ("lam", "eta", "run")[: values.ndim + 1]
        values = values.reshape(n_lam, n_eta, *values.shape[1:])
        ds[name] = (dims, values, {"long_name": extras[0][name][1]})
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
    ds = ds.assign(result_diagnostics(ds, cfg.rare.replicas))
    ds["reactive_weight"].attrs["long_name"] = "prod_q (1 - K_q / N) / N of the path's run"
    ds.attrs.update(
        {
            "producer": "rankjump",
            **provenance(),
            "result_kind": RESULT_KIND,
            "config": config_to_toml(cfg),
            "method": cfg.rare.method,
            "score": "smallest_layer" if cfg.rare.method == "rate" else cfg.rare.score,
            **({"commit": _commit_text(cfg.rare)} if cfg.rare.method == "rate" else {}),
            "start_rank": start_rank.tolist(),
            "target_rank": target_rank.tolist(),
            "level": level,
            "wall_time_s": wall,
        }
    )
    return ds
