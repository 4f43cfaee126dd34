"""Tests of rankjump.dynamics against a NumPy float64 reference of docs/theory.md's update.

The reference implements, for a batch of B sampled observed entries,

    theta <- (1 - 2 eta lam) theta - (2 eta / B) sum_batch r_ij grad A[i, j]

forming A and grad A[i, j] = (W_L..W_{l+1})^T e_i (W_{l-1}..W_1 e_j)^T with explicit NumPy matrix
products; it shares no code with the library. GD is the same step with the mean over all observed
entries, label-noise SGD uses targets y + label_noise * xi, Langevin adds sqrt(2 eta T) xi.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import np_entry_grads, np_product
from scipy import stats

from rankjump import dynamics
from rankjump.config import TaskConfig
from rankjump.model.network import data_loss, layer_shapes
from rankjump.model.tasks import make_task

LAM, ETA, LABEL_NOISE, TEMPERATURE, MOMENTUM = 0.05, 0.1, 0.3, 0.02, 0.7
N_STEPS = 6
# (d_out, d_in, width, depth): never square.
GEOMETRIES = [(3, 5, 4, 1), (5, 3, 4, 2), (4, 6, 3, 3), (5, 4, 3, 4)]


# ------------------------------------------------------------------ NumPy reference


def _np_step(ws, rows, cols, y, lam, eta, noise=None, temperature=0.0):
    """One step of docs/theory.md's update on the given (batch of) entries, in float64."""
    a = np_product(ws)
    new = [(1.0 - 2.0 * eta * lam) * w for w in ws]
    b = len(rows)
    for i, j, t in zip(rows, cols, y, strict=True):
        r = a[i, j] - t
        for l, g in enumerate(np_entry_grads(ws, i, j)):
            new[l] -= (2.0 * eta / b) * r * g
    if noise is not None:
        amp = np.sqrt(2.0 * eta * temperature)
        new = [w + amp * x for w, x in zip(new, noise, strict=True)]
    return new


# ------------------------------------------------------------------ helpers


def _setup(geometry, dtype=jnp.float64, seed=0):
    d_out, d_in, width, depth = geometry
    task = make_task(TaskConfig(d_out=d_out, d_in=d_in, rank=1, observed=0.7, noise=0.1, seed=seed))
    shapes = layer_shapes(d_out, d_in, width, depth)
    rng = np.random.default_rng(100 + seed)
    ws_np = [rng.standard_normal(s) / np.sqrt(s[1]) for s in shapes]
    arrays = dynamics.TaskArrays.of(task, dtype)
    hyper = dynamics.new_hyper(
        lam=LAM,
        eta=ETA,
        label_noise=LABEL_NOISE,
        temperature=TEMPERATURE,
        momentum=MOMENTUM,
        dtype=dtype,
    )
    return task, shapes, ws_np, arrays, hyper


def _run(dyn, ws_np, hyper, key, dtype=jnp.float64, n=N_STEPS):
    """n steps of the kernel from ws_np (lazy scale never folded); samples and materialized path."""
    samples = jax.jit(dyn.draw, static_argnums=1)(key, n)
    update = jax.jit(dyn.update)
    state = dyn.init(tuple(jnp.asarray(w, dtype) for w in ws_np))
    path = []
    for k in range(n):
        state = update(jax.tree_util.tree_map(lambda x, k=k: x[k], samples), state, hyper)
        path.append(dynamics.materialize(state))
    return samples, state, path


def _assert_weights_close(got, want, rtol, atol):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(np.asarray(g), w, rtol=rtol, atol=atol)


