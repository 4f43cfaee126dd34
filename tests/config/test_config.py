"""Tests of rankjump.config (validation, TOML round trip) and rankjump.model.tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import BAD

from rankjump import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_toml,
    load_config,
    loads_config,
)
from rankjump.config import TaskConfig
from rankjump.model.tasks import make_task

# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(("data", "pattern"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_configuration_raises_config_error(data, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        config_from_dict(data)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message


BAD_TABLES = [b for b in BAD if all(isinstance(body, dict) for body in b[1].values())]


@pytest.mark.parametrize(
    ("data", "pattern"), [b[1:] for b in BAD_TABLES], ids=[b[0] for b in BAD_TABLES]
)
def test_bad_configuration_in_toml_text_raises_too(data, pattern):
    # The same errors reach the user through TOML text.
    lines = []
    for section, body in data.items():
        lines.append(f"[{section}]")
        for key, value in body.items():
            lines.append(f"{key} = {_toml(value)}")
    with pytest.raises(ConfigError, match=pattern):
        loads_config("\n".join(lines))


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def test_replace_rejects_unknown_key_with_suggestion():
    with pytest.raises(ConfigError, match=r"run\.step: unknown key; did you mean run\.steps\?"):
        Config().replace(run={"step": 10})


def test_replace_rejects_unknown_section():
    # A misspelled section must not be dropped silently (replace rejects misspelled keys, and
    # config_from_dict rejects unknown sections).
    with pytest.raises(ConfigError, match=r"optimiser"):
        Config().replace(optimiser={"lam": [0.5]})


def test_invalid_toml_raises_config_error():
    with pytest.raises(ConfigError, match="not valid TOML"):
        loads_config("[run\nsteps = 3")


def test_good_values_are_normalised():
    cfg = config_from_dict(
        {
            "optimizer": {"lam": 0, "eta": [1, 0.5]},
            "task": {"observed": 1},
            "rank": {"threshold": 1},
        }
    )
    assert cfg.optimizer.lam == (0.0,) and isinstance(cfg.optimizer.lam[0], float)
    assert cfg.optimizer.eta == (0.5, 1.0)  # grid lists are kept sorted ascending
    assert cfg.task.observed == 1.0 and cfg.task.n_observed == 100
    assert cfg.rank.threshold == 1.0
    assert cfg.run.n_checkpoints == cfg.run.steps // cfg.run.record_every + 1


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.run.steps = 3  # type: ignore[misc]


def test_k_max_defaults_and_caps():
    assert Config().k_max == 8
    small = Config().replace(task={"d_out": 3, "d_in": 5}, network={"width": 4})
    assert small.k_max == 3
    assert Config().replace(rank={"k_max": 2}).k_max == 2


# ------------------------------------------------------------------ TOML round trip


def test_config_to_toml_round_trips():
    cfg = Config().replace(
        task={
            "d_out": 7,
            "d_in": 3,
            "rank": 2,
            "observed": 0.37,
            "singular_values": [2.5, 1e-3],
            "noise": 0.3,
            "seed": 11,
        },
        network={
            "depth": 4,
            "width": 6,
            "init": "balanced",
            "init_rank": 2,
            "init_scale": 0.7,
            "gd_tol": 1e-12,
        },
        optimizer={
            "kind": "label_noise",
            "batch_size": 2,
            "lam": [0.0, 1e-5, 3.25e-3],
            "eta": [0.1, 1e-7],
            "label_noise": 0.2,
        },
        run={
            "trajectories": 17,
            "steps": 900,
            "record_every": 300,
            "seed": 4,
            "chunk_size": 8,
            "dtype": "float64",
            "diverge_norm2": 1e20,
        },
        rank={"threshold": 3e-4, "safety": 0.25, "k_max": 3},
    )
    text = config_to_toml(cfg)
    back = loads_config(text)
    assert back == cfg
    assert config_to_toml(back) == text
    # Strings with quotes and backslashes survive too.
    odd = Config().replace(network={"init": "file", "init_file": 'C:\\dir\\"w".npz'})
    assert loads_config(config_to_toml(odd)) == odd
    assert loads_config(config_to_toml(Config())) == Config()


@pytest.mark.parametrize("name", ["w\tx.npz", "w\nx.npz", "w\x7fx.npz", "w\u00e9.npz"])
def test_config_to_toml_round_trips_any_file_name(name):
    # Every result file stores its config as TOML text; it must read back for any legal path.
    cfg = Config().replace(network={"init": "file", "init_file": name})
    assert loads_config(config_to_toml(cfg)) == cfg


def test_load_config_reads_file_and_reports_missing(tmp_path):
    path = tmp_path / "c.toml"
    cfg = Config().replace(run={"steps": 50, "record_every": 25})
    path.write_text(config_to_toml(cfg))
    assert load_config(path) == cfg
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="nope.toml: cannot read configuration") as info:
        load_config(missing)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ tasks


@pytest.mark.parametrize(
    ("d_out", "d_in", "observed"), [(5, 4, 0.6), (7, 3, 0.33), (4, 4, 1.0), (6, 9, 0.05)]
)
def test_task_observes_exactly_the_rounded_number_of_distinct_entries(d_out, d_in, observed):
    cfg = TaskConfig(d_out=d_out, d_in=d_in, rank=1, observed=observed, seed=3)
    task = make_task(cfg)
    n = int(round(observed * d_out * d_in))
    assert task.n_observed == n == cfg.n_observed
    assert task.rows.shape == task.cols.shape == task.y.shape == (n,)
    assert task.rows.dtype == task.cols.dtype == np.int32
    assert task.rows.min() >= 0 and task.rows.max() < d_out
    assert task.cols.min() >= 0 and task.cols.max() < d_in
    assert len(set(zip(task.rows.tolist(), task.cols.tolist(), strict=True))) == n
    assert task.shape == (d_out, d_in)
    np.testing.assert_array_equal(task.y, task.target[task.rows, task.cols])


def test_task_target_has_the_given_singular_values():
    sv = [3.0, 1.5, 0.2]
    task = make_task(TaskConfig(d_out=6, d_in=4, rank=3, observed=0.5, singular_values=sv, seed=5))
    got = np.linalg.svd(task.target, compute_uv=False)
    np.testing.assert_allclose(got[:3], sv, rtol=1e-13)
    assert got[3] < 1e-14


def test_task_gaussian_target_rank_and_norm():
    task = make_task(TaskConfig(d_out=6, d_in=5, rank=2, observed=0.5, target_norm=5.0, seed=5))
    got = np.linalg.svd(task.target, compute_uv=False)
    assert np.linalg.norm(task.target) == pytest.approx(5.0, rel=1e-13)
    assert got[1] > 1e-3 and np.all(got[2:] < 1e-13)


def test_task_is_deterministic_from_seed():
    cfg = TaskConfig(d_out=6, d_in=5, rank=2, observed=0.5, noise=0.1, seed=9)
    a, b = make_task(cfg), make_task(cfg)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = make_task(TaskConfig(d_out=6, d_in=5, rank=2, observed=0.5, noise=0.1, seed=10))
    assert not np.array_equal(a.target, c.target)


def test_task_noise_changes_y_but_not_target_or_entries():
    base = dict(d_out=6, d_in=5, rank=2, observed=0.5, singular_values=[2.0, 1.0], seed=9)
    clean = make_task(TaskConfig(**base))
    noisy = make_task(TaskConfig(**base, noise=0.3))
    np.testing.assert_array_equal(clean.target, noisy.target)
    np.testing.assert_array_equal(clean.rows, noisy.rows)
    np.testing.assert_array_equal(clean.cols, noisy.cols)
    diff = noisy.y - clean.y
    assert np.all(diff != 0)
    # The noise has std 0.3: 15 draws, sample std within a factor 2 of it (chi-square with 14
    # degrees of freedom: the interval holds with probability 0.998; the seed is fixed).
    assert 0.15 < np.std(diff) < 0.6
    np.testing.assert_array_equal(clean.y, clean.target[clean.rows, clean.cols])


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[2] / "examples").glob("*.toml")), ids=lambda p: p.name
)
def test_every_example_loads(path):
    """The shipped examples are valid configurations; the rare ones are accepted by `rare`."""
    from rankjump.rare_events import check_rare

    cfg = load_config(path)
    if path.name.startswith("rare_"):
        check_rare(cfg)  # raises ConfigError for what `rankjump rare` refuses
        assert cfg.rare.method in path.name
