"""A rare result's intervals at another confidence level, made again from its runs' estimates.

A splitting result (``rankjump rare``, :mod:`rankjump.rare_events.grid`) keeps every run's
estimate, so its t intervals on p and ln p at any level are those :func:`summarize` gives of the
estimates of the runs it made; at the result's own level they are the intervals it holds. A
result of the rate method keeps no such thing: its interval on p comes from the interval on the
rate of kicks through their delays, which it does not keep.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from rankjump.stats.intervals import summarize

__all__ = ["INTERVAL_VARIABLES", "rare_at_level"]

# The variables of a rare result that hold its intervals, and the field of Summary each is.
INTERVAL_VARIABLES = {
    "p_lo": ("ci", 0),
    "p_hi": ("ci", 1),
    "log_p_lo": ("log_ci", 0),
    "log_p_hi": ("log_ci", 1),
}


def rare_at_level(ds: xr.Dataset, level: float) -> xr.Dataset:
    """``ds``, a rare result by splitting, with its intervals at ``level``.

    Args:
        ds: A rare result over (lam, eta) with ``run_estimate`` over (lam, eta, run) and, where
            its cells made different numbers of runs, ``run_made``.
        level: The confidence level, in (0, 1).

    Returns:
        A copy with ``p_lo``, ``p_hi``, ``log_p_lo``, ``log_p_hi`` the t intervals at ``level`` of
        each cell's made runs (NaN where a run is unfinished, as in the result) and
        ``attrs["level"]`` = ``level``; ``p`` and the rest as they were.

    Raises:
        ValueError: For a level outside (0, 1), or a result of the rate method.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if ds.attrs.get("method", "ams") == "rate":
        raise ValueError(
            "a rate-method result's interval on p comes from the interval on its rate of kicks "
            "through their delays, which the result does not keep; it holds intervals at level "
            f"{ds.attrs.get('level')} only"
        )
    estimates = ds["run_estimate"].transpose("lam", "eta", "run").values.astype(np.float64)
    made = (
        ds["run_made"].transpose("lam", "eta", "run").values.astype(bool)
        if "run_made" in ds
        else np.ones(estimates.shape, bool)
    )
    shape = estimates.shape[:2]
    values = {name: np.empty(shape) for name in INTERVAL_VARIABLES}
    for index in np.ndindex(shape):
        summary = summarize(estimates[index][made[index]], level)
        for name, (field, end) in INTERVAL_VARIABLES.items():
            values[name][index] = getattr(summary, field)[end]
    out = ds.copy()
    old = f"{ds.attrs.get('level', 0.95):.0%}"
    for name, array in values.items():
        attrs = dict(ds[name].attrs)
        if "long_name" in attrs:
            attrs["long_name"] = attrs["long_name"].replace(old, f"{level:.0%}")
        out[name] = (("lam", "eta"), array, attrs)
    out.attrs["level"] = float(level)
    return out