# ------------------------------------------------------------------ fast kernel vs NumPy


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
def test_sgd_kernel_equals_numpy_reference(geometry, batch):
    task, shapes, ws_np, arrays, hyper = _setup(geometry)
    dyn = dynamics.make_dynamics("sgd", arrays, shapes, batch, jnp.float64)
    samples, state, path = _run(dyn, ws_np, hyper, jax.random.PRNGKey(7))
    idx, xi = (np.asarray(x) for x in samples)
    assert idx.shape == (N_STEPS, batch) and xi.shape == (N_STEPS, 0)
    ref = [w.copy() for w in ws_np]
    for k in range(N_STEPS):
        b = idx[k]
        ref = _np_step(ref, task.rows[b], task.cols[b], task.y[b], LAM, ETA)
        _assert_weights_close(path[k], ref, rtol=1e-12, atol=1e-13)
    # The lazy scale really is in use: it is (1 - 2 eta lam)^steps, not 1.
    assert float(state.scale) == pytest.approx((1 - 2 * ETA * LAM) ** N_STEPS, rel=1e-14)
    assert int(state.step) == N_STEPS
    # A repeated entry in one batch counts twice (sampling with replacement).
    if batch == 3:
        dup = np.array([0, 0, 1])
        sample = (jnp.asarray(dup, jnp.int32), jnp.zeros((0,)))
        got = dynamics.materialize(
            jax.jit(dyn.update)(sample, dyn.init(tuple(jnp.asarray(w) for w in ws_np)), hyper)
        )
        want = _np_step(ws_np, task.rows[dup], task.cols[dup], task.y[dup], LAM, ETA)
        _assert_weights_close(got, want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(
    "geometry", [GEOMETRIES[0], GEOMETRIES[2]], ids=lambda g: "x".join(map(str, g))
)
def test_label_noise_kernel_equals_numpy_reference(geometry):
    task, shapes, ws_np, arrays, hyper = _setup(geometry)
    dyn = dynamics.make_dynamics("label_noise", arrays, shapes, 3, jnp.float64)
    samples, _, path = _run(dyn, ws_np, hyper, jax.random.PRNGKey(8))
    idx, xi = (np.asarray(x) for x in samples)
    assert xi.shape == (N_STEPS, 3) and np.all(xi != 0)
    ref = [w.copy() for w in ws_np]
    for k in range(N_STEPS):
        b = idx[k]
        ref = _np_step(ref, task.rows[b], task.cols[b], task.y[b] + LABEL_NOISE * xi[k], LAM, ETA)
        _assert_weights_close(path[k], ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ["gd", "langevin"])
@pytest.mark.parametrize(
    "geometry", [GEOMETRIES[1], GEOMETRIES[3]], ids=lambda g: "x".join(map(str, g))
)
def test_dense_kernels_equal_numpy_reference(geometry, kind):
    task, shapes, ws_np, arrays, hyper = _setup(geometry)
    dyn = dynamics.make_dynamics(kind, arrays, shapes, 1, jnp.float64)
    samples, _, path = _run(dyn, ws_np, hyper, jax.random.PRNGKey(9))
    ref = [w.copy() for w in ws_np]
    for k in range(N_STEPS):
        noise = None
        if kind == "langevin":
            noise = [np.asarray(x[k]) for x in samples]
            assert [x.shape for x in noise] == list(shapes)
        ref = _np_step(ref, task.rows, task.cols, task.y, LAM, ETA, noise, TEMPERATURE)
        _assert_weights_close(path[k], ref, rtol=1e-12, atol=1e-13)


def test_float32_kernel_stays_float32_and_matches_reference():
    task, shapes, ws_np, arrays, hyper = _setup(GEOMETRIES[3], jnp.float32)
    dyn = dynamics.make_dynamics("sgd", arrays, shapes, 2, jnp.float32)
    samples, state, path = _run(dyn, ws_np, hyper, jax.random.PRNGKey(10), jnp.float32)
    assert state.scale.dtype == jnp.float32
    assert all(w.dtype == jnp.float32 for w in state.weights)
    idx = np.asarray(samples[0])
    ref = [w.copy() for w in ws_np]
    for k in range(N_STEPS):
        ref = _np_step(ref, task.rows[idx[k]], task.cols[idx[k]], task.y[idx[k]], LAM, ETA)
    _assert_weights_close(path[-1], ref, rtol=1e-5, atol=1e-6)


def test_renormalize_is_exact_and_does_not_change_the_path():
    # Moving the lazy scale's power of two into the weights is exact, and the step is exactly
    # equivariant under it: renormalizing after every step gives the unrenormalized path bit for
    # bit (the simulator relies on this: when it renormalizes must not change a trajectory).
    _, shapes, ws_np, arrays, hyper = _setup(GEOMETRIES[2])
    for batch in (1, BIG_BATCH):  # the lanes-last and the vmapped (gather) entry-wise steps
        dyn = dynamics.make_dynamics("sgd", arrays, shapes, batch, jnp.float64)
        n_steps = 80  # the scale decays by 0.99 a step: below 1/2 after 69
        samples = dyn.draw(jax.random.PRNGKey(12), n_steps)
        update = jax.jit(dyn.update)
        lazy = renormed = dyn.init(tuple(jnp.asarray(w) for w in ws_np))
        for k in range(n_steps):
            sample = jax.tree_util.tree_map(lambda x, k=k: x[k], samples)
            lazy = update(sample, lazy, hyper)
            renormed = dynamics.renormalize(update(sample, renormed, hyper))
            assert 0.5 <= float(renormed.scale) < 1.0
        assert float(lazy.scale) < 0.5  # the scale did decay below the renormalized range
        for got, want in zip(
            dynamics.materialize(renormed), dynamics.materialize(lazy), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_draw_steps_depends_only_on_key_and_step():
    # The sample of step n depends only on the key and n (counter-based): the same whichever
    # steps are drawn with it, and different for different steps.
    _, shapes, _, arrays, _ = _setup(GEOMETRIES[0])
    dyn = dynamics.make_dynamics("label_noise", arrays, shapes, 3, jnp.float64)
    key = jax.random.PRNGKey(4)
    block = dyn.draw_steps(key, jnp.arange(100, 132))
    alone = dyn.draw_steps(key, jnp.array([117]))
    for got, want in zip(alone, block, strict=True):
        np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[17]))
    idx = np.asarray(block[0])
    assert len({tuple(row) for row in idx}) > 16  # steps draw different entries


