"""Jump statistics of a result Dataset: transitions, rank sets reached, first passage, upward check.

Every (lam, eta) cell is analysed on its own, from the recorded `rank` (the file's rank rule,
default "all_layers") or under another rank rule recomputed from `layer_rank` and `end_rank`
(`on = "all_layers" | "any_layer" | "end_to_end"`; "layer_rank" is "all_layers"). The rules,
shared by all statistics:

- Divergence. Trajectories flagged `diverged` are excluded from every statistic and counted.
- Censoring. A checkpoint is observed when its rank is a number >= 0 (not the -1 the simulator
  writes after divergence, not the NaN a merge of uneven runs leaves) and, if a mask is given, the
  mask is True there. A trajectory's record is its run of observed checkpoints from checkpoint 0 up
  to the first unobserved one; anything after such a gap is ignored. A non-diverged trajectory whose
  record stops early (uneven horizon of a merged or resumed run) is censored at its last observed
  checkpoint; one not observed at checkpoint 0 is counted as `unobserved` and otherwise ignored.
- Binomial quantities at a checkpoint (the final-rank distribution, B_r reached, the reached curve)
  use the trajectories observed through that checkpoint. First passage into B_r = {rank <= r} is
  the step of the first checkpoint in B_r (step 0 if the start is in it), resolved to the record
  stride; its survival curve is Kaplan-Meier, a trajectory at risk at every checkpoint it is
  observed at and has not entered before, and the median is the first step where survival <= 1/2.
- Transitions are pairs of consecutive observed checkpoints; upward ones raise the rank. Pairs
  "after entry" start at or after the first checkpoint where the trajectory's rank is below its
  own starting rank or, when `after` is given, at a checkpoint whose step is >= `after`.
- Ranks r for the rank sets run below the cell's start rank: the most common rank at checkpoint 0
  (the smallest on a tie), or the one asked for. The rank-set statistics (B_r reached, the reached
  curve, first passage) condition on it: they use only the trajectories that start at that rank
  (starts vary with per-trajectory GD minima). Transitions, final ranks and the upward check use
  every analysed trajectory.

The report types are in `rankjump.stats.reports`; one cell's statistics are computed by
`rankjump.stats.cells`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from rankjump.config import loads_config
from rankjump.model.network import layer_shapes
from rankjump.model.ranks import network_rank
from rankjump.stats.cells import analyze_cell
from rankjump.stats.intervals import binomial_ci
from rankjump.stats.reports import (
    Report,
    UpwardCheck,
)

__all__ = [
    "ON_CHOICES",
    "analyze",
]

ON_CHOICES = ("rank", "all_layers", "any_layer", "end_to_end", "layer_rank")
_DIMS = ("lam", "eta", "traj", "checkpoint")


def _rank_values(ds: xr.Dataset, on: str) -> np.ndarray:
    """(lam, eta, traj, checkpoint) ranks as float64, NaN or negative where unrecorded."""
    if on not in ON_CHOICES:
        raise ValueError(f"on must be one of {', '.join(ON_CHOICES)}, got {on!r}")
    var = {"rank": "rank", "end_to_end": "end_rank"}.get(on, "layer_rank")
    missing = [v for v in (var, "diverged", "step") if v not in ds.variables]
    if missing:
        raise ValueError(f"not a rankjump result: missing variable {missing[0]!r}")
    if ds["step"].dims != ("checkpoint",) or set(ds["diverged"].dims) != set(_DIMS[:3]):
        raise ValueError("not a rankjump result: 'step' or 'diverged' has the wrong dimensions")
    dims = _DIMS + (("layer",) if var == "layer_rank" else ())
    if set(ds[var].dims) != set(dims) or ds[var].dtype.kind not in "iuf":
        raise ValueError(f"not a rankjump result: {var!r} must be numeric over {', '.join(dims)}")
    values = ds[var].transpose(*dims).values.astype(np.float64)
    if var == "layer_rank":
        # The rule over layers, recorded only where every layer is (NaN >= 0 is False).
        rule = "any_layer" if on == "any_layer" else "all_layers"
        values = np.where(np.all(values >= 0, axis=-1), network_rank(values, None, rule), -1.0)
    return values


def _check_start_rank(ds: xr.Dataset, start_rank: int) -> None:
    """A start rank must be a rank the network can have: 1 .. its largest layer's rank."""
    try:
        cfg = loads_config(ds.attrs["config"])
        top = max(
            min(shape)
            for shape in layer_shapes(
                cfg.task.d_out, cfg.task.d_in, cfg.network.width, cfg.network.depth
            )
        )
    except (KeyError, TypeError, ValueError):  # a file without a readable configuration
        top = None
    if start_rank < 1 or (top is not None and start_rank > top):
        span = f"between 1 and {top}" if top is not None else ">= 1"
        raise ValueError(f"--start-rank {start_rank}: must be {span} (the network's ranks)")


