"""Hostile input, class by class: grid lists that parse but would break later, output that
cannot be written, start files that are not weights, and signals during a save. Each case: no
traceback, exit code 2 with one line naming the field or file (or the signal's exit code and a
line saying what was written), no half-written file, no finished run lost. Sweep folders whose
contents do not match (class 6) are in tests/sweeps/test_sweep_integrity.py."""

from __future__ import annotations

import errno
import os
import signal
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import small_config

from rankjump import ConfigError, config_to_toml, load_config, load_result, save_weights
from rankjump.cli.main import main
from rankjump.results.io import ResultError, save_result
from rankjump.simulation.starts import load_weights

SHAPES = [(4, 4), (4, 4), (5, 4)]  # small_config's layers


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def _write_config(path: Path, cfg) -> Path:
    path.write_text(config_to_toml(cfg))
    return path


# ------------------------------------------------------------------ 1. grid lists


@pytest.mark.parametrize("field", ["lam", "eta"])
def test_a_grid_value_given_twice_is_refused(field):
    with pytest.raises(ConfigError, match=rf"optimizer\.{field} = .*given twice"):
        small_config(optimizer={field: [0.01, 0.02, 0.01]})


def test_unsorted_grid_lists_are_sorted_and_run_as_sorted(tmp_path, capsys):
    cfg = small_config(optimizer={"lam": [0.02, 0.01], "eta": [0.08, 0.05]})
    assert cfg.optimizer.lam == (0.01, 0.02) and cfg.optimizer.eta == (0.05, 0.08)
    # Chunks of 4 lanes: small_config's program shape, shared with the other runs here.
    path = _write_config(tmp_path / "c.toml", small_config(run={"chunk_size": 4}))
    text = path.read_text().replace("lam = [0.01]", "lam = [0.02, 0.01]")
    path.write_text(text.replace("eta = [0.05]", "eta = [0.08, 0.05]"))
    code, _, _ = _run(["simulate", str(path), "--out", str(tmp_path / "r.nc"), "--quiet"], capsys)
    assert code == 0
    ds = load_result(tmp_path / "r.nc")
    assert ds["lam"].values.tolist() == [0.01, 0.02] and ds["eta"].values.tolist() == [0.05, 0.08]
    assert "lam = [0.01, 0.02]" in ds.attrs["config"]
    assert ds.sel(lam=0.02, eta=0.05)["rank"].ndim == 2  # one cell per coordinate pair


def test_duplicate_grid_value_from_the_command_line(tmp_path, capsys):
    path = _write_config(tmp_path / "c.toml", small_config())
    path.write_text(path.read_text().replace("eta = [0.05]", "eta = [0.05, 0.05]"))
    out = tmp_path / "r.nc"
    code, _, err = _run(["simulate", str(path), "--out", str(out), "--quiet"], capsys)
    assert code == 2 and len(err) == 1 and "optimizer.eta" in err[0] and "twice" in err[0]
    assert not out.exists()


# ------------------------------------------------------------------ 2. extreme results


@pytest.fixture(scope="module")
def extreme_files(tmp_path_factory):
    """Results that are valid but extreme: every trajectory diverged; one cell with none left
    beside a healthy one; and each cut to its first checkpoint."""
    from rankjump import simulate

    tmp = tmp_path_factory.mktemp("extreme")
    files = {}
    for name, etas in (("all diverged", [20.0, 30.0]), ("one cell empty", [0.05, 20.0])):
        # Chunks of 4 lanes: small_config's program shape, shared with the other runs here.
        cfg = small_config(optimizer={"eta": etas}, run={"chunk_size": 4})
        ds = simulate(cfg, progress=False)
        files[name] = save_result(ds, tmp / f"{len(files)}.nc")
        files[f"{name}, one checkpoint"] = save_result(
            ds.isel(checkpoint=[0]), tmp / f"{len(files)}.nc"
        )
    return files


