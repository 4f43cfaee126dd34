"""Tests of sweeps (chunk files, resume, merge), schedules, per-trajectory GD minima and progress.

The runs share program shapes with tests/simulation/test_simulate.py (``small_config``: float64,
depth 3, 200 steps, checkpoints every 50) and use chunks of 4 lanes.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config
from support import GRID, assert_same_result, simulated

from rankjump import (
    ConfigError,
    SweepError,
    analyze,
    config_to_toml,
    load_result,
    loads_config,
    merge,
    simulate,
    sweep,
)
from rankjump.cli.main import main
from rankjump.dynamics import TaskArrays, new_hyper
from rankjump.kernel import compiled_chunk, new_lane_params, split_lane_key
from rankjump.model.network import init_gaussian
from rankjump.model.tasks import make_task
from rankjump.model.theory import mode_minima
from rankjump.simulation.plan import plan_run, structure_for
from rankjump.simulation.runs import run_chunks
from rankjump.simulation.starts import MinimaCache, shared_starts
from rankjump.sweeps.files import JOBS
from rankjump.sweeps.jobs import InlineExecutor

# ------------------------------------------------------------------ sweep == simulate, resume


def test_sweep_equals_simulate(tmp_path):
    out = tmp_path / "sweep"
    ds = sweep(GRID, out, chunks_per_job=2, progress=False)
    assert sorted(p.name for p in (out / JOBS).iterdir()) == [
        "job-00000.npz",
        "job-00001.npz",
        "job-00002.npz",
    ]
    assert_same_result(ds, simulated(GRID))
    assert_same_result(load_result(out / "result.nc"), simulated(GRID))


class _StopAfter(InlineExecutor):
    """Runs some jobs, then stops as a Ctrl-C would."""

    def __init__(self, n_jobs: int):
        self.n_jobs = n_jobs

    def run(self, out, jobs, bar):
        super().run(out, jobs[: self.n_jobs], bar)
        raise KeyboardInterrupt


def test_interrupted_sweep_resumed_equals_uninterrupted(tmp_path):
    out = tmp_path / "sweep"
    with pytest.raises(KeyboardInterrupt):
        sweep(GRID, out, executor=_StopAfter(2), progress=False)
    assert sorted(p.name for p in (out / JOBS).iterdir()) == ["job-00000.npz", "job-00001.npz"]
    assert not (out / "result.nc").exists()
    # A temporary file left by a job killed while writing is never taken for a finished job.
    (out / JOBS / ".job-00002.npz.abc.tmp").write_bytes(b"partial")
    before = {p: os.stat(p).st_mtime_ns for p in (out / JOBS).glob("job-*.npz")}
    with pytest.raises(SweepError, match="2 of 6 jobs done.*--resume"):
        sweep(GRID, out, progress=False)
    ds = sweep(GRID, out, resume=True, progress=False)
    assert_same_result(ds, simulated(GRID))
    # Finished jobs were not rerun.
    assert all(os.stat(p).st_mtime_ns == t for p, t in before.items())


def test_a_sweep_begun_before_a_field_was_added_resumes(tmp_path, monkeypatch):
    """A sweep's configuration is compared parsed: one written before a field existed (here
    rare.basin, written by a version that lacked it) reads as that field's default and resumes."""
    from rankjump.sweeps import files

    def older(cfg):
        text = config_to_toml(cfg)
        return "\n".join(line for line in text.splitlines() if not line.startswith("basin ="))

    out = tmp_path / "sweep"
    monkeypatch.setattr(files, "config_to_toml", older)
    with pytest.raises(KeyboardInterrupt):
        sweep(GRID, out, executor=_StopAfter(2), progress=False)
    monkeypatch.undo()
    assert "basin" not in (out / "sweep.json").read_text()
    ds = sweep(GRID, out, resume=True, progress=False)
    assert_same_result(ds, simulated(GRID))


def test_sweep_folder_mistakes_are_one_line_errors(tmp_path):
    out = tmp_path / "sweep"
    sweep(GRID, out, chunks_per_job=3, progress=False)
    other = GRID.replace(run={"seed": 1})
    with pytest.raises(SweepError, match="another configuration"):
        sweep(other, out, resume=True, progress=False)
    with pytest.raises(SweepError, match="--chunks-per-job 2: the sweep in .* has jobs of 3"):
        sweep(GRID, out, resume=True, chunks_per_job=2, progress=False)
    sweep(GRID, out, resume=True, chunks_per_job=3, progress=False)  # its own value is fine
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(SweepError, match="not empty and holds no sweep"):
        sweep(GRID, tmp_path / "stuff", progress=False)
    with pytest.raises(SweepError, match="does not exist"):
        sweep(GRID, tmp_path / "missing" / "sweep", progress=False)
    with pytest.raises(SweepError, match="chunks-per-job"):
        sweep(GRID, tmp_path / "new", chunks_per_job=0, progress=False)
    assert not (tmp_path / "new").exists()
    (out / JOBS / "job-00001.npz").write_bytes(b"not a job")
    with pytest.raises(SweepError, match="job-00001.npz: unreadable .*--resume"):
        merge(out)


