"""Full-batch kinds through optax: GD, and Langevin (GD plus isotropic Gaussian noise).

The update is the optax chain of :func:`optax_chain` (weight decay 2 lam W, the gradient of
lam ||W||^2, then ``sgd(eta)``) applied to the exact gradient of the data loss over all observed
entries; Langevin then adds sqrt(2 eta T) xi_l to every layer (docs/theory.md). The chain's
state travels in ``State.opt`` from one step to the next, so a stateful chain (momentum, Adam)
keeps its state; the default chain keeps none, and ``State.opt`` is then ``()``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from rankjump.dynamics.samples import dense_draws
from rankjump.dynamics.types import Dynamics, Hyper, State, TaskArrays, materialize, new_hyper
from rankjump.model.network import data_loss

__all__ = ["dense_dynamics", "gd", "langevin", "optax_chain"]

Chain = Callable[[Hyper], optax.GradientTransformation]


def optax_chain(lam, eta, momentum=None) -> optax.GradientTransformation:
    """The generic update: weight decay 2*lam*W (the gradient of lam ||W||^2), then sgd(eta),
    with heavy-ball ``momentum`` when given (optax's trace: v <- g + momentum v, W -= eta v)."""
    return optax.chain(optax.add_decayed_weights(2.0 * lam), optax.sgd(eta, momentum=momentum))


def _default_chain(hyper: Hyper) -> optax.GradientTransformation:
    return optax_chain(hyper.lam, hyper.eta)


def _stateless(transform: optax.GradientTransformation, weights):
    """The state of a chain that keeps none, for a ``State.opt`` of ``()``; a chain that keeps
    one must find it in ``State.opt`` (put there by :meth:`Dynamics.init`), never restarted."""
    opt = transform.init(weights)
    if jax.tree_util.tree_leaves(opt):
        raise ValueError(
            "State.opt is empty but the optax chain keeps a state: start from Dynamics.init"
        )
    return opt


def dense_dynamics(
    task: TaskArrays, shapes, dtype, *, langevin: bool = False, chain: Chain = _default_chain
) -> Dynamics:
    """Full-batch steps of ONE network through ``chain(hyper)``, its state carried in
    ``State.opt`` (chunks step as a vmap of it).

    Args:
        task: observed entries.
        shapes: layer shapes (rows, cols) of W_1 .. W_L.
        dtype: floating dtype of the weights.
        langevin: add sqrt(2 eta temperature) standard normal noise to every weight.
        chain: hyperparameters -> the optax transformation of the gradient (its state's
            structure must not depend on the values).
    """

    def update(sample, state: State, hyper: Hyper) -> State:
        w = materialize(state)
        grads = jax.grad(data_loss)(w, task.rows, task.cols, task.y)
        transform = chain(hyper)
        stateless = state.opt == ()
        opt = _stateless(transform, w) if stateless else state.opt
        updates, opt = transform.update(grads, opt, w)
        opt = () if stateless else opt
        w = optax.apply_updates(w, updates)
        if langevin:
            amp = jnp.sqrt(2.0 * hyper.eta * hyper.temperature)
            w = tuple(wl + amp * xl for wl, xl in zip(w, sample, strict=True))
        return state._replace(
            weights=tuple(w), scale=jnp.ones_like(state.scale), step=state.step + 1, opt=opt
        )

    def init_opt(weights):
        opt = chain(new_hyper(lam=0.0, eta=0.0, dtype=dtype)).init(tuple(weights))
        return opt if jax.tree_util.tree_leaves(opt) else ()

    return Dynamics.of(dense_draws(shapes, langevin, dtype), update, init_opt=init_opt)


def gd(task: TaskArrays, shapes, batch: int, dtype, lanes_last: bool) -> Dynamics:
    """Gradient descent on the mean over all observed entries (``batch`` is not used)."""
    return dense_dynamics(task, shapes, dtype)


def langevin(task: TaskArrays, shapes, batch: int, dtype, lanes_last: bool) -> Dynamics:
    """GD plus sqrt(2 eta temperature) isotropic Gaussian noise on every weight."""
    return dense_dynamics(task, shapes, dtype, langevin=True)