# ------------------------------------------------------------------ fast kernel vs optax chain


# Batches up to dynamics.LANES_LAST_MAX_BATCH step lanes-last; larger ones by gathers (vmap).
BIG_BATCH = dynamics.LANES_LAST_MAX_BATCH + 4
OPTAX_CASES = [(g, 3, "sgd") for g in GEOMETRIES] + [
    (GEOMETRIES[2], 1, "sgd"),
    (GEOMETRIES[0], 1, "label_noise"),
    (GEOMETRIES[3], 3, "label_noise"),
    (GEOMETRIES[0], BIG_BATCH, "sgd"),
    (GEOMETRIES[3], BIG_BATCH, "label_noise"),
    (GEOMETRIES[2], 3, "sgd_momentum"),
    (GEOMETRIES[0], 1, "sgd_momentum"),
]


@pytest.mark.parametrize(
    ("geometry", "batch", "kind"),
    OPTAX_CASES,
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_fast_kernel_equals_optax_chain(geometry, batch, kind):
    # The generic update: the optax chain (weight decay, then sgd with momentum for
    # sgd_momentum) on the autodiff gradient of the batch's data loss, its state carried.
    _, shapes, ws_np, arrays, hyper = _setup(geometry, seed=1)
    dyn = dynamics.make_dynamics(kind, arrays, shapes, batch, jnp.float64)
    samples, _, path = _run(dyn, ws_np, hyper, jax.random.PRNGKey(12))
    opt = dynamics.optax_chain(LAM, ETA, MOMENTUM if kind == "sgd_momentum" else None)

    @jax.jit
    def generic(w, opt_state, idx, xi):
        y = arrays.y[idx]
        if kind == "label_noise":
            y = y + LABEL_NOISE * xi
        grads = jax.grad(data_loss)(w, arrays.rows[idx], arrays.cols[idx], y)
        updates, opt_state = opt.update(grads, opt_state, w)
        return optax.apply_updates(w, updates), opt_state

    w = tuple(jnp.asarray(x) for x in ws_np)
    opt_state = opt.init(w)
    for k in range(N_STEPS):
        w, opt_state = generic(w, opt_state, samples[0][k], samples[1][k])
        _assert_weights_close(path[k], [np.asarray(x) for x in w], rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------ fast equal vs vmap


def _lanes(n, shapes, seed, dtype=jnp.float64):
    """n networks' weights (lanes first) and hyperparameters, eta and lam varying by lane."""
    rng = np.random.default_rng(seed)
    weights = tuple(rng.standard_normal((n, *s)) / np.sqrt(s[1]) for s in shapes)
    hyper = dynamics.new_hyper(
        lam=np.linspace(0.01, 0.05, n),
        eta=np.linspace(0.05, 0.1, n),
        label_noise=LABEL_NOISE,
        temperature=TEMPERATURE,
        momentum=np.linspace(0.0, 0.9, n),
        dtype=dtype,
        lanes=(n,),
    )
    return tuple(jnp.asarray(w, dtype) for w in weights), hyper


@pytest.mark.parametrize("kind", sorted(dynamics.BUILDERS))
@pytest.mark.parametrize(
    "geometry", [GEOMETRIES[0], GEOMETRIES[3]], ids=lambda g: "x".join(map(str, g))
)
def test_chunk_step_equals_vmap_of_one_network_step(kind, geometry):
    # update_lanes (the lanes-last fast equal where the kind has one) equals jax.vmap of the
    # one-network definition, float64, to 1e-12 relative (the two sum in different orders).
    _, shapes, _, arrays, _ = _setup(geometry)
    n, batch, steps = 5, 3, 8
    dyn = dynamics.make_dynamics(kind, arrays, shapes, batch, jnp.float64)
    assert dyn.lanes_last == (kind in ("sgd", "label_noise", "sgd_momentum"))
    weights, hyper = _lanes(n, shapes, seed=3)
    keys = jax.random.split(jax.random.PRNGKey(21), n)
    samples = jax.vmap(lambda k: dyn.draw(k, steps))(keys)  # (lanes, steps, ...)
    one = jax.jit(jax.vmap(dyn.update))
    chunk = jax.jit(dyn.update_lanes)

    def last(tree):  # lanes first -> lanes last
        return jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, 0, -1), tree)

    def first(tree):
        return jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, -1, 0), tree)

    ref = jax.vmap(dyn.init)(weights)
    fast = last(ref) if dyn.lanes_last else ref
    hyper_fast = last(hyper) if dyn.lanes_last else hyper
    for k in range(steps):
        sample = jax.tree_util.tree_map(lambda x, k=k: x[:, k], samples)
        ref = one(sample, ref, hyper)
        fast = chunk(last(sample) if dyn.lanes_last else sample, fast, hyper_fast)
    got = first(fast) if dyn.lanes_last else fast
    want_w = jax.vmap(dynamics.materialize)(ref)
    got_w = jax.vmap(dynamics.materialize)(got)
    for a, b in zip(got_w, want_w, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
    for a, b in zip(
        jax.tree_util.tree_leaves(got.opt), jax.tree_util.tree_leaves(ref.opt), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(np.asarray(got.step), steps)
    assert not np.allclose(np.asarray(want_w[0]), np.asarray(weights[0]))


# ------------------------------------------------------------------ momentum, optimizer state


def _np_heavy_ball(ws, v, rows, cols, y, lam, eta, beta):
    """One heavy-ball step in NumPy: G = (2/B) sum r grad A[i, j] + 2 lam W, v <- beta v + G,
    W <- W - eta v."""
    a = np_product(ws)
    grads = [2.0 * lam * w for w in ws]
    for i, j, t in zip(rows, cols, y, strict=True):
        for l, g in enumerate(np_entry_grads(ws, i, j)):
            grads[l] += (2.0 / len(rows)) * (a[i, j] - t) * g
    v = [beta * vl + gl for vl, gl in zip(v, grads, strict=True)]
    return [w - eta * vl for w, vl in zip(ws, v, strict=True)], v


@pytest.mark.parametrize("batch", [1, 3, BIG_BATCH])
@pytest.mark.parametrize(
    "geometry", [GEOMETRIES[0], GEOMETRIES[3]], ids=lambda g: "x".join(map(str, g))
)
def test_momentum_kernel_equals_numpy_reference(geometry, batch):
    task, shapes, ws_np, arrays, hyper = _setup(geometry)
    dyn = dynamics.make_dynamics("sgd_momentum", arrays, shapes, batch, jnp.float64)
    samples, state, path = _run(dyn, ws_np, hyper, jax.random.PRNGKey(17))
    idx = np.asarray(samples[0])
    ref, v = [w.copy() for w in ws_np], [np.zeros_like(w) for w in ws_np]
    for k in range(N_STEPS):
        b = idx[k]
        ref, v = _np_heavy_ball(ref, v, task.rows[b], task.cols[b], task.y[b], LAM, ETA, MOMENTUM)
        _assert_weights_close(path[k], ref, rtol=1e-12, atol=1e-13)
    _assert_weights_close(state.opt, v, rtol=1e-12, atol=1e-13)  # the velocity is carried


def test_momentum_float32_stays_float32():
    _, shapes, _, arrays, _ = _setup(GEOMETRIES[3], jnp.float32)
    for batch in (2, BIG_BATCH):  # lanes-last and vmapped chunks alike
        dyn = dynamics.make_dynamics("sgd_momentum", arrays, shapes, batch, jnp.float32)
        weights, hyper_lanes = _lanes(3, shapes, seed=5, dtype=jnp.float32)
        state = jax.vmap(dyn.init)(weights)
        keys = jax.random.split(jax.random.PRNGKey(0), 3)
        sample = jax.vmap(lambda k, d=dyn: d.draw(k, 1))(keys)
        sample = jax.tree_util.tree_map(lambda x: x[:, 0], sample)
        if dyn.lanes_last:
            state, sample, hyper_lanes = (
                jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, 0, -1), t)
                for t in (state, sample, hyper_lanes)
            )
        out = jax.jit(dyn.update_lanes)(sample, state, hyper_lanes)
        leaves = [*out.weights, out.scale, *out.opt]
        assert all(x.dtype == jnp.float32 for x in leaves), batch