def test_sweep_command(tmp_path, capsys):
    path = tmp_path / "grid.toml"
    path.write_text(config_to_toml(GRID))
    out = tmp_path / "sweep"
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0
    assert f"wrote {out / 'result.nc'}  (2 x 2 cells, 6 trajectories" in capsys.readouterr().out
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --resume" in err[0]
    (out / JOBS / "job-00003.npz").unlink()  # a lost job: the others are reused, and it is said
    assert main(["sweep", str(path), "--out", str(out), "--resume", "--quiet"]) == 0
    assert "resumed: 5 of 6 job files were already written" in capsys.readouterr().out


# ------------------------------------------------------------------ schedules


SCHEDULED = small_config(
    optimizer={"schedule_steps": [100], "lam_factors": [3.0, 1.0], "eta_factors": [2.0, 1.0]}
)


def _lane_inputs(cfg, lam, eta):
    """Keys and per-lane values of the 4 trajectories of one cell, one phase per lane."""
    task = make_task(cfg.task)
    plan = plan_run(cfg)
    n = cfg.run.trajectories
    thr = plan.thresholds[0]

    params = new_lane_params(
        hyper=new_hyper(  # one phase: (lanes, 1)
            lam=jnp.full((n, 1), lam), eta=jnp.full((n, 1), eta), dtype=jnp.float64, lanes=(n,)
        ),
        thr_layer=thr.layer,
        thr_end=thr.end,
        init_scale=cfg.network.init_scale,
        diverge_norm2=cfg.run.diverge_norm2,
        dtype=jnp.float64,
        lanes=(n,),
    )
    root = jax.random.PRNGKey(cfg.run.seed)
    keys = jax.vmap(lambda t: jax.random.fold_in(root, t))(jnp.arange(n, dtype=jnp.uint32))
    arrays = TaskArrays.of(task, jnp.float64)
    return keys, params, arrays


def test_two_phase_schedule_equals_phase_one_then_phase_two():
    ds = simulate(SCHEDULED, progress=False).isel(lam=0, eta=0)
    lam, eta = SCHEDULED.optimizer.lam[0], SCHEDULED.optimizer.eta[0]
    # Both phases run one program: two intervals, one phase, given starts.
    s = structure_for(SCHEDULED)._replace(n_intervals=2, n_phases=1, init="given")
    no_schedule = jnp.zeros(0, jnp.int32)
    # Phase one: 100 steps at (3 lam, 2 eta) from the Gaussian starts, drawn here as the kernel
    # draws them (checkpoint 0 below checks that they are simulate's).
    keys, params, arrays = _lane_inputs(SCHEDULED, 3 * lam, 2 * eta)

    def gaussian(key):
        return init_gaussian(split_lane_key(key)[0], s.shapes, 1.0, jnp.float64)

    starts = tuple(SCHEDULED.network.init_scale * w for w in jax.vmap(gaussian)(keys))
    rec1, weights = compiled_chunk(s)(keys, starts, params, arrays, no_schedule, jnp.int32(0))
    # Phase two: from phase one's final weights, intervals 2 and 3 (the keys continue there).
    keys, params, arrays = _lane_inputs(SCHEDULED, lam, eta)
    rec2, _ = compiled_chunk(s)(keys, weights, params, arrays, no_schedule, jnp.int32(2))
    for name in ("rank", "layer_rank", "end_rank", "sv", "data_loss", "param_norm2", "imbalance"):
        got = np.concatenate(
            [np.asarray(getattr(rec1, name)), np.asarray(getattr(rec2, name))[:, 1:]], 1
        )
        np.testing.assert_allclose(got, ds[name].values, rtol=1e-12, atol=1e-14, err_msg=name)
    # L_lam is recorded with the lam of the interval that ended: 3 lam up to step 100.
    loss = np.concatenate([np.asarray(rec1.loss), np.asarray(rec2.loss)[:, 1:]], 1)
    np.testing.assert_allclose(loss, ds["loss"].values, rtol=1e-12)
    np.testing.assert_allclose(
        ds["loss"].values,
        ds["data_loss"].values + np.array([3, 3, 3, 1, 1]) * lam * ds["param_norm2"].values,
        rtol=1e-12,
    )
    # The schedule matters: the constant run differs after step 0.
    const = simulate(
        SCHEDULED.replace(optimizer={"lam_factors": [1.0, 1.0], "eta_factors": [1.0, 1.0]}),
        progress=False,
    )
    assert not np.allclose(const["param_norm2"].values[0, 0, :, 2], ds["param_norm2"].values[:, 2])


def test_schedules_share_one_program():
    from rankjump.kernel import trace_count

    simulate(SCHEDULED, progress=False)
    before = trace_count()
    for factors in ([5.0, 1.0], [1.0, 1.0], [0.5, 2.0]):
        cfg = SCHEDULED.replace(
            optimizer={"lam_factors": factors, "eta_factors": factors[::-1], "lam": [3e-3]}
        )
        simulate(cfg, progress=False)
    assert trace_count() == before


