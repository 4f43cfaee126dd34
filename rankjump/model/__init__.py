"""The model: the task, the deep linear network, its ranks, and the closed forms to test against.

- :mod:`~rankjump.model.tasks`: matrix completion (target, observed entries, noise);
- :mod:`~rankjump.model.network`: the deep linear network and its one entry-wise gradient;
- :mod:`~rankjump.model.spectra`: singular values and counts without LAPACK (bidiagonal form and
  bisection), lanes last;
- :mod:`~rankjump.model.ranks`: the rank thresholds and the rank rule;
- :mod:`~rankjump.model.theory`: closed forms of docs/theory.md (fully observed minima, the
  absorption radius).

It imports only :mod:`rankjump.config`.
"""

from rankjump.model.network import (
    Weights,
    data_loss,
    entry_grad,
    entry_sharpness,
    entry_vectors,
    halving_sum,
    imbalance,
    init_balanced,
    init_gaussian,
    layer_shapes,
    loss,
    param_norm2,
    product,
    representation_cost,
    sharpness,
)
from rankjump.model.ranks import (
    REL_FLOOR,
    RULE_TEXT,
    RULES,
    Thresholds,
    network_rank,
    rank_cut,
    ranks_of,
    spectral_ranks,
    thresholds_for,
)
from rankjump.model.tasks import Task, haar_orthonormal, make_task
from rankjump.model.theory import (
    absorption_radius,
    balanced_layer_values,
    mode_minima,
    mode_minimum,
)

__all__ = [
    "REL_FLOOR",
    "RULES",
    "RULE_TEXT",
    "Task",
    "Thresholds",
    "Weights",
    "absorption_radius",
    "balanced_layer_values",
    "data_loss",
    "entry_grad",
    "entry_sharpness",
    "entry_vectors",
    "halving_sum",
    "haar_orthonormal",
    "imbalance",
    "init_balanced",
    "init_gaussian",
    "layer_shapes",
    "loss",
    "make_task",
    "mode_minima",
    "mode_minimum",
    "network_rank",
    "param_norm2",
    "product",
    "rank_cut",
    "ranks_of",
    "representation_cost",
    "sharpness",
    "spectral_ranks",
    "thresholds_for",
]
