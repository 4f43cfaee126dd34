"""``rankjump demo``: SGD jumps down from a rank-overestimating GD minimum, never up.

The embedded default (docs/theory.md, settings where the phenomenon shows): a 10 x 10 rank-1 target
(Gaussian factors, ||A*||_F = 5) observed on half its entries with fixed N(0, 0.3^2) noise; depth
3, width 10, lam = 2e-3. GD from a Gaussian init converges (gradient norm below 1e-10, float64) to
a minimum that fits noise with extra modes (rank 3). From it, single-entry SGD runs at several
learning rates: below a window nothing moves, inside it some trajectories drop to lower rank, and
above it most diverge (flagged, not counted). GD from the same minimum, same steps, is the control.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rankjump.cli.command import add_set
from rankjump.config.demo import demo_config
from rankjump.config.overrides import with_overrides
from rankjump.model.ranks import RULE_TEXT
from rankjump.results.io import save_result
from rankjump.runtime.precision import with_float64
from rankjump.simulation.runs import simulate
from rankjump.stats.analysis import analyze

__all__ = ["add_parser", "run", "run_demo"]


def _counts(values: np.ndarray) -> str:
    ranks, counts = np.unique(values, return_counts=True)
    return " ".join(f"{r}:{c}" for r, c in zip(ranks, counts, strict=True))


def _explain_upward(traj, ev) -> None:
    """Print what the layers and A_theta did around one upward move."""
    steps = list(traj["step"].values)
    a, b = steps.index(ev.from_step), steps.index(ev.step)
    layers = traj["layer_rank"].values
    print(
        f"  upward move at eta = {ev.eta:g}, trajectory {ev.traj}, step {ev.from_step} -> "
        f"{ev.step}: rank {ev.from_rank} -> {ev.to_rank}; layer ranks {layers[a].tolist()} -> "
        f"{layers[b].tolist()}; rank of A_theta {int(traj['end_rank'][a])} -> "
        f"{int(traj['end_rank'][b])}; singular values of A_theta "
        f"{np.array2string(traj['sv'].values[a, :4], precision=2)} -> "
        f"{np.array2string(traj['sv'].values[b, :4], precision=2)}"
    )


@with_float64
def run_demo(
    out: Path, quick: bool = False, progress: bool | None = None, overrides: Sequence[str] = ()
) -> dict:
    """Run the demo, print its summary and write ``out/result.nc`` (SGD) and ``out/gd.nc``.

    ``overrides`` are ``SECTION.KEY=VALUE`` changes to the embedded default
    (:func:`rankjump.config.overrides.with_overrides`).

    Returns:
        The JSON-ready statistics report of the SGD run.
    """
    cfg = with_overrides(demo_config(quick), overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t, n = cfg.task, cfg.network
    lam = cfg.optimizer.lam[0]
    print(
        f"rankjump demo{' --quick' if quick else ''}: {t.d_out} x {t.d_in} rank-{t.rank} target, "
        f"{t.observed:.0%} observed, noise {t.noise}; depth {n.depth}, width {n.width}, "
        f"lam = {lam:g}; {cfg.run.trajectories} SGD trajectories x {cfg.run.steps} steps "
        f"per eta (batch {cfg.optimizer.batch_size}, {cfg.run.dtype})"
    )
    sgd = simulate(cfg, progress=progress)
    gd = simulate(cfg.replace(optimizer={"kind": "gd"}, run={"trajectories": 1}), progress=False)
    start = sgd.attrs["start_rank"][0]
    print(
        f"GD minimum: rank {start} (true rank {t.rank}), gradient norm "
        f"{sgd.attrs['gd_grad_norm'][0]:.2g} after {sgd.attrs['gd_steps'][0]} GD steps "
        f"(eta {n.gd_eta}, float64)"
    )
    print(
        f"Ranks: a layer's singular values count above {sgd.attrs['threshold_layer'][0]:.2g} "
        f"(the absorption bound, docs/theory.md); rule {cfg.rank.rule}: "
        f"{RULE_TEXT[cfg.rank.rule]}"
    )
    report = analyze(sgd)
    below_name = f"P(rank < {start} | not diverged) [95% CI]"
    print(
        f"\n{'eta':>6} {'GD rank':>8} {'SGD n':>6} {'diverged':>9}  "
        f"{'final ranks (rank:count)':<26} {below_name:<38} {'or diverged':>11}  upward"
    )
    for e, cell in enumerate(report.cells):
        gd_rank = int(gd["rank"].isel(lam=0, eta=e, traj=0, checkpoint=-1))
        alive = ~sgd["diverged"].isel(lam=0, eta=e).values
        final = sgd["rank"].isel(lam=0, eta=e, checkpoint=-1).values[alive]
        below = cell.rank_sets.get(start - 1)
        p = (
            f"{below.reached.p:.3f} [{below.reached.ci[0]:.3f}, {below.reached.ci[1]:.3f}]"
            if below is not None and cell.n
            else "-"
        )
        # P(jump or diverge): every trajectory counts, the diverged ones as having left
        jumped = below.reached.count if below is not None else 0
        either = (jumped + cell.diverged) / max(cell.n + cell.diverged, 1)
        up = f"{cell.upward.count} / {cell.upward.transitions}"
        print(
            f"{cell.eta:>6g} {gd_rank:>8} {cell.n:>6} {cell.diverged:>9}  "
            f"{_counts(final):<26} {p:<38} {either:>11.3f}  {up}"
        )
    pooled = report.pooled
    print(
        f"\nOne-way check (Wang & Jacot: SGD leaves no B_r = {{rank <= r}}): {pooled.count} "
        f"upward moves in {pooled.transitions} checkpoint-to-checkpoint transitions of "
        f"non-diverged trajectories, {pooled.after_entry_count} in the "
        f"{pooled.after_entry_transitions} made after entering a lower rank set; 95% upper "
        f"bound {pooled.upper_bound:.2g} per transition ({pooled.after_entry_upper_bound:.2g} "
        "after entry)."
    )
    for cell_index, cell in enumerate(report.cells):
        for ev in cell.events:
            _explain_upward(sgd.isel(lam=0, eta=cell_index, traj=ev.traj), ev)
    n_div = int(sgd["diverged"].sum())
    if n_div:
        print(f"{n_div} diverged trajectories are flagged in the file and excluded above.")
    path = save_result(sgd, out / "result.nc")
    save_result(gd, out / "gd.nc")
    from rankjump.plots import save_all  # matplotlib: imported when a figure is drawn

    figures = save_all(sgd, out, gd=gd, formats=("png",))
    print(f"wrote {path}, {out / 'gd.nc'} and {len(figures)} figures:")
    for fig in figures:
        print(f"  {fig}")
    print(f"next: rankjump stats {path}")
    return report.to_dict()


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Registers `demo` on a subparsers object; the parser's default `func` is `run`."""
    p = sub.add_parser("demo", help="the main job on the embedded default: summary + result file")
    p.add_argument("--out", default="rankjump-demo", help="output folder (./rankjump-demo)")
    p.add_argument("--quick", action="store_true", help="a smaller run (under 30 s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_set(p)
    p.set_defaults(func=run)


def _writable_folder(path: Path) -> None:
    """Fail before any compute if the output folder ``path`` cannot be made or written."""
    from rankjump.results.io import ResultError

    if path.exists() and not path.is_dir():
        raise ResultError(f"--out {path}: exists and is not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ResultError(f"--out {path}: {existing} is not writable")


def run(args) -> int:
    from rankjump.results.locks import output_lock

    out = Path(args.out)
    _writable_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out):  # a second demo writing the same folder is refused
        run_demo(
            out,
            quick=args.quick,
            progress=None if not args.quiet else False,
            overrides=args.set or (),
        )
    return 0
