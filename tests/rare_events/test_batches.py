"""Runs added in batches until a cell is reliable (rankjump.rare_events.batches, rare.runs =
"auto"): batches equal one call of all their runs, each stop rule stops where it says, and a
network grid of such cells pads its runs and says why each stopped."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from rankjump import demo_config, rare
from rankjump.cli.main import main
from rankjump.rare_events import STOPS, Walk, ams, concat_results, in_batches, merge_etas
from rankjump.stats import diagnose

KEY = jax.random.PRNGKey(7)
WALK = dict(replicas=16, kill=2, steps=40, every=4)


def _auto(**change):
    settings = {"runs": "auto", "auto_batch": 2, "max_runs": 6, "budget": None, "replicas": 16}
    return SimpleNamespace(**{**settings, **change})


def _walk_batches(process, rare):
    def run(b, first, count):
        return ams(process, KEY, **WALK, runs=count, first_run=first)

    return in_batches(run, lambda parts: concat_results(parts, 0.95), rare)


def test_batches_equal_one_call_of_all_their_runs():
    process = Walk(6)
    parts, stop = _walk_batches(process, _auto())
    assert stop == "max_runs" and [len(p.estimate) for p in parts] == [2, 2, 2]
    joined = concat_results(parts, 0.95)
    whole = ams(process, KEY, **WALK, runs=6)
    for field in ("estimate", "finished", "extinct", "iterations", "cost"):
        np.testing.assert_array_equal(getattr(joined, field), getattr(whole, field), field)
    q = whole.killed.shape[1]
    np.testing.assert_array_equal(joined.killed[:, :q], whole.killed)
    assert not joined.killed[:, q:].any()  # padding, where a batch ran more iterations
    assert joined.summary == whole.summary
    order = np.lexsort((joined.reactive.replica, joined.reactive.run))
    want = np.lexsort((whole.reactive.replica, whole.reactive.run))
    np.testing.assert_array_equal(joined.reactive.run[order], whole.reactive.run[want])
    np.testing.assert_array_equal(joined.reactive.weight[order], whole.reactive.weight[want])
    np.testing.assert_array_equal(
        joined.reactive.states.position[order], whole.reactive.states.position[want]
    )


def test_a_fixed_number_of_runs_is_one_call():
    parts, stop = _walk_batches(Walk(6), _auto(runs=4))
    assert stop == "fixed" and len(parts) == 1 and len(parts[0].estimate) == 4


def test_batches_stop_at_the_first_batch_that_passes():
    """A common event (the walk above 2 within 40 steps, p about 0.75) passes the diagnostics
    once there are 20 equal-ish runs: the loop stops at the first batch count that passes."""
    rare = _auto(auto_batch=5, max_runs=200)
    parts, stop = _walk_batches(Walk(2), rare)
    assert stop == "reliable"
    estimates = np.concatenate([p.estimate for p in parts])
    assert diagnose(estimates, 16).reliable
    assert not diagnose(estimates[:-5], 16).reliable  # one batch fewer did not pass
    assert 20 <= len(estimates) < 200


def test_a_budget_stops_the_batches():
    one = ams(Walk(6), KEY, **WALK, runs=2).cost.sum()
    parts, stop = _walk_batches(Walk(6), _auto(max_runs=100, budget=1.5 * one))
    assert stop == "budget" and len(parts) == 2  # the second batch passed the budget


def test_a_grid_of_auto_cells_records_its_runs_and_why_they_stopped(tmp_path, capsys):
    cfg = demo_config().replace(
        optimizer={"eta": [0.18, 0.19]},
        run={"steps": 4000, "record_every": 1000},
        rare={
            "method": "ams",
            "replicas": 8,
            "kill": 1,
            "runs": "auto",
            "auto_batch": 2,
            "max_runs": 4,
        },
    )
    ds = rare(cfg, progress=False)
    assert ds.sizes["run"] == 4 and bool(ds["run_made"].all())
    assert (ds["runs_stop"] == STOPS.index("max_runs")).all()  # four runs never pass the flag
    fixed = rare(cfg.replace(rare={"runs": 4}), progress=False)
    np.testing.assert_array_equal(ds["run_estimate"], fixed["run_estimate"])  # the same keys
    assert (fixed["runs_stop"] == STOPS.index("fixed")).all()
    # Parts of the eta grid run apart (each cell's key follows its place in its part) with a
    # budget between their first batches' costs: one part stops after its first batch, the
    # other goes on; merge_etas pads the shorter part's runs, marked as not made.
    parts = [cfg.replace(optimizer={"eta": [eta]}) for eta in (0.18, 0.19)]
    first = [
        float(rare(c.replace(rare={"runs": 2}), progress=False)["run_cost"].sum()) for c in parts
    ]
    assert first[0] != first[1]
    budget = {"budget": sum(first) / 2}
    both = merge_etas([rare(c.replace(rare=budget), progress=False) for c in parts])
    made = both["run_made"].sum("run").values.ravel()
    assert both.sizes["run"] == 4 and sorted(made) == [2, 4]
    short = both.isel(eta=int(np.argmin(made)))
    assert np.isnan(short["run_estimate"].values[0, 2:]).all()
    assert not short["run_finished"].values[0, 2:].any()
    assert STOPS[int(short["runs_stop"][0])] == "budget"
    path = tmp_path / "both.nc"
    both.to_netcdf(path, engine="h5netcdf")
    assert main(["stats", str(path), "--json"]) == 0
    cells = json.loads(capsys.readouterr().out)["cells"]
    assert [x["runs_made"] for x in cells] == made.tolist()
    assert main(["stats", str(path)]) == 0
    rows = capsys.readouterr().out.splitlines()[2:4]  # the file's name, the header, the cells
    shown = [int(re.search(r" \d+/(\d+) ", row).group(1)) for row in rows]  # runs done / made
    assert shown == made.tolist()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"runs": "some"}, "rare.runs = 'some': must be \"auto\" or an integer"),
        ({"runs": 1}, "rare.runs = 1: must be >= 2"),
        ({"max_runs": 1}, "rare.max_runs = 1: must be >= 2"),
        ({"budget": 0.0}, "rare.budget = 0.0: must be > 0"),
    ],
)
def test_bad_auto_settings_are_refused(change, message):
    from rankjump import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        demo_config().replace(rare=change)