def test_schedule_configuration_is_checked():
    bad = [
        ({"schedule_steps": [100, 50]}, "strictly increasing"),
        ({"schedule_steps": [120]}, "multiple of run.record_every = 50"),
        ({"schedule_steps": [200]}, "below run.steps = 200"),
        ({"schedule_steps": [100], "lam_factors": [1.0]}, "lam_factors has 1 values"),
        ({"schedule_steps": [100], "eta_factors": [1.0, 0.0]}, "eta_factors = 0.0: must be > 0"),
        ({"schedule_steps": [100], "eta_factors": [2000.0, 1.0]}, "2 \\* eta \\* lam = 2 must"),
    ]
    for body, message in bad:
        with pytest.raises(ConfigError, match=message):
            small_config(optimizer=body)
    text = config_to_toml(SCHEDULED)
    assert "schedule_steps = [100]" in text and loads_config(text) == SCHEDULED


# ------------------------------------------------------------------ per-trajectory GD minima

# Fully observed 4 x 4 target with singular values (2, 0.4), depth 3, lam = 5e-3: both modes have
# a stable nonzero root (docs/theory.md's per-mode minima), and the second one is also stable at
# 0, so GD from different inits ends at rank 1 or rank 2 with the end-to-end values known in
# closed form.
PER_TRAJ = loads_config(
    """
[task]
d_out = 4
d_in = 4
rank = 2
observed = 1.0
singular_values = [2.0, 0.4]
[network]
depth = 3
width = 4
init = "gd_minimum"
gd_start = "per_trajectory"
init_scale = 0.3
gd_eta = 0.05
gd_tol = 1e-9
[optimizer]
lam = [0.005]
eta = [0.01, 0.02]
[run]
trajectories = 16
steps = 100
record_every = 50
chunk_size = 8
dtype = "float64"
"""
)


def test_per_trajectory_gd_minima_start_at_known_ranks(tmp_path):
    ds = simulated(PER_TRAJ)
    tol = PER_TRAJ.network.gd_tol
    assert ds["gd_grad_norm"].dims == ("lam", "traj")
    assert np.all(ds["gd_grad_norm"].values <= tol) and np.all(ds["gd_steps"].values > 0)
    roots = mode_minima([2.0, 0.4], 0.005, 16, 3)
    assert roots[1] > 0.1  # the second mode has a nonzero minimum...
    start = ds["rank"].isel(checkpoint=0).values  # (lam, eta, traj)
    # ... that some starts reach and some do not: the start ranks vary.
    assert set(np.unique(start)) == {1, 2}
    # Every start's A_theta has the closed-form singular values of its rank, the rest ~0.
    sv = ds["sv"].isel(checkpoint=0).values
    for e in range(2):
        for t in range(16):
            want = np.array([roots[0], roots[1] if start[0, e, t] == 2 else 0.0, 0.0, 0.0])
            np.testing.assert_allclose(sv[0, e, t], want, atol=1e-6, err_msg=f"traj {t}")
    # The same (lam, traj) start in every eta cell (common random numbers).
    np.testing.assert_array_equal(start[0, 0], start[0, 1])
    # Statistics condition on the start rank: the rank sets count only the modal start.
    modal = int(np.bincount(start[0, 0]).argmax())
    cell = analyze(ds).cells[0]
    assert cell.start_rank == modal
    assert cell.conditioned == int((start[0, 0] == modal).sum()) < cell.n
    # A sweep of it, recomputing the minima job by job, merges to the same result.
    MinimaCache.clear_shared()
    assert_same_result(sweep(PER_TRAJ, tmp_path / "sweep", progress=False), ds)


def test_per_trajectory_start_needs_gd_minimum():
    with pytest.raises(ConfigError, match='needs network.init = "gd_minimum"'):
        small_config(network={"gd_start": "per_trajectory"})


# ------------------------------------------------------------------ progress


class _Counter:
    def __init__(self):
        self.updates = []

    def update(self, n):
        self.updates.append(n)


def test_progress_is_reported_from_inside_the_scan(capsys):
    plan = plan_run(GRID)
    counter = _Counter()
    run_chunks(plan, range(plan.n_chunks), shared_starts(plan), counter)
    # One update per checkpoint interval of each chunk (4 lanes x 50 steps), not one per chunk.
    assert counter.updates == [4 * 50] * (plan.n_chunks * 4)
    assert sum(counter.updates) == plan.n_lanes * GRID.run.steps
    # No bar when output is not a terminal (pytest captures it).
    simulate(GRID, progress=None)
    assert capsys.readouterr().err == ""


def test_a_sweep_interrupted_before_its_first_job_says_so(tmp_path, capsys, monkeypatch):
    import rankjump.sweeps.jobs as jobs

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "sweep", stopped)
    path = tmp_path / "grid.toml"
    path.write_text(config_to_toml(GRID))
    assert main(["sweep", str(path), "--out", str(tmp_path / "new"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "interrupted before the first job (no job file written); continue with" in err
    assert "0 of 0" not in err
