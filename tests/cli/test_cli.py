"""The command line: simulate, demo --quick, and bad input (one line, exit code 2, no file)."""

from __future__ import annotations

import pytest

from rankjump import load_result
from rankjump.cli.main import main
from rankjump.results.schema import REQUIRED_VARS

SMALL = """
[task]
d_out = 5
d_in = 4
rank = 2
observed = 0.6
singular_values = [2.0, 1.0]
[network]
depth = 3
width = 4
[optimizer]
lam = [0.001, 0.002]
eta = [0.02]
[run]
trajectories = 3
steps = 40
record_every = 20
"""


def _write(tmp_path, text, name="cfg.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_simulate_writes_a_result_file(tmp_path, capsys):
    out = tmp_path / "r.nc"
    assert main(["simulate", str(_write(tmp_path, SMALL)), "--out", str(out), "--quiet"]) == 0
    ds = load_result(out)
    assert all(v in ds for v in REQUIRED_VARS)
    assert dict(ds.sizes) == {"lam": 2, "eta": 1, "traj": 3, "checkpoint": 3, "layer": 3, "k": 4}
    assert "wrote" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (SMALL.replace("depth = 3", "depht = 3"), "network.depht"),
        (SMALL.replace("observed = 0.6", "observed = 1.5"), "task.observed"),
        (SMALL.replace("steps = 40", "steps = 41"), "run.record_every"),
        (SMALL + "\n[bogus]\nx = 1\n", "[bogus]"),
        ("[task\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_line_exit_2_no_file(tmp_path, capsys, text, field):
    out = tmp_path / "r.nc"
    assert main(["simulate", str(_write(tmp_path, text)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert field in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_missing_config_and_unwritable_output(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "r.nc")]) == 2
    assert "cannot read configuration" in capsys.readouterr().err
    cfg = _write(tmp_path, SMALL)
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "no" / "r.nc")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_stats_reads_what_simulate_wrote(tmp_path, capsys):
    out = tmp_path / "r.nc"
    main(["simulate", str(_write(tmp_path, SMALL)), "--out", str(out), "--quiet"])
    capsys.readouterr()
    assert main(["stats", str(out)]) == 0
    assert "lam = 0.001, eta = 0.02" in capsys.readouterr().out


def test_demo_quick(tmp_path, capsys):
    """The demo's claim at small size: GD converged to a rank above the truth; no upward move."""
    assert main(["demo", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "GD minimum: rank" in text and "One-way check" in text
    # The probability says whom it counts, and the chance of jumping or diverging stands beside it.
    assert "| not diverged) [95% CI]" in text and "or diverged" in text
    assert "every layer has at most r singular values above its threshold" in text
    ds = load_result(tmp_path / "result.nc")
    start = ds.attrs["start_rank"][0]
    assert start > 1  # rank-overestimating: the target has rank 1
    assert ds.attrs["gd_grad_norm"][0] <= 1e-10
    alive = ~ds["diverged"].values
    assert (ds["rank"].isel(checkpoint=0).values[alive] == start).all()
    final = ds["rank"].isel(checkpoint=-1).values[alive]
    assert final.min() < start  # some trajectory jumped down
    gd = load_result(tmp_path / "gd.nc")
    assert (gd["rank"].values == start).all()  # GD from the minimum stays
