"""The result file: atomic save, and the one validated load every command reads through.

The schema (variables, attributes, provenance) is :mod:`rankjump.results.schema`, the atomic
writes :mod:`rankjump.results.atomic`.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import xarray as xr

from rankjump.results.atomic import atomic_path
from rankjump.results.schema import (
    PER_LAM_ATTRS,
    RARE_ATTRS,
    RESULT_KINDS,
    RESULT_SCHEMA,
    rare_dims,
)

__all__ = [
    "ResultError",
    "check_output_file",
    "load_result",
    "result_kind",
    "save_result",
]

_KIND_TEXT = {"simulate": "a simulation", "rare": "splitting estimates"}


class ResultError(ValueError):
    """A result file is missing, unreadable, or not a rankjump result."""


def check_output_file(path: str | Path, what: str = "--out") -> bool:
    """Fail before any compute if a result file cannot be written at ``path`` (``what`` names
    it in the message); True when a file is there (it will be replaced, and the command says so).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        str(path.absolute()).encode("utf-8")
    except UnicodeEncodeError:
        raise ResultError(
            f"{what} {str(path)!a}: the path is not valid UTF-8, which "
            "netCDF and HDF5 need for a file name; choose another name or folder"
        ) from None
    if path.is_dir():
        raise ResultError(f"{what} {path}: is a directory, expected a file name")
    if not parent.is_dir():
        raise ResultError(f"{what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ResultError(f"{what} {path}: directory {parent} is not writable")
    if path.exists() and not path.is_file():
        raise ResultError(f"{what} {path}: exists and is not a regular file")
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
    except (OSError, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        name = path.name.encode("utf-8", "replace").decode("utf-8")
        rescue = Path(tempfile.gettempdir()) / f"rankjump-unsaved-{os.getpid()}-{name}"
        try:
            with atomic_path(rescue) as tmp:
                ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
        except (OSError, UnicodeError):
            raise ResultError(f"--out {path}: cannot write ({reason}); nothing saved") from None
        raise ResultError(
            f"--out {path}: cannot write ({reason}); the finished result is at {rescue}"
        ) from None
    return path


def result_kind(ds: xr.Dataset) -> str:
    """The kind of a result Dataset: its ``result_kind`` attribute, "simulate" when it has none."""
    return str(ds.attrs.get("result_kind", "simulate"))


def _check(ds: xr.Dataset, path: Path, kinds: tuple[str, ...]) -> str:
    """The kind of an opened file, or the ResultError that says why no command reads it."""
    kind, missing = result_kind(ds), None
    if ds.attrs.get("producer") == "rankjump":
        schema = ds.attrs.get("result_schema", 1)  # files from before the attribute: schema 1
        if not isinstance(schema, (int, np.integer)):
            raise ResultError(f"{path}: result_schema = {schema!r} is not a schema number")
        if schema > RESULT_SCHEMA:
            raise ResultError(
                f"{path}: a result of schema {schema}, newer than this rankjump reads "
                f"({RESULT_SCHEMA}); update rankjump to read it"
            )
        if kind not in RESULT_KINDS:
            raise ResultError(f"{path}: a result of kind {kind!r}, unknown to this rankjump")
        if kind not in kinds:
            raise ResultError(
                f"{path}: a `rankjump {kind}` result ({_KIND_TEXT[kind]}), not "
                f"{' or '.join(_KIND_TEXT[k] for k in kinds)}; `rankjump stats` prints it, and "
                "xarray opens it"
            )
        missing = [v for v in RESULT_KINDS[kind] if v not in ds]
        if not missing:
            if kind == "rare":
                _check_rare(ds, path)
            return kind
    raise ResultError(f"{path}: not a rankjump result file (missing {missing or 'producer'})")


def _dims_text(dims) -> str:
    return f"({', '.join(dims)})"


def _shown(value) -> str:
    """An attribute's value as the file holds it, NumPy's as Python's (95.0, [3, 3])."""
    return repr(value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value)


def _check_rare(ds: xr.Dataset, path: Path) -> None:
    """The ResultError naming what a rare result lacks or holds in the wrong shape: the lam and
    eta values, a variable over other dimensions than :func:`rare_dims` gives or holding no
    numbers, an attribute of :data:`RARE_ATTRS` missing or unreadable."""
    for name in ("lam", "eta"):
        if name not in ds.coords or ds[name].dims != (name,) or ds[name].dtype.kind not in "iuf":
            raise ResultError(
                f"{path}: a rare result without its {name} values (coordinate {name})"
            )
    for name, var in ds.data_vars.items():
        want = rare_dims(name)
        if sorted(var.dims) != sorted(want):
            raise ResultError(
                f"{path}: variable {name} is over {_dims_text(var.dims)}; a rare result's is over "
                f"{_dims_text(want)}"
            )
        if var.dtype.kind not in "biuf":
            raise ResultError(f"{path}: variable {name} holds {var.dtype} values, not numbers")
    missing = [name for name in RARE_ATTRS if name not in ds.attrs]
    if missing:
        attributes = "attributes" if len(missing) > 1 else "attribute"
        raise ResultError(f"{path}: a rare result without the {attributes} {', '.join(missing)}")
    config = ds.attrs["config"]
    try:
        tomllib.loads(config)
    except (tomllib.TOMLDecodeError, TypeError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ResultError(
            f"{path}: attribute config is not a configuration (TOML: {reason})"
        ) from None
    level = ds.attrs["level"]
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, (int, float, np.number)):
        raise ResultError(f"{path}: attribute level = {_shown(level)} is not a confidence level")
    if not 0.0 < float(level) < 1.0:
        raise ResultError(f"{path}: attribute level = {_shown(level)}: must lie in (0, 1)")
    n_lam = ds.sizes["lam"]
    for name in ("start_rank", "target_rank"):
        values = np.atleast_1d(ds.attrs[name])
        if values.ndim != 1 or values.dtype.kind not in "iu" or len(values) not in (1, n_lam):
            raise ResultError(
                f"{path}: attribute {name} = {_shown(ds.attrs[name])}: expected a rank for each of "
                f"the {n_lam} lam values"
            )
    method = ds.attrs.get("method", "ams")
    if method not in ("ams", "rate", "flux"):
        raise ResultError(
            f"{path}: attribute method = {_shown(method)}: expected 'ams', 'rate' or 'flux'"
        )


def _tidy_rare(ds: xr.Dataset) -> None:
    """A checked rare result as every reader takes it, in place: variables in the order of
    :func:`rare_dims`, a start and target rank per lam (lists), the level a float, and the
    upper ends of the intervals on p at most 1 (ln p: 0), as a probability's are (the t
    interval's own upper end, mean + t stderr, may pass 1 when the runs are few)."""
    for name, var in list(ds.data_vars.items()):
        want = rare_dims(name)
        if var.dims != want:
            ds[name] = var.transpose(*want)
    n_lam = ds.sizes["lam"]
    for name in ("start_rank", "target_rank"):
        values = np.atleast_1d(ds.attrs[name]).astype(int).tolist()
        ds.attrs[name] = values * n_lam if len(values) == 1 else values
    ds.attrs["level"] = float(ds.attrs["level"])
    ds["p_hi"] = ds["p_hi"].clip(max=1.0)
    ds["log_p_hi"] = ds["log_p_hi"].clip(max=0.0)


def load_result(
    path: str | Path, lazy: bool = False, kinds: tuple[str, ...] = ("simulate",)
) -> xr.Dataset:
    """Load a result file, checking it is a rankjump result of one of ``kinds``.

    Every command reads result files here, so a file is refused with the same one-line
    :class:`ResultError` by all: missing, not a regular file, not readable netCDF, not a
    rankjump result (no ``producer``, or a variable of its kind missing), of a newer
    ``result_schema`` than :data:`RESULT_SCHEMA`, or of a kind not in ``kinds``; a rare result
    also when a variable is over other dimensions than its kind's, or an attribute it needs
    (:data:`~rankjump.results.schema.RARE_ATTRS`) is missing or unreadable.

    Args:
        path: The netCDF file.
        lazy: Read variables on first use (for results larger than memory) instead of reading
            everything into memory and closing the file.
        kinds: The kinds accepted (:data:`RESULT_KINDS`; :func:`result_kind` tells them apart).

    Returns:
        The Dataset; a simulate result with ``diverged`` as booleans (missing entries of a
        merge as False) and its per-lam attributes as lists; a rare result with its start and
        target ranks as lists of one per lam and the upper ends of its intervals on p at most 1.
    """
    path = Path(path)
    if not path.exists():
        raise ResultError(f"{path}: no such result file")
    if not path.is_file():
        raise ResultError(f"{path}: not a regular file")
    try:
        if lazy:
            ds = xr.open_dataset(path, engine="h5netcdf")
        else:
            with xr.open_dataset(path, engine="h5netcdf") as ds:
                ds = ds.load()
    except Exception as err:  # h5py / xarray raise many kinds for a corrupt file
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ResultError(f"{path}: not a readable netCDF result file ({reason})") from None
    try:
        kind = _check(ds, path, tuple(kinds))
    except ResultError:
        ds.close()
        raise
    if kind == "simulate":
        diverged = ds["diverged"]
        if diverged.dtype != bool:  # a merge of uneven runs leaves NaN where no trajectory was
            diverged = diverged.fillna(False)
        ds["diverged"] = diverged.astype(bool)
        for name in PER_LAM_ATTRS:
            if name in ds.attrs:
                ds.attrs[name] = np.atleast_1d(ds.attrs[name]).tolist()
    else:
        _tidy_rare(ds)
    return ds
