"""Hostile ``rankjump rare`` configurations, class by class: values the configuration accepts and
the engine cannot run (refused up front, naming the field: exit code 2, one line, no file), and
p = 0 or undefined for a reason the result records and the table says (divergence, no basin)
instead of "died out"."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from support import TINY_RARE

from rankjump import ConfigError, config_to_toml, demo_config, load_config
from rankjump.cli.main import main
from rankjump.cli.rare_table import format_rare
from rankjump.config import KINDS
from rankjump.config.overrides import with_overrides
from rankjump.rare_events import Walk, ams, check_rare, commit_continue
from rankjump.rare_events.grid import rare
from rankjump.rare_events.network import NetworkProcess
from rankjump.rare_events.rate import rate_cell
from rankjump.rare_events.types import Reactive
from rankjump.simulation import plan

BASE = TINY_RARE  # tests/support.py
RATE = BASE.replace(rare={"method": "rate"})
GIB = 2**30
EXAMPLES = Path(__file__).parents[2] / "examples"


def _rare_cli(tmp_path, capsys, cfg, *sets):
    """`rankjump rare` on ``cfg`` with ``--set``s: (exit code, stdout, stderr lines, out path)."""
    path = tmp_path / "c.toml"
    path.write_text(config_to_toml(cfg))
    out = tmp_path / "rare.nc"
    argv = ["rare", str(path), "--out", str(out), "--quiet"]
    code = main(argv + [a for s in sets for a in ("--set", s)])
    printed, err = capsys.readouterr()
    return code, printed, err.strip().splitlines(), out


def _refused(tmp_path, capsys, cfg, *sets) -> str:
    """The one error line of a refused run (exit code 2, no traceback, no file)."""
    code, _, err, out = _rare_cli(tmp_path, capsys, cfg, *sets)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("rankjump rare: error: ")
    assert not out.exists()
    return err[0].removeprefix("rankjump rare: error: ")


@pytest.fixture
def memory(monkeypatch):
    """16 GiB available, whatever the machine has."""
    monkeypatch.setattr(plan, "_available_bytes", lambda: 16 * GIB)


# ------------------------------------------------- 6. values the engine would reject


@pytest.mark.parametrize("kick", ["1.0", "1"])
def test_a_kick_at_the_start_value_is_refused(tmp_path, capsys, kick):
    line = _refused(tmp_path, capsys, RATE, f"rare.kick={kick}")
    assert line.startswith("rare.kick = 1") and "must be < 1" in line


@pytest.mark.parametrize("basin", ["0.3", "0.2"])
def test_a_basin_at_or_below_the_kick_is_refused(tmp_path, capsys, basin):
    # A kick (a layer below 0.3 of its start) must leave the basin, or excursions never begin.
    line = _refused(tmp_path, capsys, BASE, f"rare.basin={basin}")
    assert line.startswith(f"rare.basin = {basin}: must be above rare.kick = 0.3"), line


@pytest.mark.parametrize("method", ["ams", "rate"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_is_accepted_or_refused_before_any_compute(kind, method):
    settings = {"label_noise": 0.05} if kind == "label_noise" else {}
    settings |= {"temperature": 1e-5} if kind == "langevin" else {}
    cfg = BASE.replace(optimizer={"kind": kind, **settings}, rare={"method": method})
    reason = KINDS[kind].rare or (KINDS[kind].rate if method == "rate" else None)
    if reason is None:
        check_rare(cfg)  # the runs themselves: tests/rare_events/test_rare_kinds.py
        return
    with pytest.raises(ConfigError) as info:
        check_rare(cfg)
    assert str(info.value).startswith(f"optimizer.kind = {kind!r}") and reason in str(info.value)


def test_gd_is_refused_by_the_command_with_its_reason(tmp_path, capsys):
    line = _refused(tmp_path, capsys, BASE, "optimizer.kind=gd")
    assert line.startswith("optimizer.kind = 'gd': rankjump rare refuses it: GD is deterministic")


@pytest.mark.parametrize(
    ("sets", "fields"),
    [
        (
            ["rare.replicas=100000", "rare.runs=100000", "rare.kill=2"],
            "rare.runs, rare.replicas, run.record_every: ",
        ),
        (["run.steps=1000000000", "run.record_every=1"], "rare.runs, rare.replicas, run."),
        (
            ["rare.method=rate", "rare.replicas=100000", "rare.runs=100000", "rare.kill=2"],
            "rare.runs, rare.replicas, rare.window_every, rare.commit_steps: ",
        ),
        (
            ["rare.runs=auto", "rare.max_runs=100000", "rare.replicas=100000", "rare.kill=2"],
            "rare.runs, rare.replicas, run.record_every: ",
        ),
    ],
)
def test_runs_too_large_for_memory_are_refused_naming_the_fields(
    tmp_path, capsys, memory, sets, fields
):
    line = _refused(tmp_path, capsys, BASE, *sets)
    assert line.startswith(fields) and "GiB is available" in line and "16 GiB" in line


def test_the_memory_estimate_leaves_ordinary_runs_alone(memory):
    # The shipped examples, and the demo's grid of 6 cells with the [rare] defaults (flux, runs
    # added until reliable) and with 40 runs of 100 replicas over 9 checkpoints, or over windows
    # of 501 checkpoints.
    for path in sorted(EXAMPLES.glob("rare_*.toml")):
        check_rare(load_config(path))
    cfg = demo_config().replace(run={"steps": 16000, "record_every": 2000})
    check_rare(cfg)
    for method in ("ams", "rate"):
        check_rare(cfg.replace(rare={"method": method, "runs": 40, "commit_steps": 20000}))
    check_rare(cfg.replace(rare={"method": "ams"}))  # up to 400 runs (rare.max_runs)


@pytest.mark.parametrize("commit", ["split", "continue"])
def test_a_commitment_off_its_stride_is_refused_before_any_compute(tmp_path, capsys, commit):
    # The kicked states are looked at every gcd(run.record_every, 100) = 100 steps: 150 steps
    # would run 100 (continue) or fail after the kick stage (split).
    line = _refused(tmp_path, capsys, RATE, f"rare.commit={commit}", "rare.commit_steps=150")
    assert line.startswith("rare.commit_steps = 150: must be a multiple of 100")
    check_rare(RATE.replace(rare={"commit": commit, "commit_steps": 300}))


def test_continuations_run_the_steps_they_are_charged_for():
    network = NetworkProcess(BASE.replace(run={"record_every": 100}), 0.002, 0.05)
    start = network.start(None, 2)
    react = Reactive(np.array([0, 1]), np.array([0, 0]), np.array([0.5, 0.5]), None, None)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="steps = 150: must be a multiple of the stride 100"):
        commit_continue(network, react, start, key, 150, 2, 2)
    out = commit_continue(network, react, start, key, 200, 3, 2)
    np.testing.assert_array_equal(out.cost, [3 * 200, 3 * 200])
    # No kicked state at all: nothing to continue, nothing charged.
    none = Reactive(*(np.zeros(0, t) for t in (np.int64, np.int64, float)), None, None)
    empty = jax.tree.map(lambda x: np.asarray(x)[:0], start)
    out = commit_continue(network, none, empty, key, 200, 3, 2)
    assert out.committed.tolist() == [0.0, 0.0] and out.cost.tolist() == [0, 0]


@pytest.mark.parametrize("field", ["window", "burn_in", "commit_steps"])
def test_rare_step_counts_past_the_counters_are_refused(field):
    with pytest.raises(ConfigError, match=rf"rare\.{field} = {2**31}: must be <= 2147483647"):
        BASE.replace(rare={field: 2**31})


# ------------------------------------------------- 7. p = 0 for what reason


def test_a_start_past_the_divergence_bound_is_refused_up_front(tmp_path, capsys):
    line = _refused(tmp_path, capsys, BASE, "run.diverge_norm2=1.0")
    assert line.startswith("run.diverge_norm2 = 1: the start (lam 0.002) has ||theta||^2 = 17")


def test_a_kick_the_threshold_makes_unreachable_is_refused_up_front(tmp_path, capsys):
    # The demo's threshold is 4.3e-4 times the start's vanishing values: a kick below that is a
    # fall below the threshold, which the score counts only in the target set.
    line = _refused(tmp_path, capsys, RATE, "rare.kick=1e-4")
    assert line.startswith("rare.kick = 0.0001: below the rank threshold's ratio 0.000425")


def test_runs_that_diverge_say_so(tmp_path, capsys):
    code, printed, err, out = _rare_cli(tmp_path, capsys, BASE, "optimizer.eta=2.0")
    assert code == 0 and out.exists()
    assert len(err) == 1 and err[0].startswith("warning: lam 0.002, eta 2: 8 paths of its runs")
    assert "diverged" in err[0] and "run.diverge_norm2 = 1e+08" in err[0]
    assert "p = 0 with no upper end at lam 0.002, eta 2: 8 paths of its runs diverged" in printed
    assert "tied" not in printed  # not the explanation of runs that die out on ties
    ds = rare(BASE.replace(optimizer={"eta": [2.0]}), progress=False).isel(lam=0, eta=0)
    assert ds["run_diverged"].values.tolist() == [4, 4] and bool(ds["run_extinct"].all())
    assert float(ds["p"]) == 0.0


def test_runs_that_die_out_on_ties_alone_are_told_apart_from_divergence():
    ds = rare(BASE, progress=False)
    assert int(ds["run_diverged"].sum()) == 0
    assert bool(ds["run_extinct"].all()) and float(ds["p"].squeeze()) == 0.0
    assert "all replicas tied" in format_rare(ds) and "diverged" not in format_rare(ds)


def test_a_cell_without_a_basin_is_reported_not_raised():
    # At eta 2 every basin replica diverges within the burn-in: no window can start.
    cfg = RATE.replace(optimizer={"eta": [0.05, 2.0]}, rare={"burn_in": 200})
    out = rate_cell(cfg, 0.002, 2.0, jax.random.PRNGKey(0))
    assert (out.basin_kept, out.basin_diverged) == (0, cfg.rare.pool)
    assert np.isnan(out.p) and np.isnan(out.committed).all() and not out.kicks.finished.any()


@pytest.mark.slow
def test_a_later_cell_without_a_basin_leaves_the_grid_whole(tmp_path, capsys):
    cfg = RATE.replace(optimizer={"eta": [0.05, 2.0]}, rare={"burn_in": 200})
    code, printed, err, out = _rare_cli(tmp_path, capsys, cfg)
    assert code == 0 and out.exists()
    assert err == [
        "warning: lam 0.002, eta 2: 8 of 8 basin replicas diverged (||theta||^2 above"
        " run.diverge_norm2 = 1e+08 or not finite); a diverged path never reaches the"
        " target"
    ]
    assert "p undefined at lam 0.002, eta 2: no basin replica was left" in printed
    ds = rare(cfg, progress=False).isel(lam=0)
    assert ds["basin_kept"].values.tolist() == [8, 0]
    assert ds["basin_diverged"].values.tolist() == [0, 8]
    assert np.isfinite(float(ds["p"][0])) and np.isnan(float(ds["p"][1]))


class _Fragile(Walk):
    """The walk, scored ``fail`` (NaN: diverged, or -inf: out of reach) once it falls to
    ``floor``."""

    floor: int = -3
    fail: float = np.nan

    def score(self, state):
        s = super().score(state)
        return np.where(np.asarray(state.position) <= self.floor, self.fail, s)


def _fragile(floor: int, fail: float) -> _Fragile:
    """The walk to 4, failing at ``floor`` with the score ``fail``."""
    return type("Fragile", (_Fragile,), {"floor": floor, "fail": fail})(4.0)


def test_diverged_paths_are_counted_per_run_without_changing_the_estimates():
    key, settings = jax.random.PRNGKey(3), dict(replicas=8, kill=2, runs=4, steps=12, every=2)
    nan, out_of_reach = (ams(_fragile(-3, fail), key, **settings) for fail in (np.nan, -np.inf))
    assert nan.diverged.sum() > 0 and out_of_reach.diverged.tolist() == [0] * 4
    # NaN stops a path as -inf does: the counts are all that differ.
    np.testing.assert_array_equal(nan.estimate, out_of_reach.estimate)
    np.testing.assert_array_equal(nan.levels, out_of_reach.levels)
    # Every first path diverged at the first checkpoint: all die at once, each counted once.
    gone = ams(_fragile(2, np.nan), key, **settings)
    assert gone.diverged.tolist() == [8] * 4 and gone.extinct.all()
    assert gone.estimate.tolist() == [0.0] * 4


# ------------------------------------------------- 10. configuration minors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rare.replicas=true", "rare.replicas = true: must be an integer"),
        ("run.steps=false", "run.steps = false: must be an integer"),
        ("optimizer.eta=[0.1, true]", "optimizer.eta = true: must be a number"),
        ("rare.budget=true", "rare.budget = true: must be a number"),
        ("RARE.kick=0.5", "[RARE]: unknown section; did you mean [rare]?"),
        ("Optimizer.eta=0.1", "[Optimizer]: unknown section; did you mean [optimizer]?"),
        ("rare.KICK=0.5", "rare.KICK: unknown key; did you mean rare.kick?"),
        ("run.Record_Every=10", "run.Record_Every: unknown key; did you mean run.record_every?"),
    ],
)
def test_bools_and_wrong_case_names_are_refused_with_the_field(text, message):
    with pytest.raises(ConfigError) as info:
        with_overrides(BASE, [text])
    assert str(info.value) == message


def test_a_bool_for_a_whole_number_is_refused_by_the_command(tmp_path, capsys):
    line = _refused(tmp_path, capsys, BASE, "rare.replicas=true")
    assert line == "rare.replicas = true: must be an integer"
