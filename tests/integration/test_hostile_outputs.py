"""Outputs that must survive hostile use of ``rare``, ``replay`` and shared folders: two writers on
one output, an output that is also an input, Ctrl-C at any moment, work finished before a late
error or a signal, and replays of edited files. Each case: no traceback, exit code 2 with one
line naming the path or process (or the signal's exit code and a line saying what was kept), no
finished work lost, no file destroyed. The environment's device count is
tests/runtime/test_cores.py's; rare configurations and rare files are
tests/integration/test_hostile_rare_config.py's and tests/integration/test_hostile_rare_files.py's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import small_config

from rankjump import config_to_toml, demo_config, load_result, loads_config, save_weights
from rankjump.cli.main import main
from rankjump.rare_events import grid
from rankjump.rare_events.partial import count_cells, partial_path
from rankjump.results.locks import OutputInUse, lock_path, output_lock
from rankjump.runtime.signals import Terminated

ROOT = Path(__file__).parents[2]

# Three cells of the demo's network with the fewest replicas and steps that run every stage
# (as tests/integration/test_hostile_rare_config.py); a cell takes about a second.
RARE = demo_config().replace(
    optimizer={"eta": [0.05, 0.1, 0.15]},
    run={"steps": 400, "record_every": 200, "trajectories": 1, "dtype": "float64"},
    rare={"method": "ams", "replicas": 4, "kill": 1, "runs": 2},
)


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def _write(path: Path, cfg) -> Path:
    path.write_text(config_to_toml(cfg))
    return path


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert {k: v for k, v in a.attrs.items() if k != "wall_time_s"} == {
        k: v for k, v in b.attrs.items() if k != "wall_time_s"
    }


# ------------------------------------------------------------------ 1. two writers, one output


def test_the_output_lock_admits_one_holder_at_a_time(tmp_path):
    """Four threads (each its own open file, as separate processes have) take the lock of one
    output 200 times each: a holder is never seen beside another, every try is either a hold or
    a refusal naming the holder, and no lock file is left."""
    out, inside, seen, refused, held = tmp_path / "r.nc", [], [], [], []
    start = threading.Barrier(4)

    def writer(me: int):
        start.wait()
        for _ in range(200):
            try:
                with output_lock(out):
                    inside.append(me)
                    seen.append(len(inside))
                    held.append(me)
                    time.sleep(0.0002)
                    inside.remove(me)
            except OutputInUse as err:
                refused.append(str(err))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(seen) == 1  # never two holders at once
    assert len(held) + len(refused) == 800 and held and refused
    assert all("in use by another rankjump process (" in r for r in refused)
    assert not lock_path(out).exists()


def test_a_lock_is_released_when_its_process_dies(tmp_path):
    out = tmp_path / "r.nc"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rankjump.results.locks import output_lock\n"
            f"with output_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT), "RANKJUMP_CPU_DEVICES": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputInUse, match=rf"pid {holder.pid} on .*`.*`, since "):
            with output_lock(out):
                pass
    finally:
        holder.kill()  # no clean exit: the kernel drops the lock
        holder.wait()
        holder.stdout.close()
    assert lock_path(out).exists()  # left behind by the kill, and harmless:
    with output_lock(out):
        pass
    assert not lock_path(out).exists()


def _together(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Start ``commands`` at once (``rankjump`` from this checkout) and wait for all."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RANKJUMP_CPU_DEVICES": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rankjump", *c],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _check_writers(runs, seeds, result: Path) -> None:
    """Each writer ended with its own result or a refusal naming another process; the file is
    the result of a writer that said it wrote it."""
    won = []
    for run, seed in zip(runs, seeds, strict=True):
        if run.returncode == 0:
            assert "wrote" in run.stdout or "replaced" in run.stdout, run.stdout
            won.append(seed)
        else:
            assert run.returncode == 2, run.stderr
            (line,) = run.stderr.strip().splitlines()
            assert "in use by another rankjump process (pid " in line, line
    assert won
    ds = load_result(result, kinds=("simulate", "rare"))
    seed = loads_config(ds.attrs["config"]).run.seed
    assert seed in won and (len(won) > 1 or seed == won[0])


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_two_writers_started_together_on_one_output(tmp_path, command):
    seeds = (1, 2)
    for seed in seeds:
        cfg = small_config(run={"seed": seed, "trajectories": 256, "steps": 20000})
        _write(tmp_path / f"c{seed}.toml", cfg)
    for attempt in range(2):
        out = tmp_path / f"out{attempt}{'.nc' if command == 'simulate' else ''}"
        runs = _together(
            [[command, f"c{s}.toml", "--out", out.name, "--quiet"] for s in seeds], tmp_path
        )
        _check_writers(runs, seeds, out if command == "simulate" else out / "result.nc")


@pytest.mark.slow
def test_two_rare_runs_started_together_on_one_output(tmp_path):
    seeds = (1, 2)
    for seed in seeds:
        _write(tmp_path / f"c{seed}.toml", RARE.replace(run={"seed": seed}))
    for attempt in range(3):
        out = tmp_path / f"r{attempt}.nc"
        runs = _together(
            [["rare", f"c{s}.toml", "--out", out.name, "--quiet"] for s in seeds], tmp_path
        )
        _check_writers(runs, seeds, out)
        assert not partial_path(out).exists()


# ------------------------------------------------------------------ 3. outputs that destroy inputs


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A small simulate result (a replay's source) and its configuration file."""
    folder = tmp_path_factory.mktemp("source")
    cfg = _write(folder / "c.toml", small_config(run={"trajectories": 2, "chunk_size": 4}))
    assert main(["simulate", str(cfg), "--out", str(folder / "r.nc"), "--quiet"]) == 0
    return folder / "r.nc", cfg