def test_momentum_zero_is_sgd():
    # Same draws (the streams of plain SGD), and with momentum 0 the same steps.
    _, shapes, ws_np, arrays, hyper = _setup(GEOMETRIES[2])
    hyper = hyper._replace(momentum=jnp.zeros(()))
    paths = {}
    for kind in ("sgd", "sgd_momentum"):
        dyn = dynamics.make_dynamics(kind, arrays, shapes, 2, jnp.float64)
        paths[kind] = _run(dyn, ws_np, hyper, jax.random.PRNGKey(18))
    np.testing.assert_array_equal(paths["sgd"][0][0], paths["sgd_momentum"][0][0])
    for a, b in zip(paths["sgd"][2], paths["sgd_momentum"][2], strict=True):
        _assert_weights_close(a, [np.asarray(x) for x in b], rtol=1e-12, atol=1e-13)


def test_dense_step_carries_a_stateful_chain():
    # The dense step applies the optax chain with the state found in State.opt and returns its
    # successor: a chain with momentum is heavy-ball GD, not GD (which it would be if its state
    # were restarted at every step). A state without it is refused, not silently restarted.
    task, shapes, ws_np, arrays, hyper = _setup(GEOMETRIES[3])

    def chain(h):
        return dynamics.optax_chain(h.lam, h.eta, MOMENTUM)

    dyn = dynamics.dense_dynamics(arrays, shapes, jnp.float64, chain=chain)
    _, state, path = _run(dyn, ws_np, hyper, jax.random.PRNGKey(19))
    ref, v = [w.copy() for w in ws_np], [np.zeros_like(w) for w in ws_np]
    gd = [w.copy() for w in ws_np]
    for k in range(N_STEPS):
        ref, v = _np_heavy_ball(ref, v, task.rows, task.cols, task.y, LAM, ETA, MOMENTUM)
        gd = _np_step(gd, task.rows, task.cols, task.y, LAM, ETA)
        _assert_weights_close(path[k], ref, rtol=1e-12, atol=1e-13)
    assert not np.allclose(ref[0], gd[0], rtol=1e-6)  # momentum made a difference
    assert jax.tree_util.tree_leaves(state.opt)
    stateless = dynamics.new_state(weights=tuple(jnp.asarray(w) for w in ws_np))
    with pytest.raises(ValueError, match="State.opt"):
        dyn.update(None, stateless, hyper)
    # The default chain keeps no state: GD's State.opt is empty.
    gd_dyn = dynamics.make_dynamics("gd", arrays, shapes, 1, jnp.float64)
    assert gd_dyn.init(stateless.weights).opt == ()


