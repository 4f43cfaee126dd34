"""What a result file holds: its variables, attributes and provenance (README.md, result file).

:func:`build_dataset` assembles a simulation's records into the result Dataset;
:data:`RESULT_KINDS` names the variables of each kind of result (a simulation's, a rare run's) and
:data:`RESULT_SCHEMA` the schema every file records, which :func:`rankjump.results.io.load_result`
checks.
"""

from __future__ import annotations

import importlib.metadata
import platform

import jax
import numpy as np
import xarray as xr

from rankjump.config import Config, config_to_toml
from rankjump.model.ranks import RULE_TEXT

__all__ = [
    "PER_LAM_ATTRS",
    "RARE_ATTRS",
    "REQUIRED_VARS",
    "RESULT_KINDS",
    "RESULT_SCHEMA",
    "SAMPLE_STREAMS",
    "build_dataset",
    "checkpoint_steps",
    "lane_variables",
    "provenance",
    "rankjump_version",
    "rare_dims",
]

REQUIRED_VARS = (
    "rank",
    "layer_rank",
    "end_rank",
    "sv",
    "loss",
    "param_norm2",
    "imbalance",
    "diverged",
)
# Attributes holding one value per lam: netCDF stores a one-element list as a scalar.
PER_LAM_ATTRS = (
    "threshold_layer",
    "threshold_end",
    "gd_grad_norm",
    "gd_steps",
    "gd_loss",
    "start_rank",
    "eta_edge",
)


# The variables each kind of result holds (the kind is attrs["result_kind"], none: simulate).
RESULT_KINDS = {
    "simulate": REQUIRED_VARS,
    "rare": (
        "p",
        "p_lo",
        "p_hi",
        "log_p_lo",
        "log_p_hi",
        "run_estimate",
        "run_finished",
        "run_extinct",
        "run_cost",
    ),
}
# The attributes a rare result must hold: its configuration (TOML), the level of its intervals,
# and the start and target rank of each lam (one value per lam, or one for all).
RARE_ATTRS = ("config", "level", "start_rank", "target_rank")
_RARE_CELL = ("lam", "eta")


def rare_dims(name: str) -> tuple[str, ...]:
    """The dimensions of a rare result's variable ``name``: per run (``run_*``: lam, eta, run),
    per reactive path (``reactive_*``: lam, eta, reactive; the scores also over checkpoint), per
    checkpoint (``p_curve``), per lam (``eta_edge``), else per cell (lam, eta)."""
    if name == "eta_edge":
        return ("lam",)
    if name in ("p_curve", "p_curve_stderr"):  # the flux method's P(enter by step)
        return (*_RARE_CELL, "checkpoint")
    if name == "reactive_score":
        return (*_RARE_CELL, "reactive", "checkpoint")
    if name.startswith("reactive_"):
        return (*_RARE_CELL, "reactive")
    if name.startswith("run_"):
        return (*_RARE_CELL, "run")
    return _RARE_CELL


# Raised when a change to the file would mislead an older reader, which then refuses the file.
RESULT_SCHEMA = 1


SAMPLE_STREAMS = "threefry-counter-1"  # how step samples are drawn (rankjump.dynamics)


def rankjump_version() -> str:
    """The installed package's version ("unknown" when rankjump runs without being installed)."""
    try:
        return importlib.metadata.version("rankjump")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def provenance() -> dict:
    """Versions, result schema, platform and device of this process (every result file records
    them)."""
    import jaxlib

    return {
        "rankjump_version": rankjump_version(),
        "result_schema": RESULT_SCHEMA,
        "sample_streams": SAMPLE_STREAMS,
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "numpy_version": np.__version__,
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
    }


def lane_variables(records, steps: np.ndarray) -> dict:
    """Per-lane data variables of the schema: ``name: (dims after traj, values with a leading
    lane axis)``; ``steps`` is the SGD step of each checkpoint."""
    ck = ("checkpoint",)
    alive = np.asarray(records.alive)
    diverged = ~alive[..., -1]
    first_dead = np.argmax(~alive, axis=-1)
    return {
        "rank": (ck, records.rank),
        "layer_rank": (ck + ("layer",), records.layer_rank),
        "end_rank": (ck, records.end_rank),
        "sv": (ck + ("k",), records.sv),
        "loss": (ck, records.loss),
        "data_loss": (ck, records.data_loss),
        "param_norm2": (ck, records.param_norm2),
        "imbalance": (ck, records.imbalance),
        "diverged": ((), diverged),
        "diverged_step": ((), np.where(diverged, steps[first_dead], -1)),
    } | (  # per-layer singular values: only when asked for (replays)
        {"layer_sv": (ck + ("layer", "layer_k"), records.layer_sv)}
        if np.shape(records.layer_sv)[-1]
        else {}
    )


def checkpoint_steps(cfg: Config) -> np.ndarray:
    """The SGD step of each checkpoint (0, record_every, ..., steps)."""
    return np.arange(cfg.run.n_checkpoints, dtype=np.int64) * cfg.run.record_every


def build_dataset(
    cfg: Config,
    records,
    attrs: dict,
    wall_time: float,
    extra_vars: dict | None = None,
    steps: np.ndarray | None = None,
    traj: np.ndarray | None = None,
) -> xr.Dataset:
    """Assemble per-lane records (lane, checkpoint, ...) into the labeled result Dataset.

    Lanes are ordered lam-major, then eta, then trajectory. ``extra_vars`` are more data
    variables as ``name: (dims, values)`` (e.g. per-trajectory GD minima over (lam, traj)).
    ``steps`` (the step of each checkpoint) and ``traj`` (the trajectory indices) default to
    the configuration's regular checkpoints and trajectories 0 .. n - 1 (a replay has others).
    """
    n_lam, n_eta = len(cfg.optimizer.lam), len(cfg.optimizer.eta)
    traj = np.arange(cfg.run.trajectories) if traj is None else np.asarray(traj)
    n_traj = traj.size
    steps = checkpoint_steps(cfg) if steps is None else np.asarray(steps, np.int64)
    cell = ("lam", "eta", "traj")
    data = {
        name: (cell + dims, np.asarray(x).reshape(n_lam, n_eta, n_traj, *np.shape(x)[1:]))
        for name, (dims, x) in lane_variables(records, steps).items()
    }
    data.update(extra_vars or {})
    ds = xr.Dataset(
        data,
        coords={
            "lam": np.asarray(cfg.optimizer.lam),
            "eta": np.asarray(cfg.optimizer.eta),
            "traj": traj,
            "step": ("checkpoint", steps),
            "layer": np.arange(1, cfg.network.depth + 1),
            "k": np.arange(1, cfg.k_max + 1),
        },
    )
    ds.attrs.update(
        {
            "config": config_to_toml(cfg),
            "wall_time_s": float(wall_time),
            "producer": "rankjump",
            **provenance(),
            **attrs,
        }
    )
    ds["rank"].attrs["long_name"] = f"network rank ({RULE_TEXT[cfg.rank.rule]}); -1 = diverged"
    ds["rank"].attrs["rule"] = cfg.rank.rule
    ds["end_rank"].attrs["long_name"] = "numerical rank of A_theta; -1 = diverged"
    ds["sv"].attrs["long_name"] = "leading singular values of A_theta"
    ds["loss"].attrs["long_name"] = "L_lam = data loss + lam ||theta||^2"
    ds["imbalance"].attrs["long_name"] = "sqrt(sum_l ||W_{l+1}^T W_{l+1} - W_l W_l^T||_F^2)"
    return ds
