"""The finished cells of a ``rare`` run, kept on disk so that a run stopped by a signal or a
late error continues where it stopped (``rankjump rare --resume``).

:func:`rankjump.rare_events.grid.rare` with ``partial=PATH`` writes every cell it finishes to
``PATH`` (a NumPy ``.npz`` archive, read without pickle, rewritten atomically after each cell)
and reuses the cells it finds there from a run of the same configuration. A cell's numbers
depend only on the configuration and its place in the grid (its key), so a resumed run gives the
result an uninterrupted one gives.

A flux cell (``rare.method = "flux"``), which can take hours, is also kept batch by batch while
it runs (``rare.runs = "auto"`` adds its runs in batches, each with the keys it would have in one
call): a resumed run reuses the batches the stopped one finished and continues with the next, to
the same result.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rankjump.config import complete_config
from rankjump.rare_events.flux_result import FluxResult
from rankjump.rare_events.types import AMSResult, Reactive
from rankjump.results.atomic import atomic_path
from rankjump.results.io import ResultError
from rankjump.stats.intervals import Summary

__all__ = [
    "FinishedCell",
    "count_cells",
    "load_cells",
    "load_record",
    "partial_path",
    "save_cells",
]

FORMAT = 1
_REACTIVE = ("run", "replica", "weight", "scores")  # the paths' states are not kept
_BATCH = tuple(f for f in FluxResult._fields if f != "network")  # a flux batch's arrays

# A flux cell's finished batches, by batch number: their arrays (FluxResult without its network).
Batches = dict[int, dict[str, np.ndarray]]


class FinishedCell(NamedTuple):
    """What :func:`rankjump.rare_events.grid.rare` keeps of a finished cell."""

    result: AMSResult
    start_rank: int
    target_rank: int
    eta_edge: float
    extra: dict  # name -> (value, long name[, dims]), the method's own numbers
    stop: str  # why its runs stopped (rankjump.rare_events.batches.STOPS)
    seconds: float


def partial_path(out: str | Path) -> Path:
    """Where ``rankjump rare --out OUT`` keeps its finished cells: ``OUT.partial.npz``."""
    out = Path(out)
    return out.with_name(out.name + ".partial.npz")


def _arrays(index: tuple[int, int], cell: FinishedCell) -> dict[str, np.ndarray]:
    p = f"c{index[0]}_{index[1]}_"
    r = cell.result
    out = {
        f"{p}field_{name}": np.asarray(getattr(r, name))
        for name in r._fields
        if name not in ("summary", "reactive")
    }
    out.update({f"{p}summary_{n}": np.asarray(v, float) for n, v in r.summary._asdict().items()})
    out.update({f"{p}reactive_{n}": np.asarray(getattr(r.reactive, n)) for n in _REACTIVE})
    out.update({f"{p}extra_{n}": np.asarray(v[0], float) for n, v in cell.extra.items()})
    out[f"{p}numbers"] = np.asarray(
        [cell.start_rank, cell.target_rank, cell.eta_edge, cell.seconds], float
    )
    words = {"stop": cell.stop, "extra": {n: list(v[1:]) for n, v in cell.extra.items()}}
    out[f"{p}words"] = np.asarray(json.dumps(words))
    return out


def save_cells(
    path: str | Path,
    config: str,
    cells: dict[tuple[int, int], FinishedCell],
    batches: dict[tuple[int, int], dict[int, FluxResult]] | None = None,
) -> None:
    """Write the finished ``cells`` (by (lam index, eta index)) of a run of ``config`` (its
    TOML) to ``path``, atomically, with the finished ``batches`` (by batch number) of flux cells
    still running."""
    arrays = {"format": np.asarray(FORMAT), "config": np.asarray(config)}
    arrays["cells"] = np.asarray([list(ij) for ij in cells], np.int64).reshape(-1, 2)
    for ij, cell in cells.items():
        arrays.update(_arrays(ij, cell))
    kept = [(ij, b, part) for ij, parts in (batches or {}).items() for b, part in parts.items()]
    arrays["batches"] = np.asarray([[*ij, b] for ij, b, _ in kept], np.int64).reshape(-1, 3)
    for (i, j), b, part in kept:
        arrays.update({f"b{i}_{j}_{b}_{n}": np.asarray(getattr(part, n)) for n in _BATCH})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _cell(z, i: int, j: int) -> FinishedCell:
    p = f"c{i}_{j}_"
    words = json.loads(str(z[f"{p}words"]))
    summary = {
        n: (tuple(float(x) for x in a) if (a := z[f"{p}summary_{n}"]).ndim else float(a))
        for n in Summary._fields
    }
    reactive = Reactive(**{n: z[f"{p}reactive_{n}"] for n in _REACTIVE}, states=())
    fields = {n: z[f"{p}field_{n}"] for n in AMSResult._fields if n not in ("summary", "reactive")}
    result = AMSResult(**fields, summary=Summary(**summary), reactive=reactive)
    start, target, edge, seconds = (float(x) for x in z[f"{p}numbers"])
    extra = {n: (z[f"{p}extra_{n}"], *_words(rest)) for n, rest in words["extra"].items()}
    extra = {n: (float(v[0]) if v[0].ndim == 0 else v[0], *v[1:]) for n, v in extra.items()}
    return FinishedCell(result, int(start), int(target), edge, extra, words["stop"], seconds)


def count_cells(path: str | Path, what: str = "cells") -> int:
    """How many finished cells ``path`` keeps (``what = "batches"``: finished batches of flux
    cells that were still running); 0 when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return len(z[what]) if what in z or what == "cells" else 0
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return 0


def load_cells(path: str | Path, config: str) -> dict[tuple[int, int], FinishedCell]:
    """The finished cells kept in ``path`` by a run of ``config``; a :class:`ResultError` when
    the file is not such a record or comes from another configuration."""
    return load_record(path, config)[0]


def load_record(
    path: str | Path, config: str
) -> tuple[dict[tuple[int, int], FinishedCell], dict[tuple[int, int], Batches]]:
    """The finished cells kept in ``path`` by a run of ``config``, and the finished batches of
    the flux cells it was running (a record written before batches were kept has none); a
    :class:`ResultError` when the file is not such a record or comes from another
    configuration."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ResultError(
            f"{path}: not a readable record of finished rare cells (not an .npz archive); "
            "remove it to start afresh"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format"]) != FORMAT:
                raise ResultError(f"{path}: a partial rare run of another format")
            if complete_config(str(z["config"])) != complete_config(config):
                raise ResultError(
                    f"{path}: holds the finished cells of a rare run of another configuration; "
                    "remove it to start afresh, or resume with that configuration"
                )
            cells = {(int(i), int(j)): _cell(z, int(i), int(j)) for i, j in z["cells"]}
            batches: dict[tuple[int, int], Batches] = {}
            for i, j, b in z["batches"] if "batches" in z else ():
                arrays = {n: z[f"b{i}_{j}_{b}_{n}"] for n in _BATCH}
                arrays["paths"] = int(arrays["paths"])
                batches.setdefault((int(i), int(j)), {})[int(b)] = arrays
            return cells, batches
    except ResultError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ResultError(
            f"{path}: not a readable record of finished rare cells ({reason}); remove it to "
            "start afresh"
        ) from None


def _words(rest) -> tuple:
    """An extra's long name and dims as kept: (text,) or (text, dims); a record written before
    dims were kept holds the text alone."""
    if isinstance(rest, str):
        return (rest,)
    return (rest[0], *(tuple(d) for d in rest[1:]))
