"""Rare results run in parts joined into one: :func:`merge_lams` for parts of the lam grid (one
process per lam, say), :func:`merge_etas` for parts of the eta grid."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence

import numpy as np
import xarray as xr

from rankjump.config import complete_config, config_from_dict, config_to_toml
from rankjump.rare_events.dataset import RESULT_KIND

__all__ = ["merge_etas", "merge_lams"]


def merge_lams(parts: Sequence[xr.Dataset]) -> xr.Dataset:
    """Rare results of one configuration run over parts of its lam grid (say, one process per lam:
    ``rankjump rare CONFIG --set 'optimizer.lam=[...]' --out FILE``) as one result over all their
    lam values, sorted as a configuration's grid is (whatever the order of the parts). Each cell
    keeps the numbers of its own part (a cell's key follows its place in its part's grid,
    :func:`rare`); the wall time is the parts' sum, and the reactive paths are padded to the
    longest part's count (``reactive_run`` -1, the rest NaN).

    Raises:
        ValueError: naming the first part that is not a rare result, whose configuration differs
            from the first part's beyond ``optimizer.lam``, or that repeats a lam value.
    """
    return _merge(parts, "lam")


def merge_etas(parts: Sequence[xr.Dataset]) -> xr.Dataset:
    """As :func:`merge_lams`, over parts of the eta grid (``--set 'optimizer.eta=[...]'``): the
    parts share their lam grid, so their start and target ranks are the first part's."""
    return _merge(parts, "eta")


def _merge(parts: Sequence[xr.Dataset], dim: str) -> xr.Dataset:
    if not parts:
        raise ValueError(f"merge_{dim}s: no results to merge")

    def but_dim(ds):
        cfg = complete_config(ds.attrs["config"])  # fields added since a part was made: defaults
        return {**cfg, "optimizer": {**cfg["optimizer"], dim: None}}

    for k, ds in enumerate(parts):
        if ds.attrs.get("result_kind") != RESULT_KIND:
            raise ValueError(f"part {k}: not a `rankjump rare` result")
        if but_dim(ds) != but_dim(parts[0]):
            raise ValueError(f"part {k}: its configuration differs from part 0's beyond {dim}")
    values = [float(v) for ds in parts for v in ds[dim].values]
    if len(set(values)) < len(values):
        raise ValueError(f"parts repeat {dim} values: {values}")
    order = np.argsort(values, kind="stable")
    n_reactive = max(ds.sizes.get("reactive", 0) for ds in parts)
    n_runs = max(ds.sizes["run"] for ds in parts)
    padded = [_pad(_pad(ds, "reactive", n_reactive, -1), "run", n_runs, 0) for ds in parts]
    out = xr.concat(padded, dim=dim, data_vars="minimal", combine_attrs="override")
    out = out.isel({dim: order})
    whole = tomllib.loads(parts[0].attrs["config"])
    whole["optimizer"][dim] = [values[k] for k in order]
    out.attrs["config"] = config_to_toml(config_from_dict(whole))
    out.attrs["wall_time_s"] = float(sum(ds.attrs["wall_time_s"] for ds in parts))
    if dim == "lam":  # ranks are per lam; parts of the eta grid keep part 0's (the attrs' own)
        for name in ("start_rank", "target_rank"):
            ranks = [r for ds in parts for r in _per_lam(ds, name)]
            out.attrs[name] = [ranks[k] for k in order]
    return out


def _per_lam(ds: xr.Dataset, name: str) -> list[int]:
    """A part's attribute ``name`` with a value for each of its lam (one value: all share it)."""
    values = [int(r) for r in np.atleast_1d(ds.attrs[name])]
    return values * ds.sizes["lam"] if len(values) == 1 else values


def _pad(ds: xr.Dataset, dim: str, n: int, integer_fill: int) -> xr.Dataset:
    """``ds`` with its ``dim`` (reactive paths, or runs of ``rare.runs = "auto"``) padded to
    ``n``, as :func:`rankjump.rare_events.grid.rare` pads a grid's cells: integers with
    ``integer_fill``, numbers with NaN, flags with False (a padded run was not made)."""
    have = ds.sizes.get(dim, 0)
    if have == n:
        return ds
    names = [name for name, var in ds.data_vars.items() if dim in var.dims]
    out = ds.drop_vars(names)
    if dim in ds.coords:
        out = out.drop_vars(dim).assign_coords({dim: np.arange(n)})
    for name in names:
        var = ds[name]
        axis = var.dims.index(dim)
        shape = (*var.shape[:axis], n - have, *var.shape[axis + 1 :])
        kind = var.dtype.kind
        value = False if kind == "b" else integer_fill if kind in "iu" else np.nan
        fill = np.full(shape, value, var.dtype)
        out[name] = (var.dims, np.concatenate([var.values, fill], axis=axis), var.attrs)
    return out
