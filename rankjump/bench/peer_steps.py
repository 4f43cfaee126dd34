"""The PyTorch peers' SGD step, on explicit data: the loops :mod:`rankjump.bench.peers` times.

Both peers implement docs/theory.md's step exactly: ``(1/B) sum (A[i,j] - y)^2 + lam ||theta||^2``
over B sampled observed entries (all of them for full-batch GD), minimised by
``torch.optim.SGD(lr=eta, weight_decay=2*lam)``, so the update is
``(1 - 2 eta lam) theta - (2 eta / B) sum r grad A[i,j]``:

- :func:`naive_loop`: ONE network, weights as ``requires_grad`` tensors, the full product
  A = W_L ... W_1 every step, the batch's entries gathered from it, ``loss.backward()``.
- :func:`batched_loop`: T networks at once, weights as (T, rows, cols) tensors, A by a
  ``torch.bmm`` chain, each trajectory's entries gathered by advanced indexing, the loss summed
  over trajectories of per-trajectory batch means (the sum keeps their gradients apart).

:func:`naive_steps` and :func:`batched_steps` run them from NumPy weights and return NumPy weights:
the peers' update, checkable against a NumPy reference (tests/bench/test_peers.py). torch is an
optional extra (``pip install rankjump[bench]``), imported only inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["PeerState", "batched_loop", "batched_steps", "naive_loop", "naive_steps", "peer_state"]


class PeerState(NamedTuple):
    """What a peer's loop updates and reads (torch tensors).

    Attributes:
        weights: W_1 .. W_L, leaf tensors with ``requires_grad``; (T, rows, cols) when batched.
        opt: ``torch.optim.SGD(weights, lr=eta, weight_decay=2*lam)``.
        rows, cols: (N,) int64 indices of the observed entries.
        y: (N,) their targets, in the weights' dtype.
    """

    weights: list
    opt: Any
    rows: Any
    cols: Any
    y: Any


def peer_state(weights: Sequence, rows, cols, y, lam: float, eta: float) -> PeerState:
    """A peer's state from array-likes (NumPy arrays or torch tensors; the weights are copied).

    Args:
        weights: W_1 .. W_L sharing one dtype, which the state keeps.
        rows, cols, y: the observed entries and their targets.
        lam, eta: weight decay and learning rate.
    """
    import torch

    ws = [torch.as_tensor(np.asarray(w)).clone().requires_grad_() for w in weights]
    dtype = ws[0].dtype
    if any(w.dtype != dtype for w in ws):
        raise ValueError("weights must share one dtype")
    return PeerState(
        ws,
        torch.optim.SGD(ws, lr=eta, weight_decay=2.0 * lam),
        torch.as_tensor(np.asarray(rows, dtype=np.int64)),
        torch.as_tensor(np.asarray(cols, dtype=np.int64)),
        torch.as_tensor(np.asarray(y)).to(dtype),
    )


def _sgd_step(state: PeerState, pred, target, batched: bool) -> None:
    """One optimizer step on the per-network mean squared error (summed over networks)."""
    loss = ((pred - target) ** 2).mean(dim=1).sum() if batched else ((pred - target) ** 2).mean()
    state.opt.zero_grad()
    loss.backward()
    state.opt.step()


def naive_loop(state: PeerState, idx, steps: int) -> None:
    """``steps`` SGD steps of one network, in place.

    Args:
        state: the network's :class:`PeerState`.
        idx: (steps, B) int64 tensor of indices into the observed entries; None means GD.
        steps: the number of steps.
    """
    rows, cols, y = state.rows, state.cols, state.y
    for s in range(steps):
        a = state.weights[0]
        for w in state.weights[1:]:
            a = w @ a
        if idx is None:
            pred, target = a[rows, cols], y
        else:
            k = idx[s]
            pred, target = a[rows[k], cols[k]], y[k]
        _sgd_step(state, pred, target, batched=False)


def batched_loop(state: PeerState, idx, steps: int) -> None:
    """``steps`` SGD steps of T networks at once, in place.

    Args:
        state: the :class:`PeerState` of (T, rows, cols) weights.
        idx: (steps, T, B) int64 tensor; trajectory t uses ``idx[:, t]``. None means GD.
        steps: the number of steps.
    """
    import torch

    rows, cols, y = state.rows, state.cols, state.y
    lane = torch.arange(state.weights[0].shape[0])[:, None]
    for s in range(steps):
        a = state.weights[0]
        for w in state.weights[1:]:
            a = torch.bmm(w, a)
        if idx is None:
            pred, target = a[:, rows, cols], y  # (T, N), (N,)
        else:
            k = idx[s]  # (T, B)
            pred, target = a[lane, rows[k], cols[k]], y[k]
        _sgd_step(state, pred, target, batched=True)


def _run(loop, weights, rows, cols, y, idx, lam, eta, steps) -> list[np.ndarray]:
    """``loop`` from NumPy weights to NumPy weights (the body of the two functions below)."""
    import torch

    state = peer_state(weights, rows, cols, y, lam, eta)
    if idx is None:
        if steps is None:
            raise ValueError("give steps when idx is None (full-batch GD)")
    else:
        idx = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        steps = idx.shape[0]
    loop(state, idx, steps)
    return [w.detach().numpy() for w in state.weights]


def naive_steps(
    weights: Sequence[np.ndarray], rows, cols, y, idx, lam: float, eta: float, *, steps=None
) -> list[np.ndarray]:
    """The naive peer's update (:func:`naive_loop`) on explicit data.

    Args:
        weights: W_1 .. W_L as NumPy arrays (their dtype is kept: float64 for exact checks).
        rows, cols, y: the observed entries.
        idx: (steps, B) indices into the observed entries, or None for full-batch GD.
        lam, eta: weight decay and learning rate.
        steps: number of GD steps (only when ``idx`` is None).

    Returns:
        The weights after the steps, as NumPy arrays.
    """
    return _run(naive_loop, weights, rows, cols, y, idx, lam, eta, steps)


def batched_steps(
    weights: Sequence[np.ndarray], rows, cols, y, idx, lam: float, eta: float, *, steps=None
) -> list[np.ndarray]:
    """The batched peer's update (:func:`batched_loop`) on explicit data.

    Like :func:`naive_steps` with a leading trajectory axis T on every weight, (T, rows, cols),
    and ``idx`` of shape (steps, T, B): trajectory t uses the entries ``idx[:, t, :]``.
    """
    return _run(batched_loop, weights, rows, cols, y, idx, lam, eta, steps)
