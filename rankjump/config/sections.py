"""The sections of a configuration: ``[task]``, ``[network]``, ``[optimizer]``, ``[run]`` and
``[rank]``, each a frozen, validated dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from rankjump.config.fields import ConfigError, Section, spec
from rankjump.config.kinds import KINDS

__all__ = [
    "NetworkConfig",
    "OptimizerConfig",
    "RankConfig",
    "RareConfig",
    "RunConfig",
    "TaskConfig",
]


@dataclass(frozen=True)
class TaskConfig(Section):
    """Matrix completion: a rank-``rank`` target of shape (d_out, d_in), partly observed.

    The target has the given ``singular_values`` with Haar-random U, V, or (when omitted) is a
    product of i.i.d. Gaussian factors, rescaled to Frobenius norm ``target_norm`` when given.
    Exactly round(observed * d_out * d_in) entries are observed; ``noise`` is the std of fixed
    i.i.d. Gaussian noise added to the observed targets.
    """

    _name = "task"
    kind: str = spec("matrix_completion", str, choices=("matrix_completion",))
    d_out: int = spec(10, int, lo=1, hi=100_000)
    d_in: int = spec(10, int, lo=1, hi=100_000)
    rank: int = spec(1, int, lo=1)
    observed: float = spec(0.5, float, lo=0.0, lo_open=True, hi=1.0)
    singular_values: tuple[float, ...] | None = spec(
        None, "floats", lo=0.0, lo_open=True, optional=True
    )
    target_norm: float | None = spec(None, float, lo=0.0, lo_open=True, optional=True)
    noise: float = spec(0.0, float, lo=0.0)
    seed: int = spec(0, int, lo=0, hi=2**32 - 1)

    def _check(self):
        if self.rank > min(self.d_out, self.d_in):
            raise ConfigError(
                f"task.rank = {self.rank}: must be <= min(d_out, d_in) = "
                f"{min(self.d_out, self.d_in)}"
            )
        if self.singular_values is not None:
            if len(self.singular_values) != self.rank:
                raise ConfigError(
                    f"task.singular_values has {len(self.singular_values)} values: "
                    f"must have rank = {self.rank}"
                )
            if self.target_norm is not None:
                raise ConfigError("task.target_norm: give singular_values or target_norm, not both")
        if self.n_observed < 1:
            raise ConfigError(
                f"task.observed = {self.observed}: observes no entry of a "
                f"{self.d_out} x {self.d_in} matrix"
            )

    @property
    def n_observed(self) -> int:
        """Number of observed entries, round(observed * d_out * d_in)."""
        return int(round(self.observed * self.d_out * self.d_in))


@dataclass(frozen=True)
class NetworkConfig(Section):
    """Deep linear network W_L ... W_1 and its starting state.

    ``init``: "gaussian" (W_l i.i.d. N(0, init_scale^2 / fan_in), one draw per trajectory),
    "balanced" (exactly balanced rank-``init_rank`` weights with per-layer singular values
    ``init_scale``, random singular vectors per trajectory), "gd_minimum" (GD in float64 from one
    gaussian init drawn with ``seed``, run until the gradient norm is below ``gd_tol``; every
    trajectory starts there) or "file" (weights W1..WL from the ``.npz`` file ``init_file``).
    ``gd_start``: with init = "gd_minimum", "shared" (the one minimum above) or "per_trajectory"
    (trajectory t runs GD from its own gaussian init, key ``fold_in(seed, t)``, so start ranks
    vary; the statistics condition on them).
    """

    _name = "network"
    depth: int = spec(3, int, lo=1, hi=64)
    width: int = spec(10, int, lo=1, hi=100_000)
    init: str = spec("gaussian", str, choices=("gaussian", "balanced", "gd_minimum", "file"))
    init_scale: float = spec(1.0, float, lo=0.0, lo_open=True)
    init_rank: int | None = spec(None, int, lo=1, optional=True)
    init_file: str | None = spec(None, str, optional=True)
    seed: int = spec(0, int, lo=0, hi=2**32 - 1)
    gd_eta: float = spec(0.02, float, lo=0.0, lo_open=True)
    gd_tol: float = spec(1e-10, float, lo=0.0, lo_open=True)
    gd_max_steps: int = spec(2_000_000, int, lo=1)
    gd_start: str = spec("shared", str, choices=("shared", "per_trajectory"))

    def _check(self):
        if self.gd_start == "per_trajectory" and self.init != "gd_minimum":
            raise ConfigError(
                'network.gd_start = "per_trajectory": needs network.init = "gd_minimum"'
            )
        if self.init == "balanced" and self.init_rank is None:
            raise ConfigError('network.init_rank is required with init = "balanced"')
        if self.init == "file" and self.init_file is None:
            raise ConfigError('network.init_file is required with init = "file"')


# rare.score, rare.commit_score (rankjump.rare_events.network.SCORES)
SCORE_NAMES = ("layer_mean", "largest_layer", "smallest_layer", "lead_mean")


@dataclass(frozen=True)
class OptimizerConfig(Section):
    """The dynamics and the (lam, eta) grid.

    ``kind``: "sgd" (``batch_size`` entries drawn with replacement per step), "gd" (exact mean
    over the observed entries), "label_noise" (sgd on targets plus fresh N(0, label_noise^2)
    noise each step), "langevin" (gd plus sqrt(2 eta temperature) isotropic noise) or
    "sgd_momentum" (sgd with heavy-ball ``momentum`` in [0, 1), default 0.9; weight decay
    through the gradient; not allowed with the other kinds).
    ``lam`` and ``eta`` are lists: every pair is one cell of the grid. They are kept sorted
    ascending (as the result file's coordinates are); a value listed twice is refused.

    Schedules (annealing) are piecewise constant: phase p starts at step ``schedule_steps[p-1]``
    (phase 0 at step 0) and runs with ``lam * lam_factors[p]`` and ``eta * eta_factors[p]``, for
    every cell's (lam, eta). The factors are traced, so every schedule with the same number of
    phases runs in one compiled program. Ranks are judged with the last phase's lam.
    """

    _name = "optimizer"
    kind: str = spec("sgd", str, choices=tuple(KINDS))
    batch_size: int = spec(1, int, lo=1)
    lam: tuple[float, ...] = spec((1e-3,), "floats", lo=0.0, grid=True)
    eta: tuple[float, ...] = spec((0.1,), "floats", lo=0.0, lo_open=True, grid=True)
    label_noise: float = spec(0.0, float, lo=0.0)
    temperature: float = spec(0.0, float, lo=0.0)
    momentum: float | None = spec(None, float, lo=0.0, optional=True)
    schedule_steps: tuple[int, ...] = spec((), "ints", lo=1)
    lam_factors: tuple[float, ...] | None = spec(None, "floats", lo=0.0, optional=True)
    eta_factors: tuple[float, ...] | None = spec(
        None, "floats", lo=0.0, lo_open=True, optional=True
    )

    def _check(self):
        n = self.n_phases
        if list(self.schedule_steps) != sorted(set(self.schedule_steps)):
            raise ConfigError(
                f"optimizer.schedule_steps = {list(self.schedule_steps)}: must be strictly "
                "increasing"
            )
        for name in ("lam_factors", "eta_factors"):
            factors = getattr(self, name)
            if factors is not None and len(factors) != n:
                raise ConfigError(
                    f"optimizer.{name} has {len(factors)} values: must have one per phase "
                    f"(len(schedule_steps) + 1 = {n})"
                )
        lf, ef = self.factors("lam"), self.factors("eta")
        worst = 2 * max(self.eta) * max(self.lam) * max(a * b for a, b in zip(lf, ef, strict=True))
        if worst >= 1.0:
            raise ConfigError(
                f"optimizer.eta, optimizer.lam: 2 * eta * lam = {worst:g} must be < 1"
                " (the weight-decay factor 1 - 2 eta lam must stay positive)"
            )
        if self.kind == "label_noise" and self.label_noise == 0.0:
            raise ConfigError('optimizer.label_noise must be > 0 with kind = "label_noise"')
        if self.kind == "langevin" and self.temperature == 0.0:
            raise ConfigError('optimizer.temperature must be > 0 with kind = "langevin"')
        if self.momentum is not None and self.kind != "sgd_momentum":
            raise ConfigError(
                f'optimizer.momentum = {self.momentum}: only used with kind = "sgd_momentum"'
            )
        if self.kind == "sgd_momentum" and self.momentum is None:
            object.__setattr__(self, "momentum", 0.9)
        if self.momentum is not None and self.momentum >= 1.0:
            raise ConfigError(f"optimizer.momentum = {self.momentum}: must be < 1")

    @property
    def n_phases(self) -> int:
        """Number of constant phases of the schedule (1 without a schedule)."""
        return len(self.schedule_steps) + 1

    def factors(self, name: str) -> tuple[float, ...]:
        """Per-phase factors of "lam" or "eta" (all 1.0 when not given)."""
        given = getattr(self, f"{name}_factors")
        return (1.0,) * self.n_phases if given is None else given


@dataclass(frozen=True)
class RunConfig(Section):
    """How many trajectories, how long, how often recorded, in which precision.

    ``steps`` must be a multiple of ``record_every``; checkpoints are taken at step 0 and every
    ``record_every`` steps. A trajectory is flagged diverged at the first checkpoint where
    ||theta||^2 is non-finite or exceeds ``diverge_norm2``.
    """

    _name = "run"
    trajectories: int = spec(256, int, lo=1, hi=100_000_000)
    steps: int = spec(10_000, int, lo=1, hi=2**31 - 1)  # step counters are int32
    record_every: int = spec(100, int, lo=1, hi=2**31 - 1)
    seed: int = spec(0, int, lo=0, hi=2**32 - 1)
    chunk_size: int = spec(512, int, lo=1, hi=10_000_000)
    dtype: str = spec("float32", str, choices=("float32", "float64"))
    diverge_norm2: float = spec(1e8, float, lo=0.0, lo_open=True)

    def _check(self):
        if self.steps % self.record_every:
            raise ConfigError(
                f"run.record_every = {self.record_every}: must divide run.steps = {self.steps}"
            )

    @property
    def n_checkpoints(self) -> int:
        """Checkpoints including the initial state at step 0."""
        return self.steps // self.record_every + 1


@dataclass(frozen=True)
class RankConfig(Section):
    """How ranks are judged.

    ``threshold``: per-layer singular values above it count; "auto" uses the absorption bound
    ``safety * (2 lam / rho)^(1/(L-2))`` (docs/theory.md,
    :func:`rankjump.model.ranks.thresholds_for`).
    ``rule``: how per-layer ranks make the network's rank (the recorded ``rank``):
    "all_layers" (default) the largest per-layer rank, so rank <= r means every layer has at most
    r singular values above threshold (the absorbing set B_r); "any_layer" the smallest (the
    bottleneck of A_theta); "end_to_end" the numerical rank of A_theta.
    ``k_max``: how many leading singular values of A_theta are stored (default min(d, width, 8)).
    """

    _name = "rank"
    threshold: str | float = spec("auto", "threshold", lo=0.0, lo_open=True)
    rule: str = spec("all_layers", str, choices=("all_layers", "any_layer", "end_to_end"))
    safety: float = spec(0.5, float, lo=0.0, lo_open=True, hi=1.0)
    k_max: int | None = spec(None, int, lo=1, optional=True)


@dataclass(frozen=True)
class RareConfig(Section):
    """Rare jumps (``rankjump rare``): P(enter B_{target_rank} within ``run.steps``) from the
    configured start, per (lam, eta) cell, as the mean of independent runs.

    The default method is ``"flux"`` (below): it has no model and no score, and it is the one
    validated against plain Monte Carlo down to P near 1.5e-5 (docs/theory.md, section 6).
    ``runs = "auto"`` (the default) adds batches of ``auto_batch`` runs to a cell until its runs
    pass the diagnostics (:mod:`rankjump.stats.diagnostics`), it holds ``max_runs`` runs, or they
    have cost ``budget`` trajectory-steps (when given); the result says which, per cell. A whole
    number fixes the runs.

    ``method = "ams"`` (:mod:`rankjump.rare_events.splitting`): adaptive multilevel splitting,
    runs of ``replicas`` replicas; ``kill`` replicas (and all ties) are killed per iteration and
    cloned from survivors; checkpoints (every ``run.record_every`` steps) are where replicas are
    scored and branch. 40 runs give a 95% interval within about +-30% of the estimate in the
    demo's setting at eta 0.17 (P near 0.02 within 16,000 steps; 10 runs gave +-60%); below
    about 1e-3 most of its runs die out on ties there (docs/theory.md).
    ``score``: how close a replica is to the target set (the estimate is unbiased for any score;
    the score sets its variance): "layer_mean" the mean over layers of how far each layer's
    vanishing singular value has fallen, on a log scale, from its start toward the threshold;
    "largest_layer" the same for the largest of them (the layer furthest from the target);
    "smallest_layer" for the smallest; "lead_mean" the mean of "smallest_layer" and "layer_mean".
    ``target_rank``: default one below the start rank.

    ``method = "rate"`` (:mod:`rankjump.rare_events.rate`) estimates instead the rate of kicks out
    of the start's basin: windows of ``window`` steps (scored every ``window_every``) start from
    ``pool`` basin states (after ``burn_in`` steps); a kick is a layer's vanishing value below
    ``kick`` (< 1) times its start value; the kicked states are continued over ``commit_steps``
    steps (a multiple of gcd(run.record_every, 100), the stride they are looked at; default:
    twice the pure weight-decay time to the threshold) to see whether they enter
    B_{target_rank} before falling back into the basin: ``commit = "split"`` by one AMS run per
    window run (``replicas``, ``kill``, scored by ``commit_score``; a run whose weight falls below
    ``commit_floor`` stops at 0, a bias below that in the committor), ``"continue"`` by
    ``commit_reps`` plain continuations of each kicked state; P(run.steps) follows from the rate.

    ``method = "flux"`` (:mod:`rankjump.rare_events.flux`) sums, over the kicks that plain paths
    from the start meet, the probability that each kick's excursion enters B_{target_rank} by
    ``run.steps`` before it is back in the basin: each run steps ``paths`` plain paths, looks at
    them every ``run.record_every`` steps for kicks (``kick``), and continues every kicked state
    ``commit_reps`` times until it enters, or is back in the basin (every layer's value at least
    ``basin`` (0.7) times its start value; flux and rate). No model and no score: unbiased
    whatever ``kick``, ``basin`` and the stride;
    P at every checkpoint, and plain Monte Carlo's estimate from the same paths, come with it.
    """

    _name = "rare"
    method: str = spec("flux", str, choices=("ams", "rate", "flux"))
    replicas: int = spec(100, int, lo=2, hi=1_000_000)
    kill: int = spec(10, int, lo=1)
    runs: int | str = spec("auto", "auto_int", lo=2, hi=100_000)
    max_runs: int = spec(400, int, lo=2, hi=100_000)
    auto_batch: int = spec(20, int, lo=1, hi=100_000)
    budget: float | None = spec(None, float, lo=0.0, lo_open=True, optional=True)
    score: str = spec("layer_mean", str, choices=SCORE_NAMES)
    target_rank: int | None = spec(None, int, lo=0, optional=True)
    max_iterations: int = spec(100_000, int, lo=1)
    window: int = spec(2000, int, lo=2, hi=2**31 - 1)  # step counters are int32
    window_every: int = spec(4, int, lo=1)
    kick: float = spec(0.3, float, lo=0.0, lo_open=True, hi=1.0)
    basin: float = spec(0.7, float, lo=0.0, lo_open=True, hi=1.0)
    burn_in: int = spec(5000, int, lo=0, hi=2**31 - 1)
    pool: int = spec(1024, int, lo=1)
    commit_steps: int | None = spec(None, int, lo=1, hi=2**31 - 1, optional=True)
    commit: str = spec("split", str, choices=("split", "continue"))
    commit_score: str = spec("lead_mean", str, choices=SCORE_NAMES)
    commit_floor: float = spec(1e-6, float, lo=0.0, hi=0.5)
    commit_reps: int = spec(16, int, lo=1)
    paths: int = spec(4096, int, lo=1, hi=1 << 24)

    def _check(self):
        if self.kill >= self.replicas:
            raise ConfigError(f"rare.kill = {self.kill}: must be < rare.replicas = {self.replicas}")
        if self.kick >= 1.0:
            raise ConfigError(
                f"rare.kick = {self.kick}: must be < 1 (a kick is a fall of a layer's value below "
                "rare.kick times its start value: at 1 the start itself is kicked)"
            )
        if not self.kick < self.basin:
            raise ConfigError(
                f"rare.basin = {self.basin}: must be above rare.kick = {self.kick} (a state is "
                "in the basin while every layer's value is at least rare.basin times its start "
                "value, and a kick is a fall below rare.kick of it)"
            )
        if self.window % self.window_every:
            raise ConfigError(
                f"rare.window = {self.window}: must be a multiple of rare.window_every = "
                f"{self.window_every}"
            )
