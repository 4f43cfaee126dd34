"""One (lam, eta) cell of a configuration as a splitting process
(:mod:`rankjump.rare_events.splitting`).

The process is the simulator's own compiled stepping (:func:`rankjump.kernel.compiled_advance`),
one checkpoint interval of ``run.record_every`` steps per call, each replica from its own step
counter and its own dynamics key; the start is the configuration's shared start (a GD minimum or
a weights file) at rank r. The event is entering B_{target} (every layer's rank at most
``target_rank``, default r - 1) within ``run.steps``.

Scores (the target set is exactly score >= 1; the estimate is unbiased for any score, which sets
only its variance). Let s_l be layer l's (target_rank + 1)-th singular value, s_l0 its value at
the start and thr the layer threshold; the progress of layer l is
u_l = log(s_l0 / s_l) / log(s_l0 / thr), clipped to [0, 1):

- "layer_mean": the mean of u_l over layers;
- "largest_layer": the smallest u_l (the layer furthest from its threshold);
- "smallest_layer": the largest u_l (the layer nearest its threshold: it sees the kick that
  starts a jump, :mod:`rankjump.rare_events.rate`);
- "lead_mean": the mean of the two above, (max_l u_l + mean_l u_l) / 2: it follows the kicked
  layer down and then the others after it, so replicas whose kicked layer is already at its
  threshold are still told apart (with "smallest_layer" they tie at the cap and die together).

A diverged replica (non-finite or ||theta||^2 above ``run.diverge_norm2``) scores NaN: it never
reaches the target and is killed first. With ``basin`` set, a replica whose every layer's value
is back at or above ``basin`` times its start value scores -inf: the event becomes "enter
B_{target} before falling back into the basin", and the engine stops such a replica.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rankjump.config import Config, ConfigError
from rankjump.config.sections import SCORE_NAMES
from rankjump.dynamics import State, TaskArrays, hyper_for, materialize, new_hyper, new_state
from rankjump.dynamics.entrywise import sgd_update
from rankjump.kernel import compiled_advance, lane_mesh
from rankjump.model.network import entry_vectors, param_norm2, sharpness
from rankjump.model.ranks import REL_FLOOR, spectral_ranks
from rankjump.model.spectra import lanes_last_tiles
from rankjump.rare_events.settings import check_rare
from rankjump.runtime.precision import with_float64
from rankjump.simulation.plan import plan_run
from rankjump.simulation.starts import eta_edge, shared_starts

__all__ = ["SCORES", "NetworkProcess"]

SCORES = SCORE_NAMES


class NetworkProcess:
    """The DLN of ``cfg`` at cell (``lam``, ``eta``) as a
    :class:`rankjump.rare_events.splitting.Process`.

    Args:
        cfg: a validated configuration with a shared start (``network.init`` = "gd_minimum" with
            ``gd_start = "shared"``, or "file"), no schedule, and ``rank.rule = "all_layers"``.
        lam, eta: the cell (values of ``optimizer.lam`` and ``optimizer.eta``).
        score: one of :data:`SCORES` (default ``rare.score``).
        basin: if given, a state whose every layer's value is at least ``basin`` times its
            start value scores -inf (back in the basin: it stops).
    """

    @with_float64
    def __init__(
        self,
        cfg: Config,
        lam: float,
        eta: float,
        score: str | None = None,
        basin: float | None = None,
    ):
        opt, run = cfg.optimizer, cfg.run
        check_rare(cfg)
        self.score_name = cfg.rare.score if score is None else score
        if self.score_name not in SCORES:
            raise ConfigError(f"rare.score = {self.score_name!r}: must be one of {SCORES}")
        if lam not in opt.lam or eta not in opt.eta:
            raise ConfigError(
                f"cell (lam {lam:g}, eta {eta:g}): not in optimizer.lam x optimizer.eta"
            )
        li = opt.lam.index(lam)
        plan = plan_run(cfg.replace(run={"trajectories": 1}))
        self.cfg, self.structure = cfg, plan.structure
        self.dtype = jnp.dtype(run.dtype)
        self.thr = float(plan.thresholds[li].layer)
        self.arrays = TaskArrays.of(plan.task, self.dtype)
        starts = shared_starts(plan)
        self.start_weights = tuple(np.asarray(w[li], self.dtype) for w in starts.weights)
        self.start_rank = int(starts.attrs["start_rank"][li])
        self.eta_edge = eta_edge(self.start_weights, plan.task)
        target = cfg.rare.target_rank
        self.target_rank = self.start_rank - 1 if target is None else target
        if self.target_rank >= self.start_rank:
            raise ConfigError(
                f"rare.target_rank = {self.target_rank}: the start (rank {self.start_rank}) is "
                "already in that set; choose a smaller target rank"
            )
        norm2 = sum(float(np.sum(np.asarray(w, np.float64) ** 2)) for w in self.start_weights)
        if not norm2 <= run.diverge_norm2:
            raise ConfigError(
                f"run.diverge_norm2 = {run.diverge_norm2:g}: the start (lam {lam:g}) has "
                f"||theta||^2 = {norm2:.4g}, above it: every replica would count as diverged "
                "from the first checkpoint"
            )
        self.basin = basin
        self.lam, self.eta = lam, eta
        self.diverge_norm2 = run.diverge_norm2
        self.target = 1.0
        # (L,) start values of each layer's vanishing singular value (NumPy, float64).
        self.s0 = np.array(
            [np.linalg.svd(w, compute_uv=False)[self.target_rank] for w in self.start_weights]
        )
        if np.any(self.s0 <= self.thr):
            raise ConfigError(
                f"rare.target_rank = {self.target_rank}: a layer's singular value "
                f"{self.target_rank + 1} already is below the threshold at the start"
            )

    @with_float64
    def start(self, key, n: int) -> State:
        """n replicas at the configured start, step 0, with the kind's optimizer state at the
        start (a velocity of 0 for momentum; the key is not used)."""
        del key
        weights = tuple(np.broadcast_to(w, (n, *w.shape)).copy() for w in self.start_weights)
        opt = jax.vmap(self.structure.dynamics(self.arrays).init_opt)(weights)
        return new_state(weights=weights, opt=jax.tree.map(np.asarray, opt))

    @with_float64
    def advance(self, keys, state: State, step0: int, n_steps: int) -> State:
        """``n_steps`` (a multiple of ``run.record_every``) steps of every replica, each from its
        own ``state.step`` (= ``step0``) with its key as the dynamics key."""
        s = self.structure
        if n_steps % s.record_every:
            raise ValueError(f"n_steps = {n_steps}: must be a multiple of {s.record_every}")
        hyper = hyper_for(self.cfg, self.lam, self.eta, lanes=(len(keys),))
        state = jax.tree_util.tree_map(jnp.asarray, state)
        program = compiled_advance(s, lane_mesh(len(keys)))
        with jax.default_matmul_precision("highest"):
            for _ in range(n_steps // s.record_every):
                state = program(state, jnp.asarray(keys), hyper, self.arrays)
        return state

    @with_float64
    def lookahead(self, state: State, draws: int = 2, top: int = 3) -> np.ndarray:
        """(n, draws): column d - 1 is the most advanced layer's progress (as the score
        "smallest_layer" reads it, not clipped) after the best sequence of d more SGD steps,
        each on one of the ``top`` observed entries of largest overshoot eta * h_e * |r_e| at
        that point (h_e: :func:`rankjump.model.network.entry_sharpness`, r_e the residual), with no
        other step between them. A kick is a few such draws within a few dozen steps
        (docs/theory.md, section 6): this says how many draws away from one a state is."""
        # On one device, from host arrays (states from `advance` may be sharded over devices).
        weights = tuple(np.asarray(w) for w in state.weights)
        return np.asarray(self._lookahead(draws, top)(weights, np.asarray(state.scale)))

    def _lookahead(self, draws: int, top: int):
        """The compiled look-ahead for (draws, top), built once per process."""
        programs = self.__dict__.setdefault("_lookahead_programs", {})
        if (draws, top) not in programs:
            programs[draws, top] = self._build_lookahead(draws, top)
        return programs[draws, top]

    def _build_lookahead(self, draws: int, top: int):
        task, lam, eta = self.arrays, self.lam, self.eta
        update = sgd_update(task, len(self.start_weights), 1, False)  # the step, label-free
        hyper = new_hyper(lam=lam, eta=eta, dtype=self.dtype)
        no_noise = jnp.zeros((1, 0), self.dtype)
        layers = self._layers

        def moves(ms, c):  # one lane -> its `top` states after one draw of an entry of largest
            state = new_state(weights=ms, scale=c)  # overshoot eta * h_e * |r_e|
            w = materialize(state)
            pred, a, b = jax.vmap(lambda i, j: entry_vectors(w, i, j))(task.rows, task.cols)
            chosen = jnp.argsort(-eta * sharpness(a, b) * jnp.abs(pred - task.y))[:top]
            moved = jax.vmap(lambda e: update((e[None], no_noise), state, hyper))(chosen)
            return moved.weights, moved.scale

        def program(ms, c):
            n = c.shape[0]
            # A diverged lane (NaN, as in the score) looks ahead from the start instead.
            ok = layers(ms, c).ok
            ms = tuple(
                jnp.where(ok.reshape((-1,) + (1,) * (m.ndim - 1)), m, m0)
                for m, m0 in zip(ms, self.start_weights, strict=True)
            )
            c = jnp.where(ok, c, 1)
            best = []
            for _ in range(draws):  # level d: the n * top^d states after d draws, lane-major
                ms, c = jax.vmap(moves)(ms, c)
                ms, c = (tuple(m.reshape((-1,) + m.shape[2:]) for m in ms), c.reshape(-1))
                progress = layers(ms, c).u.max(axis=-1)  # as the score reads it, not clipped
                best.append(progress.reshape(n, -1).max(axis=1))
            return jnp.where(ok[:, None], jnp.stack(best, axis=1), jnp.nan)

        return jax.jit(program)

    @with_float64
    def score(self, state: State) -> np.ndarray:
        """(n,) progress toward B_{target_rank} (>= 1 exactly inside it; NaN when diverged)."""
        return np.asarray(self._score(tuple(state.weights), state.scale))

    @functools.cached_property
    def _values(self):
        """Lanes-last layers -> ((L, lanes...) every layer's (target_rank + 1)-th singular value,
        (lanes...) the rank under "all_layers"), without LAPACK (:mod:`rankjump.model.spectra`)."""
        thr, floor = self.thr, REL_FLOOR[self.structure.dtype]
        wanted = [(l, self.target_rank + 1) for l in range(len(self.start_weights))]

        def values(weights):
            thresholds = jnp.full((len(weights), 1), thr, weights[0].dtype)
            ranks, got = spectral_ranks(weights, thresholds, floor, wanted)
            return got, jnp.max(ranks, axis=0)

        return values

    @functools.cached_property
    def _start_values(self):
        """The start's values as :attr:`_values` computes them (so the start scores exactly 0)."""
        start = tuple(jnp.asarray(w)[..., None] for w in self.start_weights)
        return jax.jit(self._values)(start)[0][:, 0]

    @functools.cached_property
    def _weights(self):
        """Lanes-first (weights, scale) -> (every layer's W = scale * M, lanes first; whether each
        lane is healthy: ||theta||^2 finite and at most ``run.diverge_norm2``)."""
        limit = self.diverge_norm2

        def weights_of(weights, scale):
            w = jax.vmap(lambda ms, c: materialize(new_state(weights=ms, scale=c)))(weights, scale)
            return w, jax.vmap(lambda x: _healthy(x, limit))(w)

        return weights_of

    @functools.cached_property
    def _layers(self):
        """Lanes-first states -> :class:`_Layers`: every layer's value and progress, the rank and
        whether the lane is healthy, as the score and the look-ahead read them (built outside
        their traced programs: the start's values are computed once, here)."""
        s0, thr = self._start_values, self.thr
        values, tile, weights_of = self._values, self.structure.tile, self._weights

        def layers(weights, scale) -> _Layers:
            w, ok = weights_of(weights, scale)
            sv, rank = lanes_last_tiles(values, w, tile)  # (n, L), (n,)
            u = jnp.log(s0 / jnp.maximum(sv, 1e-300)) / jnp.log(s0 / thr)
            return _Layers(sv, u, rank, ok)

        return layers

    @functools.cached_property
    def _score(self):
        name, basin, index = self.score_name, self.basin, self.target_rank
        layers, s0 = self._layers, self._start_values

        def score(weights, scale):
            sv, u, rank, ok = layers(weights, scale)
            u = jnp.clip(u, 0.0, 0.999999)
            progress = {
                "layer_mean": lambda: jnp.mean(u, axis=-1),
                "largest_layer": lambda: jnp.min(u, axis=-1),
                "smallest_layer": lambda: jnp.max(u, axis=-1),
                "lead_mean": lambda: (jnp.max(u, axis=-1) + jnp.mean(u, axis=-1)) / 2,
            }[name]()
            value = jnp.where(rank <= index, 1.0, progress)
            if basin is not None:
                value = jnp.where(jnp.all(sv >= basin * s0, axis=-1), -jnp.inf, value)
            return jnp.where(ok, value, jnp.nan)

        return jax.jit(score)


class _Layers(NamedTuple):
    """What the score and the look-ahead read of n lanes (:meth:`NetworkProcess._layers`)."""

    sv: jax.Array  # (n, L) every layer's (target_rank + 1)-th singular value
    u: jax.Array  # (n, L) its progress log(s0 / sv) / log(s0 / thr), not clipped
    rank: jax.Array  # (n,) the rank under "all_layers"
    ok: jax.Array  # (n,) not diverged


def _healthy(weights, limit):
    """Not diverged: ||theta||^2 finite and at most ``run.diverge_norm2`` (``limit``)."""
    norm2 = param_norm2(weights)
    return jnp.isfinite(norm2) & (norm2 <= limit)
