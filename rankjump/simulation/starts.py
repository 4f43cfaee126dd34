"""Starting states of a run: shared ones (a GD minimum per lam, or a weights file), per-trajectory
GD minima (:class:`MinimaCache`), and weights files. Drawn inits (gaussian, balanced) are made
inside the kernel, per trajectory."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rankjump.config import Config, ConfigError
from rankjump.model.network import entry_sharpness
from rankjump.model.ranks import REL_FLOOR, ranks_of
from rankjump.model.tasks import Task
from rankjump.runtime.precision import with_float64
from rankjump.simulation.minima import GDMinimum, gd_minimum
from rankjump.simulation.plan import Plan, plan_run

__all__ = [
    "MinimaCache",
    "Starts",
    "eta_edge",
    "load_weights",
    "save_weights",
    "shared_starts",
    "start_lams",
]


class Starts(NamedTuple):
    """Starting weights shared by the trajectories of each lam (leading lam axis), with attrs."""

    weights: tuple | None
    attrs: dict


def start_lams(cfg: Config) -> np.ndarray:
    """The lam each cell starts with (phase 0 of the schedule): GD minima are taken there."""
    return np.asarray(cfg.optimizer.lam) * cfg.optimizer.factors("lam")[0]


_MINIMA: dict = {}  # shared GD minima by (task, network, start lams), oldest first


def _shared_minimum(plan: Plan) -> GDMinimum:
    """GD minima are deterministic in (task, network, lam): each is computed once per process
    (the last eight kept)."""
    cfg = plan.cfg
    lams = tuple(float(x) for x in start_lams(cfg))
    key = (cfg.task, cfg.network, lams)
    if key not in _MINIMA:
        _MINIMA[key] = gd_minimum(plan.task, cfg.task.d_out, cfg.task.d_in, cfg.network, lams)
        while len(_MINIMA) > 8:
            _MINIMA.pop(next(iter(_MINIMA)))
    return _MINIMA[key]


def _start_rank(weights, thr, rule: str) -> int:
    """The rank of one network (float64, NumPy SVDs) under the rank rule, as a record counts."""
    weights = [np.asarray(w, np.float64) for w in weights]
    end = np.linalg.multi_dot(weights[::-1]) if len(weights) > 1 else weights[0]
    svs = [np.linalg.svd(m, compute_uv=False) for m in weights]
    end_sv = np.linalg.svd(end, compute_uv=False)
    return int(ranks_of(svs, end_sv, thr.layer, thr.end, REL_FLOOR["float64"], rule)[0])


@with_float64
def eta_edge(weights, task: Task) -> float:
    """1 / max_e h_e over the observed entries e of one network, in float64.

    h_e = ||dA[i, j] / dtheta||^2 (:func:`rankjump.model.network.entry_sharpness`). Above this
    learning rate a single-entry SGD step on the stiffest entry amplifies its residual, r_e -> (1 -
    2 eta h_e) r_e with |1 - 2 eta h_e| > 1, instead of shrinking it (docs/theory.md, section 6).
    """
    weights = tuple(jnp.asarray(np.asarray(w, np.float64)) for w in weights)
    h = jax.vmap(lambda i, j: entry_sharpness(weights, i, j)[1])(task.rows, task.cols)
    return float(1.0 / h.max())


@with_float64
def shared_starts(plan: Plan) -> Starts:
    """The starts shared by all trajectories of a lam of ``plan``: a GD minimum or a weights file.

    Per-trajectory GD minima and drawn inits give ``Starts(None, {})``: they are made per chunk.
    (A :class:`Config` in place of the plan is planned first, with a DeprecationWarning.)
    """
    if isinstance(plan, Config):
        warnings.warn(
            "shared_starts(cfg) is deprecated; pass the plan: shared_starts(plan_run(cfg))",
            DeprecationWarning,
            stacklevel=3,  # through with_float64
        )
        plan = plan_run(plan)
    cfg = plan.cfg
    net, n_lam = cfg.network, len(cfg.optimizer.lam)
    if net.init == "gd_minimum" and net.gd_start == "shared":
        m = _shared_minimum(plan)
        weights = m.weights
        attrs = {
            "gd_grad_norm": m.grad_norm.tolist(),
            "gd_steps": m.steps.tolist(),
            "gd_loss": m.loss.tolist(),
        }
    elif net.init == "file":
        w = load_weights(net.init_file, plan.structure.shapes)
        weights, attrs = tuple(np.broadcast_to(x, (n_lam, *x.shape)) for x in w), {}
    else:
        return Starts(weights=None, attrs={})
    thr = plan.thresholds
    attrs["start_rank"] = [
        _start_rank([w[k] for w in weights], thr[k], cfg.rank.rule) for k in range(n_lam)
    ]
    return Starts(weights=weights, attrs=attrs)


_SHARED: dict = {}  # MinimaCache.shared's caches, oldest first


class MinimaCache:
    """Per-trajectory GD minima of one configuration (``gd_start = "per_trajectory"``), each
    computed once and kept: the same (lam, trajectory) start serves every eta cell.

    Minima are computed in programs of ``block`` lanes, the run's chunk, so a sweep job and
    :func:`rankjump.simulation.runs.simulate` compute each one with the same program (padding
    repeats the last pair), bit for bit.
    """

    def __init__(self, cfg: Config, task: Task, block: int):
        self.cfg, self.task, self.block = cfg, task, block
        self.lams = start_lams(cfg)
        self._kept: dict = {}

    @classmethod
    def shared(cls, cfg: Config, task: Task, block: int) -> MinimaCache:
        """The process's cache for this task, network, start lams and block: the jobs of a
        sweep run in one process (and repeated simulations) find each minimum once. The last
        eight such caches are kept."""
        key = (cfg.task, cfg.network, tuple(start_lams(cfg).tolist()), block)
        if key not in _SHARED:
            _SHARED[key] = cls(cfg, task, block)
            while len(_SHARED) > 8:
                _SHARED.pop(next(iter(_SHARED)))
        return _SHARED[key]

    @staticmethod
    def clear_shared() -> None:
        """Forget every shared cache (the next run computes its minima again)."""
        _SHARED.clear()

    def minima(self, pairs) -> list:
        """For each (lam index, trajectory) pair: ``(weights, (grad_norm, steps, loss))``."""
        cfg = self.cfg
        todo = [pair for pair in dict.fromkeys(pairs) if pair not in self._kept]
        for b in range(0, len(todo), self.block):
            part = todo[b : b + self.block]
            padded = part + [part[-1]] * (self.block - len(part))
            li, tr = (np.array(x) for x in zip(*padded, strict=True))
            m = gd_minimum(self.task, cfg.task.d_out, cfg.task.d_in, cfg.network, self.lams[li], tr)
            for n, pair in enumerate(part):
                self._kept[pair] = (
                    tuple(w[n] for w in m.weights),
                    (float(m.grad_norm[n]), int(m.steps[n]), float(m.loss[n])),
                )
        return [self._kept[pair] for pair in pairs]


def save_weights(path: str | Path, weights) -> None:
    """Save weights W1..WL to an ``.npz`` file."""
    np.savez(path, **{f"W{l + 1}": np.asarray(w) for l, w in enumerate(weights)})


def load_weights(path: str | Path, shapes) -> tuple[np.ndarray, ...]:
    """Load W1..WL from an ``.npz`` file, checking them against the network's layer shapes.

    Anything else (a missing, empty, truncated or non-``.npz`` file, other arrays, non-numeric
    or non-finite values, wrong shapes) raises a :class:`ConfigError` naming the file and what is
    wrong.
    """
    where = f"network.init_file = {str(path)!r}"
    arrays = None
    try:
        with open(path, "rb") as fh:  # closed here whatever np.load does on a bad file
            data = np.load(fh, allow_pickle=False)
            if isinstance(data, np.lib.npyio.NpzFile):
                with data:
                    arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise ConfigError(f"{where}: cannot read weights (no such file)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(f"{where}: cannot read weights ({reason})") from None
    if arrays is None:
        raise ConfigError(f"{where}: not an .npz archive of W1..WL (save_weights writes one)")
    want = [f"W{l + 1}" for l in range(len(shapes))]
    if sorted(arrays) != sorted(want):
        raise ConfigError(f"{where}: holds {sorted(arrays)}, expected {want}")
    for name, shape in zip(want, shapes, strict=True):
        a = arrays[name]
        if not isinstance(a, np.ndarray):
            raise ConfigError(f"{where}: {name} is not a NumPy array")
        if a.dtype.kind not in "iuf":
            raise ConfigError(f"{where}: {name} holds {a.dtype} values, expected numbers")
        if a.shape != tuple(shape):
            raise ConfigError(f"{where}: {name} has shape {a.shape}, expected {tuple(shape)}")
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"{where}: {name} has non-finite values")
    return tuple(arrays[name].astype(np.float64) for name in want)
