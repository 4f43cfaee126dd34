"""Reliability: bad input from the command line, a fuzzed config loader, kill-and-resume of a
sweep, the submitit path, and reproducible result files."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import small_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import BAD, GRID, assert_same_result, simulated

from rankjump import Config, ConfigError, config_to_toml, load_result, loads_config, save_result
from rankjump.cli.main import main
from rankjump.sweeps.cluster import SubmititExecutor
from rankjump.sweeps.files import JOBS, SweepError
from rankjump.sweeps.jobs import sweep

ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------ bad input at the command line


def _toml(value) -> str:
    """TOML text of a value in BAD (numbers, strings, booleans, lists, nan)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _document(data: dict) -> str:
    lines = []
    for section, body in data.items():
        if not isinstance(body, dict):
            lines.append(f"{section} = {_toml(body)}")
            continue
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml(value)}" for key, value in body.items()]
    return "\n".join(lines) + "\n"


def _one_line_error(capsys, pattern: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("rankjump ") and ": error: " in err
    import re

    assert re.search(pattern, err), err
    return err


@pytest.mark.parametrize(("data", "pattern"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_configuration_from_the_command_line(tmp_path, capsys, data, pattern):
    path = tmp_path / "bad.toml"
    path.write_text(_document(data))
    out = tmp_path / "r.nc"
    assert main(["simulate", str(path), "--out", str(out)]) == 2
    _one_line_error(capsys, pattern)
    assert main(["sweep", str(path), "--out", str(tmp_path / "sweep")]) == 2
    _one_line_error(capsys, pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # nothing written


def test_bad_files_from_the_command_line(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text(config_to_toml(small_config()))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\nnot really")
    foreign = tmp_path / "foreign.nc"
    import xarray as xr

    xr.Dataset({"x": ("t", np.arange(3))}).to_netcdf(foreign, engine="h5netcdf")
    cases = [
        (
            ["simulate", str(tmp_path / "missing.toml"), "--out", "r.nc"],
            "cannot read configuration",
        ),
        (["simulate", str(tmp_path), "--out", "r.nc"], "cannot read configuration"),
        (["simulate", str(binary), "--out", "r.nc"], "not UTF-8 text"),
        (["simulate", str(good), "--out", str(a_file / "r.nc")], "does not exist"),
        (["simulate", str(good), "--out", str(tmp_path)], "is a directory"),
        (["sweep", str(good), "--out", str(a_file)], "is not a directory"),
        (["sweep", str(good), "--out", str(tmp_path / "no" / "dir")], "does not exist"),
        (["stats", str(tmp_path / "missing.nc")], "no such result file"),
        (["stats", str(corrupt)], "not a readable netCDF result file"),
        (["stats", str(foreign)], "not a rankjump result"),
        (["plot", str(corrupt), "--out", str(tmp_path / "figs")], "not a readable netCDF"),
        (["plot", str(foreign), "--out", str(tmp_path / "figs")], "not a rankjump result"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, message in cases:
        assert main(argv) == 2, argv
        _one_line_error(capsys, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ------------------------------------------------------------------ fuzzing the loader

_SECTIONS = ["task", "network", "optimizer", "run", "rank", "rare"]
_KEYS = sorted(
    {f for section in _SECTIONS for f in loads_config("").__getattribute__(section).__dict__}
)
_scalars = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.booleans()
    | st.sampled_from(["auto", "sgd", "gd", "langevin", "float64", "gd_minimum", "file"])
)
_values = _scalars | st.lists(_scalars, max_size=4) | st.lists(st.lists(_scalars, max_size=2))
_keys = st.sampled_from(_KEYS) | st.text(min_size=1, max_size=6)
_documents = st.dictionaries(
    st.sampled_from(_SECTIONS) | st.text(min_size=1, max_size=6),
    st.dictionaries(_keys, _values | st.dictionaries(_keys, _scalars, max_size=2), max_size=6)
    | _scalars,
    max_size=5,
)


def _fuzz_toml(value) -> str:
    """TOML for any generated value: strings escaped, floats as TOML writes them, tables inline."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_fuzz_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_fuzz_toml(v) for v in value) + "]"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _key(value)
    return _toml(value)


def _key(text: str) -> str:
    return (
        '"'
        + "".join(f"\\U{ord(c):08x}" if not (c.isascii() and c.isalnum()) else c for c in text)
        + '"'
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_fuzzed_documents_load_or_raise_config_error(data):
    text = "\n".join(
        f"[{_key(name)}]\n" + "".join(f"{_key(k)} = {_fuzz_toml(v)}\n" for k, v in body.items())
        if isinstance(body, dict)
        else f"{_key(name)} = {_fuzz_toml(body)}\n"
        for name, body in data.items()
    )
    try:
        cfg = loads_config(text)
    except ConfigError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert isinstance(cfg, Config)
        assert loads_config(config_to_toml(cfg)) == cfg


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_text_loads_or_raises_config_error(text):
    try:
        assert isinstance(loads_config(text), Config)
    except ConfigError as err:
        assert str(err)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(_SECTIONS),
    st.sampled_from(_KEYS),
    _values,
)
def test_fuzzed_single_fields_load_or_raise_config_error(section, key, value):
    text = f"[{section}]\n{key} = {_fuzz_toml(value)}\n"
    try:
        assert isinstance(loads_config(text), Config)
    except ConfigError as err:
        assert section in str(err) or key in str(err) or "optimizer" in str(err)


# ------------------------------------------------------------------ crash safety


def _sweep_process(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "rankjump", "sweep", str(config), "--out", str(out), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, proc, timeout=120.0):
    t0 = time.monotonic()
    while not condition():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # waits and closes the pipe
    assert proc.returncode == -signal.SIGKILL


# 24 jobs of 4 lanes: a signal sent once a job or two is done lands while jobs remain, however
# fast each one runs.
SIGNAL_GRID = GRID.replace(run={"trajectories": 24})


def test_killed_sweep_resumes_to_the_uninterrupted_result(tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text(config_to_toml(SIGNAL_GRID))
    want = simulated(SIGNAL_GRID)
    # SIGKILL while the sweep starts up, and again once some jobs are done.
    out = tmp_path / "sweep"
    proc = _sweep_process(config, out, "--quiet")
    _wait_for(lambda: out.exists(), proc)
    _kill(proc)
    proc = _sweep_process(config, out, "--resume", "--quiet")
    _wait_for(lambda: len(list((out / JOBS).glob("job-*.npz"))) >= 2, proc)
    _kill(proc)
    done = len(list((out / JOBS).glob("job-*.npz")))
    assert 2 <= done < 24 and not (out / "result.nc").exists()
    assert_same_result(sweep(SIGNAL_GRID, out, resume=True, progress=False), want)


def test_sigint_stops_a_sweep_with_a_resume_hint(tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text(config_to_toml(SIGNAL_GRID))
    out = tmp_path / "sweep"
    proc = _sweep_process(config, out, "--quiet")
    _wait_for(lambda: any((out / JOBS).glob("job-*.npz")) if out.exists() else False, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted with" in err and "--resume" in err and "Traceback" not in err


# ------------------------------------------------------------------ submitit


def test_submitit_local_executor_equals_inline(tmp_path):
    out = tmp_path / "sweep"
    ds = sweep(
        GRID,
        out,
        chunks_per_job=3,
        executor=SubmititExecutor("local", parallel=2),
        progress=False,
    )
    assert_same_result(ds, simulated(GRID))
    assert (out / "submitit").is_dir()


def test_submitit_executor_options_are_checked():
    with pytest.raises(SweepError, match="--executor pbs"):
        SubmititExecutor("pbs")
    with pytest.raises(SweepError, match="--time = 0"):
        SubmititExecutor("slurm", time_min=0)
    with pytest.raises(SweepError, match="--parallel = 0"):
        SubmititExecutor("local", parallel=0)


# ------------------------------------------------------------------ reproducibility


def test_same_config_and_seed_give_the_same_file(tmp_path):
    from rankjump import simulate

    cfg = small_config(run={"seed": 3})
    paths = []
    for n in range(2):
        ds = simulate(cfg, progress=False)
        ds.attrs["wall_time_s"] = 0.0
        paths.append(save_result(ds, tmp_path / f"run{n}.nc"))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    attrs = load_result(paths[0]).attrs
    for key in ("config", "rankjump_version", "jax_version", "jaxlib_version", "numpy_version"):
        assert attrs[key]
    assert "seed = 3" in attrs["config"] and attrs["platform"] and attrs["device_kind"]


# ------------------------------------------------------------------ divergence at the command line


def test_divergence_warning_names_count_and_cells(tmp_path, capsys):
    cfg = small_config(optimizer={"eta": [0.05, 20.0]}, run={"trajectories": 2, "chunk_size": 4})
    path = tmp_path / "div.toml"
    path.write_text(config_to_toml(cfg))
    assert main(["simulate", str(path), "--out", str(tmp_path / "r.nc"), "--quiet"]) == 0
    err = capsys.readouterr().err.strip()
    assert err == (
        "warning: 2 trajectories diverged and are excluded from statistics; (lam 0.01, eta 20): 2"
    )
    assert main(["stats", str(tmp_path / "r.nc")]) == 0
    assert "diverged (excluded) = 2" in capsys.readouterr().out


def test_slurm_executor_parameters_and_missing_slurm(tmp_path, monkeypatch, capsys):
    config = tmp_path / "grid.toml"
    config.write_text(config_to_toml(GRID))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["sweep", str(config), "--out", str(tmp_path / "s"), "--executor", "slurm"]) == 2
    _one_line_error(capsys, "no Slurm here")
    assert not (tmp_path / "s").exists()
    # With an srun on PATH, the options become the job array's sbatch parameters.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    executor = SubmititExecutor("slurm", partition="gpu", time_min=120, gpus=1, cpus=4, parallel=50)
    ex, _ = executor._executor(tmp_path / "s")
    script = ex._executor._make_submission_file_text("true", "0")
    for line in ("--partition=gpu", "--time=120", "--gpus-per-node=1", "--cpus-per-task=4"):
        assert f"#SBATCH {line}" in script
    assert ex._executor.parameters["array_parallelism"] == 50