def _untouched(paths, run):
    before = {p: p.read_bytes() for p in paths}
    result = run()
    assert {p: p.read_bytes() for p in paths} == before
    return result


@pytest.mark.parametrize("command", ["simulate", "rare", "sweep"])
def test_a_configuration_is_never_its_own_output(tmp_path, capsys, command):
    cfg = _write(tmp_path / "c.toml", RARE if command == "rare" else small_config())
    code, _, err = _untouched([cfg], lambda: _run([command, str(cfg), "--out", str(cfg)], capsys))
    assert code == 2 and len(err) == 1 and str(cfg) in err[0], err
    assert "input" in err[0] or "not a directory" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_start_weights_are_never_an_output(tmp_path, capsys):
    weights = tmp_path / "w.npz"
    save_weights(weights, [np.eye(4), np.eye(4), np.ones((5, 4))])
    cfg = _write(
        tmp_path / "c.toml", small_config(network={"init": "file", "init_file": str(weights)})
    )
    code, _, err = _untouched(
        [weights], lambda: _run(["simulate", str(cfg), "--out", str(weights)], capsys)
    )
    assert code == 2 and err == [
        f"rankjump simulate: error: --out {weights}: is also this command's input "
        f"(network.init_file {weights}), which writing it would destroy; choose another path"
    ]


