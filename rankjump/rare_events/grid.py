"""``rankjump rare``: jump probabilities too small for plain Monte Carlo, by splitting.

For every (lam, eta) cell of a configuration, :func:`rankjump.rare_events.splitting.ams` runs
``rare.runs`` independent runs of ``rare.replicas`` replicas of the network
(:class:`rankjump.rare_events.network.NetworkProcess`) and estimates P(enter B_{target} within
``run.steps``) with an interval on p and on ln p. The result is a labeled Dataset (netCDF on disk)
with, per cell, the estimate and interval, each run's estimate, iterations and cost in
trajectory-steps, and the reactive paths: the final replicas that reached the target set, with their
weights and scores at every checkpoint. With ``rare.method = "rate"`` the cell is estimated from the
rate of kicks out of the basin instead (:mod:`rankjump.rare_events.rate`; no reactive paths, and the
rate, the kick probability per window, the committor and the delay are added). With
``rare.method = "flux"`` it is estimated by forward flux from the real start
(:mod:`rankjump.rare_events.flux`; no reactive paths; the kicks, the committor, plain Monte
Carlo's estimate from the same paths and P at every checkpoint are added).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import xarray as xr
from tqdm import tqdm

from rankjump.config import Config, config_to_toml
from rankjump.rare_events.batches import concat_results, in_batches
from rankjump.rare_events.dataset import RESULT_KIND, result_dataset
from rankjump.rare_events.flux import flux_cell
from rankjump.rare_events.flux_result import FluxResult, flux_as_cell, flux_variables
from rankjump.rare_events.flux_result import combine as flux_combine
from rankjump.rare_events.network import NetworkProcess
from rankjump.rare_events.partial import FinishedCell, load_record, save_cells
from rankjump.rare_events.rate import check_kick, commit_steps_of, rate_cell
from rankjump.rare_events.rate_result import as_cell, combine, rate_variables
from rankjump.rare_events.settings import check_rare, check_rare_memory, run_splitting
from rankjump.runtime.precision import with_float64
from rankjump.runtime.signals import raise_pending

__all__ = ["RESULT_KIND", "check_starts", "rare"]


def _cell(
    cfg: Config,
    lam: float,
    eta: float,
    key,
    progress: bool | None,
    kept: dict[int, dict] | None = None,
    on_batch=None,
):
    """(the cell's result, its process, extra variables of the method, why its runs stopped
    (:data:`rankjump.rare_events.batches.STOPS`), seconds). A flux cell reuses the batches in
    ``kept`` (batch number -> the arrays of its :class:`FluxResult`, from a stopped run) and
    hands each batch it makes to ``on_batch(number, result)``."""
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
        done = f"{stage}: runs done" if stage and stage != "paths" else "runs done"
        of = f"/{r.runs}" if r.runs != "auto" else " (this batch)"
        low = "" if stage == "paths" else f", lowest level {level:.3f}"
        bar.set_postfix_str(f"{done} {finished}{of}{low}", False)

    t0 = time.perf_counter()
    with bar:
        if r.method == "rate":

            def batch(b: int, first: int, count: int):
                part = key if b == 0 else jax.random.fold_in(key, b)  # a pool of its own
                return rate_cell(cfg.replace(rare={"runs": count}), lam, eta, part, tick)

            parts, stop = in_batches(batch, lambda ps: as_cell(combine(ps, run.steps)), r)
            result = combine(parts, run.steps)
            out, extra, process = as_cell(result), rate_variables(result), result.network
        elif r.method == "flux":
            restored_network = NetworkProcess(cfg, lam, eta) if kept else None

            def batch(b: int, first: int, count: int):
                def runs_done(done: int) -> None:
                    tick(first + done, first + done, float("nan"), "paths")

                arrays = (kept or {}).get(b)
                if arrays is not None and len(arrays["estimate"]) == count:  # a stopped run's
                    runs_done(count)
                    return FluxResult(**arrays, network=restored_network)
                part = flux_cell(cfg, lam, eta, key, count, first_run=first, on_run=runs_done)
                if on_batch is not None:
                    on_batch(b, part)
                return part

            def joined(ps):
                return flux_as_cell(flux_combine(ps))

            parts, stop = in_batches(batch, joined, r)
            result = flux_combine(parts)
            out, extra, process = joined(parts), flux_variables(result), result.network
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
    paths, basin = int(out.diverged.sum()), int(extra.get("basin_diverged", (0,))[0])
    if paths or basin:  # as `rankjump simulate` warns of diverged trajectories
        where = [f"{paths} paths of its runs"] if paths else []
        where += [f"{basin} of {r.pool} basin replicas"] if basin else []
        print(
            f"warning: lam {lam:g}, eta {eta:g}: {' and '.join(where)} diverged (||theta||^2 "
            f"above run.diverge_norm2 = {run.diverge_norm2:g} or not finite); a diverged path "
            "never reaches the target",
            file=sys.stderr,
            flush=True,
        )
    return out, process, extra, stop, time.perf_counter() - t0


def check_starts(cfg: Config) -> None:
    """Compute every lam's start (as the cells will: the GD minimum is computed once) and
    refuse, before the splitting, what it decides: the start already diverged
    (:class:`rankjump.rare_events.network.NetworkProcess`), the target rank at or above its
    rank, and by the rate method a kick the threshold makes unreachable and the memory of the
    default commitment horizon."""
    opt, r = cfg.optimizer, cfg.rare
    for lam in opt.lam:
        if r.method == "ams":
            NetworkProcess(cfg, lam, opt.eta[0])
            continue
        if r.method == "flux":
            check_kick(NetworkProcess(cfg, lam, opt.eta[0]), r.kick)
            continue
        window = NetworkProcess(
            cfg.replace(run={"record_every": r.window_every, "steps": r.window}),
            lam,
            opt.eta[0],
            score="smallest_layer",
        )
        check_kick(window, r.kick)
        if r.commit_steps is None:  # the longest of the lam's cells (the smallest eta)
            check_rare_memory(cfg, commit_steps_of(cfg, window, lam, opt.eta[0]))


@with_float64
def rare(
    cfg: Config, progress: bool | None = None, partial: str | Path | None = None
) -> xr.Dataset:
    """Estimate the jump probability of every cell of ``cfg`` by splitting (``[rare]``).

    Cell (i, j) uses the key ``fold_in(PRNGKey(run.seed), i * n_eta + j)``, so a cell's numbers
    do not depend on the other cells.

    Args:
        cfg: a validated configuration with a ``[rare]`` section.
        progress: per-cell progress bars and lines (default: bars only on a terminal).
        partial: a file that keeps the finished cells (:mod:`rankjump.rare_events.partial`):
            each cell is written there when it finishes, and the cells found there from a run of
            the same configuration are reused, so a run stopped by a signal or a late error
            continues where it stopped. The caller removes it once the result is saved.

    Returns:
        A Dataset over (lam, eta) with ``p`` and its interval, per-run values over ``run``, and
        reactive paths over ``reactive`` and ``checkpoint`` (padded with NaN).
    """
    check_rare(cfg)
    check_starts(cfg)  # every lam's start, before the splitting
    opt, run = cfg.optimizer, cfg.run
    n_lam, n_eta = len(opt.lam), len(opt.eta)
    root = jax.random.PRNGKey(run.seed)
    toml = config_to_toml(cfg)
    kept, kept_batches = (
        load_record(partial, toml) if partial is not None and Path(partial).exists() else ({}, {})
    )
    finished: dict[tuple[int, int], FinishedCell] = {}
    for i, lam in enumerate(opt.lam):
        for j, eta in enumerate(opt.eta):
            raise_pending()  # an interrupt that a callback swallowed stops the run here
            if (i, j) in kept:
                finished[i, j] = cell = kept[i, j]
                if progress is not False:
                    print(f"  lam {lam:g}, eta {eta:g}: kept from {partial}", flush=True)
                continue
            key = jax.random.fold_in(root, i * n_eta + j)
            batches: dict[int, FluxResult] = {}

            def keep_batch(b: int, part: FluxResult, ij=(i, j), batches=batches) -> None:
                batches[b] = part  # kept until the cell finishes, for a resumed run
                if partial is not None:
                    save_cells(partial, toml, finished, {ij: batches})

            was = kept_batches.get((i, j))
            if was and progress is not False:
                print(f"  lam {lam:g}, eta {eta:g}: {len(was)} batch(es) kept from {partial}")
            out, process, extra, stop, seconds = _cell(
                cfg, lam, eta, key, progress, was, keep_batch
            )
            # The reactive paths' states are not stored: dropped here, they hold no memory.
            out = out._replace(reactive=out.reactive._replace(states=()))
            cell = FinishedCell(
                out, process.start_rank, process.target_rank, process.eta_edge, extra, stop, seconds
            )
            finished[i, j] = cell
            if partial is not None:
                save_cells(partial, toml, finished)
            if progress is not False:
                s, dead, m = out.summary, int(out.extinct.sum()), len(out.estimate)
                why = "" if stop == "fixed" else f", stopped: {stop}"
                how = (
                    f"{m} runs of {cfg.rare.paths} paths, {int(extra['kicks'][0])} kicks"
                    if cfg.rare.method == "flux"
                    else f"{int(out.iterations.sum())} iterations, {dead} of {m} runs died out"
                )
                print(
                    f"  lam {lam:g}, eta {eta:g}: p = {s.mean:.3g} [{s.ci[0]:.3g}, {s.ci[1]:.3g}]"
                    f" ({how}{why}, {seconds:.1f} s)",
                    flush=True,
                )
    return result_dataset(cfg, [[finished[i, j] for j in range(n_eta)] for i in range(n_lam)])
