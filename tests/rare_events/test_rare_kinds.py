"""Every dynamics kind in ``rankjump rare``: run on the kind's own dynamics by the methods that
accept it, or refused before any compute, naming the kind and the reason
(:data:`rankjump.config.kinds.KINDS`)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from support import TINY_RARE

from rankjump import ConfigError, rare, simulate
from rankjump.config import KINDS
from rankjump.dynamics import TaskArrays, materialize
from rankjump.kernel import split_lane_key
from rankjump.model import data_loss
from rankjump.rare_events import NetworkProcess

BASE = TINY_RARE  # tests/support.py
SETTINGS = {
    "label_noise": {"label_noise": 0.05},
    "langevin": {"temperature": 1e-5},
    "sgd_momentum": {"momentum": 0.5},
}
ACCEPTED = [kind for kind, info in KINDS.items() if info.rare is None]


def _cfg(kind: str, method: str):
    return BASE.replace(optimizer={"kind": kind, **SETTINGS.get(kind, {})}, rare={"method": method})


# Every kind with each method, except the runs of kinds whose state is SGD's own (sgd and label
# noise: tests/rare_events/test_rare.py and test_rare_rate.py run both methods on SGD, and the
# test below steps label noise through the rare process).
CASES = [
    (kind, method)
    for kind in KINDS
    for method in ("ams", "rate", "flux")
    if kind not in ("sgd", "label_noise")
]


@pytest.mark.parametrize(("kind", "method"), CASES)
def test_every_kind_runs_in_rare_or_is_refused_up_front(kind, method):
    cfg = _cfg(kind, method)
    reason = KINDS[kind].rare or (KINDS[kind].rate if method == "rate" else None)
    if reason is not None:
        with pytest.raises(ConfigError) as info:
            rare(cfg, progress=False)
        message = str(info.value)
        assert message.startswith(f"optimizer.kind = {kind!r}") and reason in message
        assert "\n" not in message
        return
    ds = rare(cfg, progress=False).isel(lam=0, eta=0)
    assert bool(ds["run_finished"].all())
    assert 0.0 <= float(ds["p"]) <= 1.0
    assert np.all(ds["run_cost"].values > 0)


@pytest.mark.parametrize("kind", ACCEPTED)
def test_the_rare_process_steps_the_configured_dynamics(kind):
    """A replica advanced by the rare process with trajectory 0's dynamics key follows the path
    ``simulate`` gives trajectory 0 from the same start: the kind's step, its noise and its
    optimizer state (momentum's velocity) are those of the simulator."""
    cfg = _cfg(kind, "ams")
    sim = simulate(cfg, progress=False).isel(lam=0, eta=0, traj=0)
    process = NetworkProcess(cfg, cfg.optimizer.lam[0], cfg.optimizer.eta[0])
    _, key_dyn = split_lane_key(jax.random.fold_in(jax.random.PRNGKey(cfg.run.seed), 0))
    state = process.advance(key_dyn[None], process.start(None, 1), 0, cfg.run.steps)
    weights = tuple(w[0] for w in materialize(state._replace(scale=state.scale[:, None, None])))
    task = TaskArrays(*process.arrays)
    got = float(data_loss(weights, task.rows, task.cols, task.y))
    want = sim["data_loss"].values
    assert abs(want[-1] - want[0]) > 1e-6 * want[0]  # the path moved: a wrong step would show
    assert got == pytest.approx(want[-1], rel=1e-9)
