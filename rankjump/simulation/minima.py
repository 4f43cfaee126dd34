"""GD-converged minima of L_lam in float64: the shared start of a run, or one per trajectory."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rankjump.config import ConfigError, NetworkConfig
from rankjump.dynamics import TaskArrays, make_dynamics, materialize, new_hyper
from rankjump.model.network import data_loss, init_gaussian, layer_shapes, param_norm2
from rankjump.model.tasks import Task
from rankjump.runtime.precision import with_float64

__all__ = ["GDMinimum", "NotConvergedError", "gd_minimum"]

_CHECK_EVERY = 1000


class NotConvergedError(ConfigError):
    """GD ran out of its step budget before reaching the gradient tolerance."""


class GDMinimum(NamedTuple):
    """GD-converged weights for each lam, in float64.

    Attributes:
        weights: tuple of arrays, each with a leading lam axis.
        grad_norm: (n_lam,) norm of the full gradient of L_lam at the end.
        steps: (n_lam,) GD steps taken.
        loss: (n_lam,) L_lam at the end.
    """

    weights: tuple
    grad_norm: np.ndarray
    steps: np.ndarray
    loss: np.ndarray


def _grad_norm(w, task: TaskArrays, lam):
    def full(w):
        return data_loss(w, task.rows, task.cols, task.y) + lam * param_norm2(w)

    value, g = jax.value_and_grad(full)(w)
    return value, jnp.sqrt(sum(jnp.sum(x * x) for x in g))


@with_float64
def gd_minimum(
    task: Task, d_out: int, d_in: int, net: NetworkConfig, lams, trajectories=None
) -> GDMinimum:
    """Run GD in float64 from a gaussian init to a minimum of L_lam, one run per lane.

    Without ``trajectories`` there is one lane per lam, all from the init drawn with key
    ``net.seed`` (the shared start). With ``trajectories`` (same length as ``lams``), lane k
    starts from trajectory ``trajectories[k]``'s own init, key ``fold_in(PRNGKey(net.seed), t)``.

    Runs until the gradient norm of the full regularized loss is below ``net.gd_tol`` (checked
    every 1000 steps) and raises :class:`NotConvergedError` if ``net.gd_max_steps`` run out
    first: a GD run can look converged on a slow slope that is not a minimum (docs/theory.md).
    """
    shapes = layer_shapes(d_out, d_in, net.width, net.depth)
    f64 = jnp.float64
    arrays = TaskArrays.of(task, f64)
    dyn = make_dynamics("gd", arrays, shapes, 1, f64)
    root = jax.random.PRNGKey(net.seed)
    max_steps, tol = net.gd_max_steps, net.gd_tol
    lams = np.asarray(lams, np.float64)
    if trajectories is None:
        keys = jnp.broadcast_to(root, (lams.size, *root.shape))
    else:
        trajectories = np.asarray(trajectories)
        keys = jax.vmap(lambda t: jax.random.fold_in(root, t))(
            jnp.asarray(trajectories, jnp.uint32)
        )

    def one(lam, key):
        w0 = init_gaussian(key, shapes, net.init_scale, f64)
        hyper = new_hyper(lam=lam, eta=net.gd_eta, dtype=f64)

        def body(carry):
            state, _, _ = carry
            n = jnp.minimum(_CHECK_EVERY, max_steps - state.step)
            state = jax.lax.fori_loop(0, n, lambda _, s: dyn.update(None, s, hyper), state)
            value, gn = _grad_norm(materialize(state), arrays, lam)
            return state, value, gn

        def cond(carry):
            state, _, gn = carry
            return (gn > tol) & (state.step < max_steps) & jnp.isfinite(gn)

        value, gn = _grad_norm(w0, arrays, lam)
        state, value, gn = jax.lax.while_loop(cond, body, (dyn.init(w0), value, gn))
        return materialize(state), gn, state.step, value

    with jax.default_matmul_precision("highest"):
        w, gn, steps, value = jax.jit(jax.vmap(one))(jnp.asarray(lams, f64), keys)
    w = tuple(np.asarray(x) for x in w)
    gn, steps, value = np.asarray(gn), np.asarray(steps), np.asarray(value)
    bad = ~(gn <= tol)
    if bad.any():
        k = int(np.argmax(bad))
        where = f"lam = {lams[k]:g}"
        if trajectories is not None:
            where += f", trajectory {trajectories[k]}"
        raise NotConvergedError(
            f"network.gd_max_steps = {max_steps}: GD at {where} stopped at gradient "
            f"norm {gn[k]:.3g} > network.gd_tol = {tol:g} after {steps[k]} steps "
            "(raise gd_max_steps or gd_eta, or lower init_scale if it diverged)"
        )
    return GDMinimum(w, gn, steps, value)
