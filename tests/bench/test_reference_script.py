"""benchmarks/reference.py: a plain Monte Carlo reference run in jobs equals `rankjump simulate`
of the same trajectories, and grows by asking for more trajectories without redoing any."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import rankjump as rj
from rankjump.config import demo_config

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import reference  # noqa: E402

# The demo's minimum at eta 0.18, where jumps are frequent: P(T = 12,000) near 0.02.
CELL = demo_config().replace(
    optimizer={"eta": [0.18], "lam": [0.002]},
    run={"steps": 12000, "record_every": 1000, "trajectories": 768, "chunk_size": 256},
)


def _run(tmp_path, cfg, *extra):
    path = tmp_path / "cell.toml"
    path.write_text(rj.config_to_toml(cfg))
    ledger = tmp_path / "ledger.json"
    argv = [str(path), "--ledger", str(ledger), "--job-trajectories", "512", *extra]
    assert reference.main(argv) == 0
    return json.loads(ledger.read_text())


def test_a_reference_grows_to_what_simulate_gives_for_all_its_trajectories(tmp_path):
    small = _run(tmp_path, CELL)
    assert [j["trajectories"] for j in small["jobs"].values()] == [512, 256]  # the last cut short
    first = dict(small["jobs"]["0"])
    grown = _run(tmp_path, CELL.replace(run={"trajectories": 1536}))
    assert [j["trajectories"] for j in grown["jobs"].values()] == [512, 512, 512]
    assert grown["jobs"]["0"] == first  # kept, not redone
    assert rj.loads_config(grown["config"]).run.trajectories == 1536
    # Every entry counted, against simulate of the same 1,536 trajectories.
    sim = rj.simulate(CELL.replace(run={"trajectories": 1536}), progress=False)
    rank = sim["rank"].isel(lam=0, eta=0).values[:, 1:]
    alive = ~sim["diverged"].isel(lam=0, eta=0).values.astype(bool)
    target = int(grown["target_rank"])
    inside = (rank >= 0) & (rank <= target)
    first_entry = np.argmax(inside, axis=1)[inside.any(axis=1) & alive]
    want = np.cumsum(np.bincount(first_entry, minlength=rank.shape[1]))
    totals = reference.totals(grown)
    assert want[-1] > 10  # the cell has entries: the comparison bites
    np.testing.assert_array_equal(totals["cumulative"], want)
    assert totals["trajectories"] == 1536 and totals["diverged"] == int((~alive).sum())


def test_a_reference_refuses_another_cell_and_never_shrinks(tmp_path):
    _run(tmp_path, CELL)
    with pytest.raises(SystemExit, match="another configuration's reference"):
        _run(tmp_path, CELL.replace(optimizer={"eta": [0.17]}))
    with pytest.raises(SystemExit, match="run.trajectories = 512 is below the 768 .* only grows"):
        _run(tmp_path, CELL.replace(run={"trajectories": 512}))