def test_every_table_of_kinds_names_every_kind():
    """One table of kinds (rankjump.config.kinds.KINDS): the configuration's choices, the
    builders, the labels of figures and the replay's entry-wise kinds all follow it."""
    from dataclasses import fields

    from rankjump.config import ENTRYWISE_KINDS, KINDS, OptimizerConfig, kind_label

    kind = next(f for f in fields(OptimizerConfig) if f.name == "kind")
    assert tuple(kind.metadata["choices"]) == tuple(KINDS)
    assert set(dynamics.BUILDERS) == set(KINDS)
    assert set(ENTRYWISE_KINDS) == {k for k, info in KINDS.items() if info.entrywise}
    for name in KINDS:
        assert kind_label(name) != name  # every kind has a name of its own in figures


def test_step_is_draw_then_update():
    _, shapes, ws_np, arrays, hyper = _setup(GEOMETRIES[2])
    dyn = dynamics.make_dynamics("label_noise", arrays, shapes, 2, jnp.float64)
    state = dyn.init(tuple(jnp.asarray(w) for w in ws_np))
    key = jax.random.PRNGKey(13)
    one = jax.tree_util.tree_map(lambda x: x[0], dyn.draw(key, 1))
    got = dynamics.materialize(jax.jit(dyn.step)(key, state, hyper))
    want = dynamics.materialize(jax.jit(dyn.update)(one, state, hyper))
    _assert_weights_close(got, [np.asarray(x) for x in want], rtol=0, atol=0)
    assert not np.allclose(np.asarray(got[0]), ws_np[0])