def analyze(
    ds: xr.Dataset,
    on: str = "rank",
    ci: str = "wilson",
    level: float = 0.95,
    after: int | None = None,
    observed: xr.DataArray | np.ndarray | None = None,
    start_rank: int | None = None,
) -> Report:
    """Analyses every (lam, eta) cell of a result Dataset (rules in the module docstring).

    Args:
        ds: Result Dataset with `rank` (or `layer_rank`), `diverged` and the `step` coordinate.
        on: "rank" (as recorded, under the file's rank rule), or a rank rule recomputed from
            the per-layer and end-to-end ranks: "all_layers" (largest per-layer rank; also
            "layer_rank"), "any_layer" (smallest), "end_to_end" (rank of A_theta).
        ci: Interval method for proportions: "wilson", "exact" or "jeffreys".
        level: Confidence level of the intervals and of the one-sided upward bounds.
        after: If given, "after entry" upward counts use the pairs starting at step >= after
            instead of those after each trajectory first drops below its starting rank.
        observed: Optional boolean mask over (lam, eta, traj, checkpoint) (a DataArray is
            broadcast by name), False where a checkpoint was not recorded; for example
            `ds.loss.notnull()`.
        start_rank: Condition the rank-set statistics on this start rank in every cell (default:
            each cell's most common start rank).

    Returns:
        The Report, cells in (lam, eta) order.

    Raises:
        ValueError: For a Dataset without the result schema or an invalid option.
    """
    binomial_ci(0, 1, ci, level)  # validates ci and level before any work
    if start_rank is not None:
        _check_start_rank(ds, start_rank)
    values = _rank_values(ds, on)
    recorded = values >= 0
    if observed is not None:
        if isinstance(observed, xr.DataArray):
            observed = xr.broadcast(observed, ds["diverged"], ds["step"])[0]
            observed = observed.transpose(*_DIMS).values
        if np.asarray(observed).dtype != bool:
            raise ValueError("observed must be a boolean mask")
        recorded &= np.broadcast_to(observed, recorded.shape)
    ranks = np.where(recorded, values, -1).astype(np.int64)
    diverged = ds["diverged"].fillna(False).astype(bool).transpose(*_DIMS[:3]).values
    steps = ds["step"].values.astype(np.int64)
    traj = ds["traj"].values
    cells = tuple(
        analyze_cell(
            ranks[i, j],
            recorded[i, j],
            diverged[i, j],
            steps,
            traj,
            float(lam),
            float(eta),
            ci,
            level,
            after,
            start_rank,
        )
        for i, lam in enumerate(ds["lam"].values)
        for j, eta in enumerate(ds["eta"].values)
    )
    fields = ("count", "transitions", "after_entry_count", "after_entry_transitions")
    totals = [sum(getattr(c.upward, f) for c in cells) for f in fields]
    rule = ds.attrs.get("rank_rule") if on == "rank" else {"layer_rank": "all_layers"}.get(on, on)
    return Report(on, ci, level, after, cells, UpwardCheck.of(*totals, level), rule)
