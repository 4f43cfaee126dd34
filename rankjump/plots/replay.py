"""The figure of a replayed jump: per-layer singular values of the vanishing mode against step,
with the entries SGD sampled at each step (:func:`rankjump.simulation.replays.replay`)."""

from __future__ import annotations

import textwrap

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from rankjump.plots.common import DPI, describe

__all__ = ["collapse_summary", "plot_replay", "sample_excess"]

_BINS = 40  # stretches of the window in which sampling frequencies are counted


def _mode(ds: xr.Dataset) -> int:
    """The mode that vanishes: the start rank r (1-based index of the r-th singular value)."""
    return int(ds.attrs["replay_start_rank"])


def collapse_summary(ds: xr.Dataset) -> dict:
    """What the replay shows of the jump, as numbers.

    Returns:
        ``mode`` (r), ``entry_step`` (first checkpoint of the window below rank r, or None),
        per layer the step at which the r-th singular value last left its window-start level by
        half (``half_steps``), first fell below the layer threshold (``below_steps``) and stayed
        below it to the window's end (``settled_steps``; None if it is above it at the end: a
        layer can dip below and grow back), and ``decay_steps`` = 1 / (2 eta lam), the time
        scale of weight decay.
    """
    cell = ds.isel(lam=0, eta=0, traj=0)
    r = _mode(ds)
    steps = ds["step"].values
    inside = steps >= ds.attrs["replay_from"]
    rank = cell["rank"].values
    below = np.flatnonzero(inside & (rank >= 0) & (rank < r))
    sv = cell["layer_sv"].values[:, :, r - 1]  # (checkpoint, layer)
    thr = ds.attrs["threshold_layer"][0]
    first = np.flatnonzero(inside)[0]
    half, under, settled = [], [], []
    for l in range(sv.shape[1]):
        s = sv[:, l]
        high = np.flatnonzero(inside & (s >= 0.5 * s[first]))
        low = np.flatnonzero(inside & (s <= thr))
        above = np.flatnonzero(inside & (s > thr))
        half.append(int(steps[high[-1]]) if high.size else None)
        under.append(int(steps[low[0]]) if low.size else None)
        last_above = above[-1] if above.size else -1
        stays = low.size and low[-1] > last_above  # below at the window's end
        settled.append(int(steps[low[low > last_above][0]]) if stays else None)
    lam, eta = float(ds["lam"][0]), float(ds["eta"][0])
    return {
        "mode": r,
        "entry_step": int(steps[below[0]]) if below.size else None,
        "half_steps": half,
        "below_steps": under,
        "settled_steps": settled,
        "decay_steps": 1.0 / (2.0 * eta * lam) if lam > 0 else float("inf"),
    }


def sample_excess(ds: xr.Dataset, name: str, bins: int = _BINS) -> tuple[np.ndarray, np.ndarray]:
    """How often each row (``name = "sample_row"``) or column (``"sample_col"``) was sampled in
    each of ``bins`` stretches of the window, over what uniform sampling of the observed
    entries would give on average (1 = as expected, 0 = never sampled).

    Returns:
        ``(edges, ratio)``: the bins' step edges and the (index, bin) ratios.
    """
    task = _observed(ds)
    index = task[0] if name == "sample_row" else task[1]
    size = int(index.max()) + 1
    share = np.bincount(index, minlength=size) / index.size  # of the observed entries
    samples = ds[name].values  # (sample_step, batch)
    steps = np.repeat(ds["sample_step"].values, samples.shape[1])
    edges = np.linspace(steps.min(), steps.max() + 1, bins + 1)
    counts, _, _ = np.histogram2d(samples.ravel(), steps, bins=[np.arange(size + 1), edges])
    expected = share[:, None] * counts.sum(axis=0, keepdims=True)
    return edges, np.divide(counts, expected, out=np.full(counts.shape, np.nan), where=expected > 0)


def _observed(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the observed entries, from the replay's configuration."""
    from rankjump.config import loads_config
    from rankjump.model.tasks import make_task

    task = make_task(loads_config(ds.attrs["config"]).task)
    return np.asarray(task.rows), np.asarray(task.cols)


def plot_replay(ds: xr.Dataset) -> Figure:
    """The replay's window in three panels: the r-th singular value of every layer (r the start
    rank; log scale, with the layer threshold and the slope of pure weight decay), and how often
    each column j and each row i was sampled in stretches of the window, against uniform
    sampling of the observed entries. A dotted line marks where the network entered B_{r-1}."""
    cell = ds.isel(lam=0, eta=0, traj=0)
    r = _mode(ds)
    steps = ds["step"].values
    inside = steps >= ds.attrs["replay_from"]
    summary = collapse_summary(ds)
    lam, eta = float(ds["lam"][0]), float(ds["eta"][0])
    fig = Figure(figsize=(8.5, 8), dpi=DPI, layout="constrained")
    axes = fig.subplots(3, 1, sharex=True, height_ratios=[2.2, 1, 1])
    sv = cell["layer_sv"].values[inside, :, r - 1]
    x = steps[inside]
    for l in range(sv.shape[1]):
        axes[0].plot(x, sv[:, l], lw=1.2, label=f"layer {l + 1}")
    axes[0].axhline(ds.attrs["threshold_layer"][0], color="k", ls="--", lw=0.8, label="threshold")
    halves = [h for h in summary["half_steps"] if h is not None]
    if halves and lam > 0:  # the decay of a mode nothing feeds: (1 - 2 eta lam)^t
        t1 = max(halves)
        s1 = np.nanmax(sv[x == t1]) if np.any(x == t1) else np.nanmax(sv)
        guide = x[x >= t1]
        axes[0].plot(
            guide,
            s1 * (1 - 2 * eta * lam) ** (guide - t1),
            color="0.5",
            ls="-.",
            lw=0.9,
            label="(1 - 2 eta lam)^t",
        )
    axes[0].set_yscale("log")
    axes[0].set_ylabel(f"singular value {r} of W_l")
    for name, ax, what in (("sample_col", axes[1], "column j"), ("sample_row", axes[2], "row i")):
        ax.set_ylabel(f"sampled {what}\n(/ uniform)")
        if not ds[name].size:
            continue
        edges, ratio = sample_excess(ds, name)
        mesh = ax.pcolormesh(
            edges, np.arange(ratio.shape[0] + 1) - 0.5, ratio, cmap="RdBu", vmin=0, vmax=2
        )
        fig.colorbar(mesh, ax=ax, pad=0.01, aspect=12)
    entry = summary["entry_step"]
    if entry is not None:
        for ax in axes:
            ax.axvline(entry, color="C3", ls=":", lw=1.2)
        axes[0].plot([], [], color="C3", ls=":", label=f"rank < {r} (B_{r - 1})")
    axes[0].legend(loc="lower left", fontsize=8, ncol=2)
    axes[-1].set_xlabel("SGD step")
    fig.suptitle(
        f"Replay of trajectory {ds.attrs['replay_traj']} (lam = {lam:g}, eta = {eta:g}): mode "
        f"{r} collapsing; 1/(2 eta lam) = {summary['decay_steps']:.0f} steps",
        fontsize=10,
    )
    caption = (
        f"{describe(ds)}; checkpoints every {ds.attrs['replay_every']} steps from step "
        f"{ds.attrs['replay_from']} to {ds.attrs['replay_to']}; sampling in {_BINS} stretches"
    )
    fig.supxlabel(textwrap.fill(caption, 140), fontsize=7)
    return fig