def test_a_replay_never_writes_over_its_source_or_its_own_result(source, tmp_path, capsys):
    result, _ = source
    base = ["replay", str(result), "--cell", "0.01,0.05", "--traj", "0", "--quiet", "--out"]
    code, _, err = _untouched([result], lambda: _run([*base, str(result)], capsys))
    assert code == 2 and len(err) == 1 and "input (the source" in err[0], err
    # Given a .png name, the figure (FILE.png) would land on the result.
    code, _, err = _run([*base, str(tmp_path / "x.png")], capsys)
    assert code == 2 and len(err) == 1 and "would be written to the same path" in err[0], err
    # A figure path that cannot be written is found before any compute.
    (tmp_path / "y.png").mkdir()
    code, _, err = _run([*base, str(tmp_path / "y.nc")], capsys)
    assert code == 2 and err == [
        f"rankjump replay: error: the figure (--out with .png) {tmp_path / 'y.png'}: is a "
        "directory, expected a file name"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.png"]


# ------------------------------------------------------------------ 4. Ctrl-C at any moment


# Sixteen cells: a run far longer than the last interrupt, on a machine several times faster too.
LONG_RARE = RARE.replace(optimizer={"eta": [round(0.05 + 0.005 * k, 3) for k in range(16)]})


def _interrupted_at(delays, cfg: Path, out: Path) -> list[tuple[float, int, str]]:
    """Run ``rankjump rare`` and send SIGINT (Ctrl-C) after each delay; (delay, exit code, last
    line on stderr, whether the result was written, cells kept) for each."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    found = []
    for delay in delays:
        for p in out.parent.glob(f"*{out.name}*"):
            p.unlink()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rankjump", "rare", str(cfg), "--out", str(out), "--quiet"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
        line = (err.strip().splitlines() or [""])[-1]
        found.append((delay, proc.returncode, line, out.exists(), count_cells(partial_path(out))))
    return found


def _check_interrupts(found) -> None:
    for delay, code, line, written, kept in found:
        assert code == 130, (delay, code, line)
        assert line.startswith("rankjump rare: interrupted; "), (delay, line)
        assert not written, delay  # stopped before its end: no result file
        if kept:
            assert f"{kept} finished cell(s) kept in" in line, (delay, line)
        else:
            assert "nothing was written" in line or "no result file was written" in line


def test_ctrl_c_stops_rare_with_exit_130(tmp_path):
    """SIGINT during the imports, while compiling and between cells (the signal goes to the
    process, as the shell's Ctrl-C or `kill -INT` of a job under job control does)."""
    cfg = _write(tmp_path / "c.toml", LONG_RARE)
    out = tmp_path / "r.nc"
    _check_interrupts(_interrupted_at([0.3, 2.5, 6.0], cfg, out))


@pytest.mark.slow
def test_ctrl_c_stops_rare_with_exit_130_at_many_points(tmp_path):
    cfg = _write(tmp_path / "c.toml", LONG_RARE)
    out = tmp_path / "r.nc"
    delays = [0.1, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0]
    _check_interrupts(_interrupted_at(delays, cfg, out))


# ------------------------------------------------------------------ 5. finished work kept


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rare")
    cfg = _write(folder / "c.toml", RARE)
    assert main(["rare", str(cfg), "--out", str(folder / "r.nc"), "--quiet"]) == 0
    return load_result(folder / "r.nc", kinds=("rare",))


def _failing_at(monkeypatch, cell: int, error: BaseException):
    """Make the ``cell``-th cell computed (from 0) raise ``error``."""
    real, calls = grid._cell, []

    def cell_or_error(*args, **kwargs):
        calls.append(1)
        if len(calls) == cell + 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(grid, "_cell", cell_or_error)
    return calls


@pytest.mark.parametrize(
    "error, code",
    [(Terminated(), 143), (KeyboardInterrupt(), 130), (RuntimeError("a late failure"), None)],
)
def test_a_stopped_rare_run_keeps_its_cells_and_resumes_to_the_same_result(
    tmp_path, capsys, monkeypatch, uninterrupted, error, code
):
    cfg = _write(tmp_path / "c.toml", RARE)
    out = tmp_path / "r.nc"
    argv = ["rare", str(cfg), "--out", str(out), "--quiet"]
    _failing_at(monkeypatch, 1, error)
    if code is None:
        with pytest.raises(RuntimeError, match="a late failure"):
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
    else:
        got, _, err = _run(argv, capsys)
        assert got == code
    assert not out.exists() and count_cells(partial_path(out)) == 1
    assert err[-1].endswith(
        f"1 finished cell(s) kept in {partial_path(out)}; continue with "
        f"`rankjump rare {cfg} --out {out} --resume`"
    ), err
    # Without --resume the kept cells are neither lost nor silently reused.
    monkeypatch.undo()
    got, _, err = _run(argv, capsys)
    assert got == 2 and len(err) == 1 and "pass --resume" in err[0]
    calls = _failing_at(monkeypatch, 99, RuntimeError)
    got, printed, _ = _run([*argv, "--resume"], capsys)
    assert got == 0 and len(calls) == 2  # only the two cells not kept were computed
    assert "1 finished cell(s) kept in" in printed
    assert not partial_path(out).exists()
    _same(load_result(out, kinds=("rare",)), uninterrupted)


def test_a_late_configuration_error_names_the_kept_cells(tmp_path, capsys, monkeypatch):
    from rankjump import ConfigError

    cfg = _write(tmp_path / "c.toml", RARE)
    out = tmp_path / "r.nc"
    _failing_at(monkeypatch, 2, ConfigError("rare.kick = 0.3: unreachable in this cell"))
    code, _, err = _run(["rare", str(cfg), "--out", str(out), "--quiet"], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("rankjump rare: error: rare.kick = 0.3: unreachable in this cell; ")
    assert f"2 finished cell(s) kept in {partial_path(out)}" in err[0]


def test_resume_refuses_cells_of_another_configuration_or_a_damaged_record(
    tmp_path, capsys, monkeypatch
):
    cfg = _write(tmp_path / "c.toml", RARE)
    out = tmp_path / "r.nc"
    _failing_at(monkeypatch, 1, KeyboardInterrupt())
    assert _run(["rare", str(cfg), "--out", str(out), "--quiet"], capsys)[0] == 130
    monkeypatch.undo()
    code, _, err = _run(
        ["rare", str(cfg), "--out", str(out), "--resume", "--set", "run.seed=7"], capsys
    )
    assert code == 2 and len(err) == 1 and "of another configuration" in err[0], err
    partial_path(out).write_bytes(b"not a zip")
    code, _, err = _run(["rare", str(cfg), "--out", str(out), "--resume"], capsys)
    assert code == 2 and err == [
        f"rankjump rare: error: {partial_path(out)}: not a readable record of finished rare "
        "cells (not an .npz archive); remove it to start afresh"
    ]


def _non_utf8_folder(tmp_path: Path) -> Path:
    folder = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9"))
    try:
        folder.mkdir()
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    return folder


def test_paths_that_are_not_utf8_are_refused_before_any_compute(tmp_path, capsys, source):
    folder = _non_utf8_folder(tmp_path)
    cfg = _write(tmp_path / "c.toml", small_config())
    code, _, err = _run(["simulate", str(cfg), "--out", str(folder / "r.nc")], capsys)
    assert code == 2 and len(err) == 1 and "not valid UTF-8" in err[0], err
    assert err[0].startswith("rankjump simulate: error: --out ")
    # Start weights in such a folder: the result records their path.
    weights = folder / "w.npz"
    save_weights(weights, [np.eye(4), np.eye(4), np.ones((5, 4))])
    code, _, err = _run(
        ["simulate", str(cfg), "--out", str(tmp_path / "r.nc"), "--set", "network.init='file'"]
        + ["--set", f"network.init_file='{weights}'"],
        capsys,
    )
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("rankjump simulate: error: network.init_file ")
    assert "not valid UTF-8" in err[0]
    assert not (tmp_path / "r.nc").exists()


# ------------------------------------------------------------------ 8. replays of edited files


def _edited(result: Path, tmp_path: Path, **changes) -> Path:
    ds = load_result(result)
    text = ds.attrs["config"]
    for old, new in changes.items():
        text = text.replace(old, new)
    ds.attrs["config"] = text
    path = tmp_path / "edited.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def _replay(source: Path, out: Path) -> list[str]:
    return ["replay", str(source), "--cell", "0.01,0.05", "--traj", "0", "--out", str(out)]


def test_a_replay_that_differs_from_its_file_is_an_error_unless_allowed(source, tmp_path, capsys):
    result, _ = source
    edited = _edited(result, tmp_path, **{"batch_size = 1": "batch_size = 2"})
    out = tmp_path / "j.nc"
    argv = [*_replay(edited, out), "--from", "0", "--to", "100", "--quiet"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and len(err) == 1, err
    assert "differs from the file's records (" in err[0] and "nothing written" in err[0]
    assert not out.exists() and not out.with_suffix(".png").exists()
    code, printed, _ = _run([*argv, "--allow-mismatch"], capsys)
    assert code == 0 and "DIFFERS FROM the file" in printed and out.exists()


def test_a_configuration_whose_steps_disagree_with_the_records_is_named(source, tmp_path, capsys):
    result, _ = source
    edited = _edited(result, tmp_path, **{"record_every = 50": "record_every = 40"})
    out = tmp_path / "j.nc"
    code, _, err = _run([*_replay(edited, out), "--to", "100"], capsys)
    assert code == 2 and len(err) == 1, err
    assert (
        "the result's configuration (run.steps = 200, run.record_every = 40) does not match"
        in err[0]
    )
    assert "--to" not in err[0] and not out.exists()
