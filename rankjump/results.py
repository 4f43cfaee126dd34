"""The result file: schema, atomic save, validated load (README.md, result file)."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import tempfile
import threading
from pathlib import Path

import jax
import numpy as np
import xarray as xr

from rankjump.config import Config, config_to_toml
from rankjump.ranks import RULE_TEXT

__all__ = [
    "REQUIRED_VARS",
    "SAMPLE_STREAMS",
    "ResultError",
    "atomic_path",
    "build_dataset",
    "check_output_file",
    "deferred_signals",
    "checkpoint_steps",
    "lane_variables",
    "load_result",
    "provenance",
    "save_result",
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
)


class ResultError(ValueError):
    """A result file is missing, unreadable, or not a rankjump result."""


SAMPLE_STREAMS = "threefry-counter-1"  # how step samples are drawn (rankjump.dynamics)


def provenance() -> dict:
    """Versions, platform and device of this process (every result file records them)."""
    import jaxlib

    from rankjump import __version__

    dev = jax.devices()[0]
    return {
        "rankjump_version": __version__,
        "sample_streams": SAMPLE_STREAMS,
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "numpy_version": np.__version__,
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """A temporary name beside ``path`` to write to: renamed onto ``path`` (replacing a file
    there) when the block ends without an error, removed otherwise, so no half-written file is
    ever seen under ``path``. The file gets the permissions the user's umask gives new files."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def deferred_signals():
    """Hold SIGINT and SIGTERM until the block ends, then act on the first one that came (in
    the main thread; elsewhere Python delivers no signals, and the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    handlers = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    for n in handlers:
        signal.signal(n, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for n, handler in handlers.items():
            signal.signal(n, handler)
        if caught:
            signal.raise_signal(caught[0])


def check_output_file(path: str | Path) -> bool:
    """Fail before any compute if a result file cannot be written at ``path``; True when a file
    is there (it will be replaced, and the command says so)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ResultError(f"--out {path}: is a directory, expected a file name")
    if not parent.is_dir():
        raise ResultError(f"--out {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ResultError(f"--out {path}: directory {parent} is not writable")
    if path.exists() and not path.is_file():
        raise ResultError(f"--out {path}: exists and is not a regular file")
    return path.exists()


def save_result(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` as netCDF (h5netcdf, compressed) atomically (:func:`atomic_path`).

    A finished run is not lost to a write error (a full disk, a folder made read-only meanwhile):
    the result is then written to the system's temporary folder and the :class:`ResultError`
    says where.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ResultError(f"--out {path}: directory {parent} does not exist")
    encoding = {name: {"zlib": True, "complevel": 4} for name in ds.data_vars}
    try:
        with atomic_path(parent / path.name) as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        rescue = Path(tempfile.gettempdir()) / f"rankjump-unsaved-{os.getpid()}-{path.name}"
        try:
            with atomic_path(rescue) as tmp:
                ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
        except OSError:
            raise ResultError(f"--out {path}: cannot write ({reason}); nothing saved") from None
        raise ResultError(
            f"--out {path}: cannot write ({reason}); the finished result is at {rescue}"
        ) from None
    return path


def load_result(path: str | Path, lazy: bool = False) -> xr.Dataset:
    """Load a result file, checking it is a rankjump result.

    By default everything is read into memory and the file is closed; with ``lazy`` the
    variables are read on first use (for results larger than memory).
    """
    path = Path(path)
    if not path.is_file():
        raise ResultError(f"{path}: no such result file")
    try:
        if lazy:
            ds = xr.open_dataset(path, engine="h5netcdf")
        else:
            with xr.open_dataset(path, engine="h5netcdf") as ds:
                ds = ds.load()
    except Exception as err:  # h5py / xarray raise many kinds for a corrupt file
        raise ResultError(
            f"{path}: not a readable netCDF result file ({type(err).__name__})"
        ) from None
    if ds.attrs.get("result_kind") == "rare":
        raise ResultError(
            f"{path}: a `rankjump rare` result (splitting estimates), not a simulation; "
            "`rankjump stats` prints it, and xarray opens it"
        )
    missing = [v for v in REQUIRED_VARS if v not in ds]
    if ds.attrs.get("producer") != "rankjump" or missing:
        raise ResultError(f"{path}: not a rankjump result file (missing {missing or 'producer'})")
    ds["diverged"] = ds["diverged"].astype(bool)
    for name in PER_LAM_ATTRS:
        if name in ds.attrs:
            ds.attrs[name] = np.atleast_1d(ds.attrs[name]).tolist()
    return ds
