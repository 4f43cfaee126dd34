"""SGD and label-noise SGD on B sampled observed entries (docs/theory.md, the model):

    theta <- (1 - 2 eta lam) theta - (2 eta / B) sum_batch r_ij grad A_theta[i, j]

with r_ij = A_theta[i, j] - y_ij (label noise: y_ij + label_noise * xi, xi fresh N(0, 1)).

Lazy weight decay: with W_l = c M_l (the state's ``scale`` c) and the unscaled vectors a_l, b_l
of :func:`rankjump.model.network.entry_vectors` computed from the M_l, the prediction is
c^L a_l . M_l b_l and the step becomes c' = (1 - 2 eta lam) c, M_l -= g a_l b_l^T with
g = 2 eta r c^(L-2) / (B (1 - 2 eta lam)): the decay is one scalar multiply, and since b_1 = e_j
and a_L = e_i the first and last layers change in one column and one row.

:func:`sgd_update` is the definition, for ONE network; :func:`sgd_update_lanes` is its fast
equal for a chunk, lanes last (tested equal to a vmap of the definition).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rankjump.dynamics.lanes import entry_vectors_lanes, outer
from rankjump.dynamics.samples import entry_draws
from rankjump.dynamics.types import Dynamics, Hyper, State, TaskArrays, Update
from rankjump.model.network import entry_vectors

__all__ = ["label_noise", "sgd", "sgd_update", "sgd_update_lanes", "targets"]


def targets(task: TaskArrays, idx, xi, hyper: Hyper, label_noise: bool):
    """The targets of the sampled entries ``idx``, plus ``label_noise * xi`` when noisy."""
    y = task.y[idx]
    return y + hyper.label_noise * xi if label_noise else y


def _gain(r, c, hyper: Hyper, depth: int, batch: int):
    """(g, decay): the rank-one updates' coefficient g per sampled entry and 1 - 2 eta lam."""
    decay = 1.0 - 2.0 * hyper.eta * hyper.lam
    if depth == 1:
        return 2.0 * hyper.eta * r / (batch * c * decay), decay
    return 2.0 * hyper.eta * r * c ** (depth - 2) / (batch * decay), decay


def sgd_update(task: TaskArrays, depth: int, batch: int, label_noise: bool) -> Update:
    """One step of ONE network on B sampled entries (the definition)."""

    def update(sample, state: State, hyper: Hyper) -> State:
        idx, xi = sample
        m, c = state.weights, state.scale
        i, j = task.rows[idx], task.cols[idx]
        y = targets(task, idx, xi, hyper, label_noise)
        pred, a, b = jax.vmap(entry_vectors, (None, 0, 0))(m, i, j)  # unscaled, per entry
        g, decay = _gain(c**depth * pred - y, c, hyper, depth, batch)
        if depth == 1:
            new = [m[0].at[i, j].add(-g)]
        else:
            new = [m[0].at[:, j].add(-(g[:, None] * a[0]).T)]  # b_1 = e_j: column j
            for l in range(1, depth - 1):
                new.append(m[l] - jnp.einsum("b,bi,bj->ij", g, a[l], b[l]))
            new.append(m[-1].at[i, :].add(-g[:, None] * b[-1]))  # a_L = e_i: row i
        return state._replace(weights=tuple(new), scale=decay * c, step=state.step + 1)

    return update


def sgd_update_lanes(task: TaskArrays, depth: int, batch: int, label_noise: bool) -> Update:
    """:func:`sgd_update` for a chunk of networks, lanes LAST (:mod:`rankjump.dynamics.lanes`):
    the first and last layers are updated through their one-hot vectors."""

    def update(sample, state: State, hyper: Hyper) -> State:
        idx, xi = sample
        m, c = state.weights, state.scale
        y = targets(task, idx, xi, hyper, label_noise)
        pred, a, b = entry_vectors_lanes(m, task.rows[idx], task.cols[idx])
        g, decay = _gain(c**depth * pred - y, c, hyper, depth, batch)
        new = tuple(ml - outer(g, al, bl) for ml, al, bl in zip(m, a, b, strict=True))
        return state._replace(weights=new, scale=decay * c, step=state.step + 1)

    return update


def _entrywise(task, shapes, batch: int, dtype, lanes_last: bool, noisy: bool) -> Dynamics:
    depth = len(shapes)
    fast = sgd_update_lanes(task, depth, batch, noisy) if lanes_last else None
    return Dynamics.of(
        entry_draws(batch, task.y.shape[0], noisy, dtype),
        sgd_update(task, depth, batch, noisy),
        fast,
    )


def sgd(task: TaskArrays, shapes, batch: int, dtype, lanes_last: bool) -> Dynamics:
    """Plain SGD: B entries drawn uniformly with replacement per step."""
    return _entrywise(task, shapes, batch, dtype, lanes_last, noisy=False)


def label_noise(task: TaskArrays, shapes, batch: int, dtype, lanes_last: bool) -> Dynamics:
    """SGD on targets with fresh N(0, label_noise^2) noise per drawn entry and step."""
    return _entrywise(task, shapes, batch, dtype, lanes_last, noisy=True)
