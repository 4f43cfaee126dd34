"""Sweep folders whose contents do not match (hostile input, class 6): every job file carries
its identity and a checksum, so a damaged, foreign or misplaced file is recomputed on resume or
refused by ``merge``, naming the file, and never merged.

The sweep has shared GD-minimum starts (so ``starts.npz`` exists): 1 lam x 2 eta x 6
trajectories = 12 lanes in 3 jobs of one 4-lane chunk. The other sweep differs in its two seeds
(paths and starts).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import small_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rankjump import SweepError, load_result, merge, save_result, save_weights, simulate, sweep
from rankjump.sweeps.files import JOBS, MANIFEST, RESULT, STARTS

CFG = small_config(
    network={"init": "gd_minimum"},
    optimizer={"eta": [0.05, 0.1]},
    run={"trajectories": 6, "chunk_size": 4},
)
OTHER = CFG.replace(run={"seed": 1}, network={"seed": 1})
JOB_NAMES = [f"job-{i:05d}.npz" for i in range(3)]


@functools.cache
def _pristine(cfg) -> Path:
    """A finished sweep of ``cfg`` (made once; tests copy it)."""
    out = Path(tempfile.mkdtemp()) / "sweep"
    sweep(cfg, out, progress=False)
    return out


@functools.cache
def simulated(cfg) -> xr.Dataset:
    path = Path(tempfile.mkdtemp()) / "simulate.nc"
    return load_result(save_result(simulate(cfg, progress=False), path))


def _copy(tmp: Path, cfg=CFG) -> Path:
    out = tmp / "sweep"
    shutil.copytree(_pristine(cfg), out)
    return out


def _assert_equals_simulate(ds: xr.Dataset) -> None:
    want = simulated(CFG)
    assert set(ds.data_vars) == set(want.data_vars)
    for name in want.variables:
        np.testing.assert_array_equal(ds[name].values, want[name].values, err_msg=name)
    drop = {"wall_time_s"}
    assert {k: v for k, v in ds.attrs.items() if k not in drop} == {
        k: v for k, v in want.attrs.items() if k not in drop
    }


def _stamps(out: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (out / JOBS).glob("job-*.npz")}


def _resume(out: Path, caplog) -> tuple[xr.Dataset, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rankjump"):
        ds = sweep(CFG, out, resume=True, progress=False)
    return ds, [r.getMessage() for r in caplog.records]


# ------------------------------------------------------------------ damaged job files


def _truncate(path: Path) -> None:
    if path.exists():
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path: Path) -> None:
    if not path.exists():
        return
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, "unreadable"),
        (_flip_a_byte, "(unreadable|corrupt)"),
        (lambda p: shutil.copy(p.parent / JOB_NAMES[0], p), "holds job 0 of this sweep, not job 1"),
        (
            lambda p: shutil.copy(_pristine(OTHER) / JOBS / p.name, p),
            "belongs to a sweep of another configuration",
        ),
    ],
    ids=["truncated", "flipped byte", "another job", "another sweep"],
)
def test_a_job_file_that_is_not_its_job_is_recomputed_and_merge_refuses_it(
    tmp_path, caplog, damage, reason
):
    out = _copy(tmp_path)
    result = (out / RESULT).read_bytes()
    damage(out / JOBS / JOB_NAMES[1])
    with pytest.raises(SweepError, match=f"{JOB_NAMES[1]}: {reason}.*--resume"):
        merge(out)
    assert (out / RESULT).read_bytes() == result  # nothing foreign merged
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    before = _stamps(out)
    ds, notes = _resume(out, caplog)
    _assert_equals_simulate(ds)
    (note,) = notes
    assert f"{JOB_NAMES[1]}: " in note and note.endswith("recomputing it")
    after = _stamps(out)
    assert (
        after[JOB_NAMES[0]] == before[JOB_NAMES[0]] and after[JOB_NAMES[2]] == before[JOB_NAMES[2]]
    )  # the good ones were reused


def test_a_job_file_from_an_older_rankjump_is_recomputed(tmp_path, caplog):
    out = _copy(tmp_path)
    path = out / JOBS / JOB_NAMES[2]
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "identity"}
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    ds, notes = _resume(out, caplog)
    _assert_equals_simulate(ds)
    assert any("has no identity" in n for n in notes)


# ------------------------------------------------------------------ sweep.json, starts.npz


def test_finished_jobs_stay_reusable_when_the_manifest_is_lost(tmp_path, caplog):
    out = _copy(tmp_path)
    (out / MANIFEST).unlink()
    (out / RESULT).unlink()
    with pytest.raises(SweepError, match="already holds a sweep.*pass --resume"):
        sweep(CFG, out, progress=False)
    before = _stamps(out)
    ds, notes = _resume(out, caplog)
    _assert_equals_simulate(ds)
    assert _stamps(out) == before  # no job rerun
    assert any(f"{MANIFEST}: missing; rebuilt" in n and "3 job files of it" in n for n in notes)


def test_an_edited_manifest_is_rebuilt(tmp_path, caplog):
    out = _copy(tmp_path)
    m = json.loads((out / MANIFEST).read_text())
    m["chunks_per_job"] = 2
    (out / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(SweepError, match=f"{MANIFEST}: edited since the sweep wrote it"):
        merge(out)
    ds, notes = _resume(out, caplog)
    _assert_equals_simulate(ds)
    assert any("edited since the sweep wrote it" in n and "rebuilt" in n for n in notes)
    assert json.loads((out / MANIFEST).read_text())["chunks_per_job"] == 1


@pytest.mark.parametrize("how", ["deleted", "from another sweep"])
def test_missing_or_stale_starts_are_recomputed(tmp_path, caplog, how):
    out = _copy(tmp_path)
    if how == "deleted":
        (out / STARTS).unlink()
    else:
        shutil.copy(_pristine(OTHER) / STARTS, out / STARTS)
    with pytest.raises(SweepError, match=f"{STARTS}: missing or not the starts of this sweep"):
        merge(out)
    ds, notes = _resume(out, caplog)
    _assert_equals_simulate(ds)
    assert any(n.startswith(str(out / STARTS)) and "recomputed" in n for n in notes)


def test_starts_that_cannot_be_recomputed_are_refused(tmp_path):
    # Starts from a file that changed after the sweep began: the finished jobs used the old.
    weights = tmp_path / "w.npz"
    rng = np.random.default_rng(0)
    save_weights(weights, [rng.normal(size=s) for s in [(4, 4), (4, 4), (5, 4)]])
    cfg = small_config(network={"init": "file", "init_file": str(weights)})
    out = tmp_path / "sweep"
    sweep(cfg, out, progress=False)
    save_weights(weights, [rng.normal(size=s) for s in [(4, 4), (4, 4), (5, 4)]])
    (out / STARTS).unlink()
    with pytest.raises(SweepError, match=f"{STARTS}: missing or unreadable, and the starts rec"):
        sweep(cfg, out, resume=True, progress=False)


# ------------------------------------------------------------------ fuzz: any damage


def _damages(out: Path, other: Path):
    """Named ways to damage the sweep folder ``out`` (``other``: a sweep of OTHER)."""
    jobs = out / JOBS
    ways = {}
    for i, name in enumerate(JOB_NAMES):
        ways[f"truncate {name}"] = lambda n=name: _truncate(jobs / n)
        ways[f"flip a byte of {name}"] = lambda n=name: _flip_a_byte(jobs / n)
        ways[f"delete {name}"] = lambda n=name: (jobs / n).unlink(missing_ok=True)
        ways[f"copy {name} from the other sweep"] = lambda n=name: shutil.copy(
            other / JOBS / n, jobs / n
        )
        j = JOB_NAMES[(i + 1) % 3]
        ways[f"swap {name} and {j}"] = lambda a=name, b=j: _swap(jobs / a, jobs / b)
    for name in (MANIFEST, STARTS):
        ways[f"delete {name}"] = lambda n=name: (out / n).unlink(missing_ok=True)
        ways[f"truncate {name}"] = lambda n=name: _truncate(out / n)
        ways[f"copy {name} from the other sweep"] = lambda n=name: shutil.copy(other / n, out / n)
    ways["delete result.nc"] = lambda: (out / RESULT).unlink(missing_ok=True)
    return ways


def _swap(a: Path, b: Path) -> None:
    if a.exists() and b.exists():
        tmp = a.with_suffix(".swap")
        os.replace(a, tmp)
        os.replace(b, a)
        os.replace(tmp, b)


DAMAGE_NAMES = sorted(_damages(Path("x"), Path("y")))


FUZZ = {
    "deadline": None,
    "derandomize": True,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
DAMAGE = st.lists(st.sampled_from(DAMAGE_NAMES), min_size=1, max_size=4)


def _damaged_resume(tmp_path: Path, damage: list[str]) -> None:
    """Damage a copy of the finished sweep, resume it: it equals simulate, or refuses naming
    a file of the folder and merges nothing."""
    out = tmp_path / "case"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(_pristine(CFG), out)
    ways = _damages(out, _pristine(OTHER))
    for name in damage:
        ways[name]()
    try:
        ds = sweep(CFG, out, resume=True, progress=False)
    except SweepError as err:
        assert str(out) in str(err), err
        if (out / RESULT).exists() and "delete result.nc" not in damage:
            assert (out / RESULT).read_bytes() == (_pristine(CFG) / RESULT).read_bytes()
        return
    _assert_equals_simulate(ds)
    ds.close()


@settings(max_examples=8, **FUZZ)
@given(DAMAGE)
def test_a_resumed_sweep_after_any_damage_equals_simulate_or_refuses(tmp_path, damage):
    _damaged_resume(tmp_path, damage)


@pytest.mark.slow
@settings(max_examples=300, **FUZZ)
@given(DAMAGE)
def test_a_resumed_sweep_after_any_damage_equals_simulate_or_refuses_many(tmp_path, damage):
    _damaged_resume(tmp_path, damage)