def test_make_dynamics_rejects_unknown_kind():
    _, shapes, _, arrays, _ = _setup(GEOMETRIES[2])
    with pytest.raises(ValueError, match="optimizer.kind"):
        dynamics.make_dynamics("adam", arrays, shapes, 1, jnp.float64)


# ------------------------------------------------------------------ sampling distributions


def test_sgd_draws_observed_entries_uniformly():
    # Chi-square goodness of fit of 30,000 drawn indices to the uniform law on the N observed
    # entries; with the fixed key the test is deterministic, at significance 0.001.
    _, shapes, _, arrays, _ = _setup(GEOMETRIES[2])
    n_obs = arrays.y.shape[0]
    dyn = dynamics.make_dynamics("sgd", arrays, shapes, 3, jnp.float64)
    idx, _ = jax.jit(dyn.draw, static_argnums=1)(jax.random.PRNGKey(14), 10_000)
    idx = np.asarray(idx).ravel()
    assert idx.min() >= 0 and idx.max() < n_obs
    counts = np.bincount(idx, minlength=n_obs)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_sgd_draws_are_independent_across_steps_batch_and_trajectories():
    # The entry drawn at step n (counter-based: hash block (n, b) of the trajectory's key) must
    # not depend on the one drawn at step n + 1, on its batch neighbour, nor on another
    # trajectory's at the same step. Chi-square tests of independence of the pairs' contingency
    # tables (N x N cells), fixed keys, each at significance 0.001.
    _, shapes, _, arrays, _ = _setup(GEOMETRIES[2])
    n_obs = arrays.y.shape[0]
    dyn = dynamics.make_dynamics("sgd", arrays, shapes, 2, jnp.float64)
    steps = jnp.arange(20_000, dtype=jnp.uint32)
    keys = jax.random.split(jax.random.PRNGKey(16), 2)
    idx = np.asarray(jax.jit(jax.vmap(lambda k: dyn.draw_steps(k, steps)[0]))(keys))
    pairs = {
        "consecutive steps": (idx[0, :-1, 0], idx[0, 1:, 0]),
        "batch neighbours": (idx[0, :, 0], idx[0, :, 1]),
        "two trajectories": (idx[0, :, 0], idx[1, :, 0]),
    }
    for name, (a, b) in pairs.items():
        table = np.zeros((n_obs, n_obs))
        np.add.at(table, (a, b), 1)
        assert stats.chi2_contingency(table).pvalue > 1e-3, name


