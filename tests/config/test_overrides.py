"""``--set SECTION.KEY=VALUE``: parsed as TOML values, validated as a file is, recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import small_config

from rankjump import ConfigError, config_to_toml, load_result, loads_config
from rankjump.cli.main import main
from rankjump.config.overrides import parse_override, with_overrides


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("run.steps=1000", ("run", "steps", 1000)),
        ("optimizer.eta=[0.1, 0.2]", ("optimizer", "eta", [0.1, 0.2])),
        ('network.init="gd_minimum"', ("network", "init", "gd_minimum")),
        ("network.init=gd_minimum", ("network", "init", "gd_minimum")),  # a bare word
        (" run.dtype = float64 ", ("run", "dtype", "float64")),
        ("rank.threshold=auto", ("rank", "threshold", "auto")),
        ("optimizer.batch_size=4", ("optimizer", "batch_size", 4)),
    ],
)
def test_values_are_read_as_toml(text, want):
    assert parse_override(text) == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run.steps", "expected SECTION.KEY=VALUE"),
        ("steps=10", "expected SECTION.KEY=VALUE"),
        ("run.a.b=1", "expected SECTION.KEY=VALUE"),
        ("run.stepz=10", "run.stepz: unknown key; did you mean run.steps?"),
        ("rnu.steps=10", "unknown section; did you mean [run]?"),
        ("run.steps=-5", "run.steps = -5"),
        ("optimizer.eta=[0.2, 0.2]", "optimizer.eta"),
    ],
)
def test_bad_overrides_name_the_field(text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("?", r"\?")):
        with_overrides(small_config(), [text])


def test_overrides_apply_in_order_and_keep_the_rest():
    cfg = with_overrides(
        small_config(), ["run.steps=100", "optimizer.eta=[0.2, 0.1]", "run.steps=300"]
    )
    assert cfg.run.steps == 300 and cfg.optimizer.eta == (0.1, 0.2)  # grid lists are sorted
    assert cfg.replace(run={"steps": 200}, optimizer={"eta": [0.05]}) == small_config()
    assert with_overrides(small_config(), []) is not None


def test_a_relative_init_file_given_here_is_taken_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = with_overrides(small_config(), ["network.init=file", "network.init_file=w.npz"])
    assert Path(cfg.network.init_file) == tmp_path / "w.npz"


def test_simulate_records_the_changed_configuration(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text(config_to_toml(small_config()))
    out = tmp_path / "r.nc"
    argv = ["simulate", str(path), "--out", str(out), "--quiet", "--set", "run.seed=7"]
    assert main(argv) == 0
    assert loads_config(load_result(out).attrs["config"]).run.seed == 7
    capsys.readouterr()
    assert main([*argv, "--set", "run.record_every=7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run.record_every" in err[0]
