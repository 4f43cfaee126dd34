"""The edge of stability: h_e = ||dA[i, j] / dtheta||^2 per observed entry, and eta_edge =
1 / max_e h_e, above which one SGD step on the stiffest entry amplifies its residual."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import np_entry_grads, small_config

from rankjump.dynamics import TaskArrays, new_hyper, new_state
from rankjump.dynamics.entrywise import sgd_update
from rankjump.model.network import entry_sharpness
from rankjump.model.tasks import Task
from rankjump.simulation.plan import plan_run
from rankjump.simulation.runs import simulate
from rankjump.simulation.starts import eta_edge, save_weights

SHAPES = {
    "depth 1": [(4, 6)],
    "depth 2": [(5, 6), (3, 5)],
    "depth 4": [(5, 6), (5, 5), (5, 5), (3, 5)],
}


def _network(np_rng, shapes, n_obs=12):
    ws = [np_rng.normal(size=s) for s in shapes]
    rows = np_rng.integers(0, shapes[-1][0], n_obs).astype(np.int32)
    cols = np_rng.integers(0, shapes[0][1], n_obs).astype(np.int32)
    return ws, Task(np.zeros((shapes[-1][0], shapes[0][1])), rows, cols, np.zeros(n_obs))


@pytest.mark.parametrize("shapes", SHAPES.values(), ids=SHAPES.keys())
def test_sharpness_is_the_squared_norm_of_the_entry_gradient(np_rng, shapes):
    ws, task = _network(np_rng, shapes)
    weights = tuple(map(jnp.asarray, ws))
    pairs = list(zip(task.rows, task.cols, strict=True))
    h = np.array([float(entry_sharpness(weights, i, j)[1]) for i, j in pairs])
    ref = np.array([sum(np.sum(g**2) for g in np_entry_grads(ws, i, j)) for i, j in pairs])
    np.testing.assert_allclose(h, ref, rtol=1e-12)
    assert eta_edge(ws, task) == pytest.approx(1.0 / ref.max(), rel=1e-12)


def test_a_single_matrix_has_edge_one(np_rng):
    ws, task = _network(np_rng, SHAPES["depth 1"])
    assert eta_edge(ws, task) == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_one_step_on_the_stiffest_entry_amplifies_its_residual_only_above_the_edge(np_rng, factor):
    """The project's own SGD step (no weight decay) on the stiffest entry, with a small residual:
    r -> (1 - 2 eta h) r to first order, so |r'| < |r| below eta_edge and > above it."""
    ws, task = _network(np_rng, SHAPES["depth 4"])
    ws = [0.7 * w for w in ws]
    edge = eta_edge(ws, task)
    weights = tuple(map(jnp.asarray, ws))
    pairs = zip(task.rows, task.cols, strict=True)
    h = np.array([float(entry_sharpness(weights, i, j)[1]) for i, j in pairs])
    e = int(np.argmax(h))
    pred = float(entry_sharpness(weights, task.rows[e], task.cols[e])[0])
    r0 = 1e-5
    y = np.full(len(h), pred - r0)  # entry e has residual r0
    arrays = TaskArrays(jnp.asarray(task.rows), jnp.asarray(task.cols), jnp.asarray(y))
    eta = factor * edge
    update = sgd_update(arrays, len(ws), 1, False)
    state = update(
        (jnp.array([e]), None),
        new_state(weights=weights),
        new_hyper(lam=0.0, eta=eta, dtype=jnp.float64),
    )
    after = float(entry_sharpness(state.weights, task.rows[e], task.cols[e])[0]) - y[e]
    assert after / r0 == pytest.approx(1 - 2 * eta * h[e], rel=1e-4)
    assert (abs(after) > r0) == (factor > 1)


def test_a_simulate_result_records_the_edge_of_its_start(tmp_path, np_rng):
    cfg = small_config()
    shapes = [(4, 4), (4, 4), (5, 4)]
    ws = [0.8 * np_rng.normal(size=s) for s in shapes]
    path = tmp_path / "w.npz"
    save_weights(path, ws)
    cfg = cfg.replace(network={"init": "file", "init_file": str(path)}, run={"steps": 50})
    ds = simulate(cfg, progress=False)
    task = plan_run(cfg).task
    assert np.ravel(ds.attrs["eta_edge"]).tolist() == pytest.approx([eta_edge(ws, task)], rel=1e-12)