def test_extreme_results_get_statistics_and_figures(extreme_files, tmp_path, capsys):
    # Warnings are errors in this suite: no matplotlib or NumPy complaint either.
    for name, path in extreme_files.items():
        code, printed, err = _run(["stats", str(path)], capsys)
        assert code == 0 and "pooled over 2 cells" in printed, (name, err)
        code, printed, err = _run(["stats", str(path), "--json"], capsys)
        assert code == 0 and printed.startswith("{"), (name, err)
        out = tmp_path / name.replace(" ", "_").replace(",", "")
        code, printed, err = _run(["plot", str(path), "--out", str(out), "--format", "png"], capsys)
        assert code == 0 and len(list(out.glob("*.png"))) == 6, (name, err)


@pytest.mark.parametrize("rank", ["0", "99", "-1"])
def test_a_start_rank_the_network_cannot_have_is_refused(extreme_files, capsys, rank):
    path = extreme_files["one cell empty"]
    code, printed, err = _run(["stats", str(path), "--start-rank", rank], capsys)
    assert code == 2 and printed == "" and len(err) == 1
    assert f"--start-rank {rank}: must be between 1 and 4" in err[0]


# ------------------------------------------------------------------ 3. unwritable output


def test_an_existing_result_file_is_replaced_and_said_so(tmp_path, capsys):
    path = _write_config(tmp_path / "c.toml", small_config())
    out = tmp_path / "r.nc"
    out.write_text("an old file")
    code, printed, _ = _run(["simulate", str(path), "--out", str(out), "--quiet"], capsys)
    assert code == 0 and printed.startswith(f"replaced {out}")
    assert load_result(out)["rank"].size


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_result_files_follow_the_umask(tmp_path, mask):
    ds = xr.Dataset({"x": ("a", np.arange(3))})
    old = os.umask(mask)
    try:
        save_result(ds, tmp_path / "r.nc")
    finally:
        os.umask(old)
    assert (tmp_path / "r.nc").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_write_error_keeps_the_finished_result(tmp_path, monkeypatch):
    # The output folder fails at write time (a full disk): the result goes to the temporary
    # folder, the error says where, and nothing half-written stays in the output folder.
    ds = xr.Dataset({"x": ("a", np.arange(3.0))}, attrs={"producer": "rankjump"})
    out = tmp_path / "full"
    out.mkdir()
    write = xr.Dataset.to_netcdf

    def to_netcdf(self, path, *args, **kwargs):
        if Path(path).parent == out:
            Path(path).write_bytes(b"partial")
            raise OSError(28, "No space left on device")
        return write(self, path, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", to_netcdf)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "rescue"))
    (tmp_path / "rescue").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    with pytest.raises(ResultError, match=r"No space left on device\); the finished result is at"):
        save_result(ds, out / "r.nc")
    assert list(out.iterdir()) == []
    (rescued,) = (tmp_path / "rescue").iterdir()
    xr.testing.assert_identical(xr.open_dataset(rescued, engine="h5netcdf").load(), ds)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--quick", "--out", "{tmp}/a_file"], "exists and is not a folder"),
        (["simulate", "{cfg}", "--out", "{tmp}"], "is a directory"),
        (["simulate", "{cfg}", "--out", "{tmp}/missing/r.nc"], "does not exist"),
    ],
)
def test_unusable_outputs_are_refused_before_any_compute(tmp_path, capsys, argv, message):
    (tmp_path / "a_file").write_text("x")
    cfg = _write_config(tmp_path / "c.toml", small_config())
    argv = [a.format(tmp=tmp_path, cfg=cfg) for a in argv]
    code, printed, err = _run(argv, capsys)
    assert code == 2 and len(err) == 1 and message in err[0]
    assert printed == ""  # nothing ran


# ------------------------------------------------------------------ 4. sizes that cannot fit


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_a_run_too_large_for_memory_is_refused_with_a_way_out(tmp_path, capsys, command):
    # A sweep holds one job at a time: too large when one job is (chunks of 10^7 trajectories).
    huge = small_config(
        run={"trajectories": 10**8, "steps": 10**6, "record_every": 10, "chunk_size": 10**7}
    )
    path = _write_config(tmp_path / "c.toml", huge)
    out = tmp_path / ("r.nc" if command == "simulate" else "sweep")
    code, printed, err = _run([command, str(path), "--out", str(out), "--quiet"], capsys)
    assert code == 2 and printed == "" and len(err) == 1
    assert "run.trajectories, run.record_every" in err[0] and "GiB is available" in err[0]
    assert ("as `rankjump sweep`" in err[0]) == (command == "simulate")
    assert not out.exists()


