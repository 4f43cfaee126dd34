"""One step of SGD, GD, label-noise SGD, Langevin or heavy-ball momentum, on ONE network.

Every kind is a :class:`Dynamics` (:mod:`rankjump.dynamics.types`): ``draw_steps(key, steps)``
samples the randomness of the given global steps of one trajectory at once (entry indices, label
or weight noise; :mod:`rankjump.dynamics.samples`), and the sample of step n depends only on the
key and n, so a path does not depend on how its steps are grouped; ``update(sample, state,
hyper)`` applies one step to ONE network, the definition a reader checks against docs/theory.md;
``step(key, state, hyper)`` is the two together, the pure key-first signature. ``update_lanes``
steps a chunk at once: for the entry-wise kinds at small batches, a lanes-last fast equal of
``update`` (:mod:`rankjump.dynamics.lanes`), tested equal to its vmap; else the vmap itself.

The kinds: :mod:`~rankjump.dynamics.entrywise` (sgd, label_noise), :mod:`~rankjump.dynamics.dense`
(gd, langevin, through optax), :mod:`~rankjump.dynamics.momentum` (sgd_momentum), named in
:data:`BUILDERS` with the layout policy (:func:`layout`) in :mod:`rankjump.dynamics.registry`.
"""

from rankjump.dynamics.dense import dense_dynamics, optax_chain
from rankjump.dynamics.registry import (
    BUILDERS,
    LANES_LAST_MAX_BATCH,
    Kind,
    Layout,
    lanes_last,
    layout,
    make_dynamics,
)
from rankjump.dynamics.types import (
    Dynamics,
    Hyper,
    State,
    TaskArrays,
    hyper_for,
    materialize,
    new_hyper,
    new_state,
    renormalize,
)

__all__ = [
    "BUILDERS",
    "LANES_LAST_MAX_BATCH",
    "Dynamics",
    "Hyper",
    "Kind",
    "Layout",
    "State",
    "TaskArrays",
    "dense_dynamics",
    "lanes_last",
    "hyper_for",
    "layout",
    "make_dynamics",
    "materialize",
    "new_hyper",
    "new_state",
    "optax_chain",
    "renormalize",
]