@pytest.mark.parametrize("kind", ["label_noise", "langevin"])
def test_noise_draws_are_standard_normal(kind):
    # Kolmogorov-Smirnov against N(0, 1) at significance 0.001, fixed key.
    _, shapes, _, arrays, _ = _setup(GEOMETRIES[2])
    dyn = dynamics.make_dynamics(kind, arrays, shapes, 4, jnp.float64)
    sample = jax.jit(dyn.draw, static_argnums=1)(jax.random.PRNGKey(15), 500)
    xi = (
        np.asarray(sample[1]).ravel()
        if kind == "label_noise"
        else np.concatenate([np.asarray(x).ravel() for x in sample])
    )
    assert xi.size >= 2000
    assert stats.kstest(xi, "norm").pvalue > 1e-3


def test_langevin_samples_the_gibbs_density_of_a_quadratic():
    # One parameter: a 1 x 1 target y observed, depth 1, so L(w) = (w - y)^2 + lam w^2 and the
    # Gibbs density exp(-L / T) is N(y / (1 + lam), T / (2 (1 + lam))). Langevin's Euler step has
    # stationary variance T / (a (1 - eta a / 2)), a = 2 (1 + lam): a relative bias of eta a / 2 =
    # 0.1% in the variance, far below what 2000 samples resolve. 2000 independent trajectories
    # from N(0, 1) run 8000 steps (16 relaxation times 1 / (eta a)); their final w are i.i.d.
    # draws. Kolmogorov-Smirnov against the Gibbs law at significance 0.01, fixed seeds.
    from rankjump import loads_config, simulate

    lam, eta, temp = 0.1, 1e-3, 0.05
    cfg = loads_config(
        f"""
[task]
d_out = 1
d_in = 1
rank = 1
observed = 1.0
singular_values = [1.5]
[network]
depth = 1
width = 1
[optimizer]
kind = "langevin"
lam = [{lam}]
eta = [{eta}]
temperature = {temp}
[run]
trajectories = 2000
steps = 8000
record_every = 8000
chunk_size = 2000
dtype = "float64"
seed = 7
"""
    )
    ds = simulate(cfg, progress=False)
    y = float(make_task(cfg.task).y[0])
    assert abs(y) == pytest.approx(1.5)
    # w from the records: param_norm2 = w^2 and data_loss = (w - y)^2.
    n2 = ds["param_norm2"].values[0, 0, :, -1]
    dl = ds["data_loss"].values[0, 0, :, -1]
    w = (n2 + y * y - dl) / (2 * y)
    np.testing.assert_allclose(w * w, n2, rtol=1e-9)
    gibbs = stats.norm(loc=y / (1 + lam), scale=np.sqrt(temp / (2 * (1 + lam))))
    assert stats.kstest(w, gibbs.cdf).pvalue > 0.01
    # The test has power: the law without weight decay (mean y) is rejected.
    assert stats.kstest(w, stats.norm(loc=y, scale=gibbs.std()).cdf).pvalue < 1e-6