@pytest.mark.parametrize(("field", "value"), [("steps", 2**31), ("record_every", 2**40)])
def test_step_counts_past_the_counters_are_refused(field, value):
    with pytest.raises(ConfigError, match=rf"run\.{field} = {value}: must be <= 2147483647"):
        small_config(run={field: value})


# ------------------------------------------------------------------ 5. start files


def _weights():
    rng = np.random.default_rng(3)
    return [rng.standard_normal(s) for s in SHAPES]


def _bad_start_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    files = {}
    w = _weights()
    nan = [x.copy() for x in w]
    nan[1][0, 0] = np.nan
    save_weights(tmp / "nan.npz", nan)
    files["non-finite"] = (tmp / "nan.npz", "W2 has non-finite values")
    np.save(tmp / "one.npy", w[0])
    files["an .npy array"] = (tmp / "one.npy", "not an .npz archive")
    (tmp / "empty.npz").write_bytes(b"")
    files["empty"] = (tmp / "empty.npz", "cannot read weights")
    save_weights(tmp / "full.npz", w)
    data = (tmp / "full.npz").read_bytes()
    (tmp / "cut.npz").write_bytes(data[: len(data) // 2])
    files["truncated"] = (tmp / "cut.npz", "cannot read weights")
    np.savez(tmp / "text.npz", W1=np.array([["a"] * 4] * 4), W2=w[1], W3=w[2])
    files["strings"] = (tmp / "text.npz", "W1 holds <U1 values, expected numbers")
    np.savez(tmp / "names.npz", A=w[0], B=w[1], C=w[2])
    files["other names"] = (tmp / "names.npz", "holds ['A', 'B', 'C'], expected")
    (tmp / "text.txt").write_text("W1 = 1")
    files["a text file"] = (tmp / "text.txt", "cannot read weights")
    with zipfile.ZipFile(tmp / "zip.npz", "w") as z:
        for name in ("W1", "W2", "W3"):
            z.writestr(f"{name}.npy", b"not an array")
    files["a zip of junk"] = (tmp / "zip.npz", "W1 is not a NumPy array")
    return files


def test_start_files_that_are_not_weights_are_refused_naming_the_file(tmp_path, capsys):
    for case, (path, message) in _bad_start_files(tmp_path).items():
        with pytest.raises(ConfigError, match="network.init_file") as err:
            load_weights(path, SHAPES)
        assert message in str(err.value) and str(path) in str(err.value), case
        cfg = small_config(network={"init": "file", "init_file": str(path)})
        config = _write_config(tmp_path / "c.toml", cfg)
        out = tmp_path / "r.nc"
        code, _, err_lines = _run(["simulate", str(config), "--out", str(out), "--quiet"], capsys)
        assert code == 2 and len(err_lines) == 1 and message in err_lines[0], case
        assert not out.exists(), case


def test_a_relative_init_file_is_found_beside_the_configuration(tmp_path, monkeypatch):
    folder = tmp_path / "study"
    folder.mkdir()
    save_weights(folder / "w.npz", _weights())
    config = folder / "c.toml"
    _write_config(config, small_config(network={"init": "file", "init_file": "w.npz"}))
    monkeypatch.chdir(tmp_path)  # not the configuration's folder
    cfg = load_config("study/c.toml")
    assert Path(cfg.network.init_file) == (folder / "w.npz").absolute()
    assert len(load_weights(cfg.network.init_file, SHAPES)) == 3


# ------------------------------------------------------------------ 7. signals during a save


def _hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*")]


def _interrupt_while_writing(monkeypatch, folder: Path, signum: int) -> None:
    """Make the next write of a netCDF file into ``folder`` stop half-way on ``signum``."""
    write = xr.Dataset.to_netcdf

    def to_netcdf(self, path, *args, **kwargs):
        if Path(path).parent == folder:
            Path(path).write_bytes(b"half a file")
            os.kill(os.getpid(), signum)  # delivered here, as a kill or Ctrl-C would be
        return write(self, path, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", to_netcdf)


@pytest.mark.parametrize(
    ("signum", "code", "words"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
def test_a_signal_during_the_final_write_leaves_no_file_and_says_so(
    tmp_path, capsys, monkeypatch, signum, code, words
):
    config = _write_config(tmp_path / "c.toml", small_config())
    out = tmp_path / "out" / "r.nc"
    out.parent.mkdir()
    _interrupt_while_writing(monkeypatch, out.parent, signum)
    got, printed, err = _run(["simulate", str(config), "--out", str(out), "--quiet"], capsys)
    assert got == code and printed == ""
    assert err == [f"rankjump simulate: {words}; no result file was written"]
    assert list(out.parent.iterdir()) == []  # no hidden temporary file either
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was put back


def test_an_interrupt_just_after_the_rename_says_the_file_was_written(
    tmp_path, capsys, monkeypatch
):
    import rankjump.results.io as results

    config = _write_config(tmp_path / "c.toml", small_config())
    out = tmp_path / "r.nc"
    out.write_text("an older file")
    replace = os.replace

    def replace_then_interrupt(src, dst):
        replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(results.os, "replace", replace_then_interrupt)
    got, _, err = _run(["simulate", str(config), "--out", str(out), "--quiet"], capsys)
    assert got == 130
    assert err == [f"rankjump simulate: interrupted; {out} was written before it stopped"]
    assert load_result(out)["rank"].size and _hidden(tmp_path) == []


def test_a_signal_while_a_job_file_is_written_takes_effect_once_it_is_in_place(
    tmp_path, capsys, monkeypatch
):
    # SIGTERM half-way through the second (last) job's file: the write finishes and the file is
    # renamed into place, then the sweep stops, before merging, and says so; the resume only
    # merges (both job files pass their identity and checksum checks: no note).
    import importlib

    sweep_module = importlib.import_module("rankjump.sweeps.files")  # the module
    cfg = small_config(run={"trajectories": 8, "chunk_size": 4})
    config = _write_config(tmp_path / "c.toml", cfg)
    out = tmp_path / "sweep"
    savez, calls = np.savez, []

    def savez_with_a_signal(file, *args, **kwargs):
        calls.append(file)
        if "identity" in kwargs and len(calls) == 2:  # the file is open, not yet written
            os.kill(os.getpid(), signal.SIGTERM)
        return savez(file, *args, **kwargs)

    monkeypatch.setattr(sweep_module.np, "savez", savez_with_a_signal)
    argv = ["sweep", str(config), "--out", str(out), "--quiet"]
    got, _, err = _run(argv, capsys)
    assert got == 143 and len(err) == 1
    assert err[0].startswith("rankjump sweep: terminated with 2 of 2 job files written; continue")
    assert _hidden(out) == [] and not (out / "result.nc").exists()
    monkeypatch.undo()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "jobs").iterdir()}
    got, _, err = _run([*argv, "--resume"], capsys)
    assert got == 0 and err == [] and (out / "result.nc").exists()
    assert {p: p.stat().st_mtime_ns for p in (out / "jobs").iterdir()} == stamps


def test_deferred_signals_act_after_the_block():
    from rankjump.results.atomic import deferred_signals

    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the block ran to its end")
    assert done == ["the block ran to its end"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class _FullDevice:
    """A standard output on a full disk."""

    def write(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def flush(self):
        pass


def test_statistics_to_a_full_output_device(extreme_files, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdout", _FullDevice())
    assert main(["stats", str(extreme_files["one cell empty"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rankjump stats: error: cannot write standard output (No space left on device)"]


def test_a_merge_that_cannot_be_written_keeps_the_jobs(tmp_path, monkeypatch):
    from rankjump import SweepError, sweep

    cfg = small_config(run={"trajectories": 8, "chunk_size": 4})
    out = tmp_path / "sweep"
    write = xr.Dataset.to_netcdf

    def full_disk(self, path, *args, **kwargs):
        if Path(path).parent == out:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(self, path, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full_disk)
    with pytest.raises(
        SweepError, match=r"result.nc: cannot write \(No space left on device\); the"
    ):
        sweep(cfg, out, progress=False)
    assert len(list((out / "jobs").iterdir())) == 2 and _hidden(out) == []
    monkeypatch.undo()
    assert sweep(cfg, out, resume=True, progress=False)["rank"].size
