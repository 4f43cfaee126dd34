"""Typed, validated, frozen settings and TOML loading.

A configuration has five sections (README.md, configuration): ``[task]``, ``[network]``,
``[optimizer]``, ``[run]`` and ``[rank]``. Every field has a type and an allowed range; a bad
value raises :class:`ConfigError` (a ``ValueError``) whose one-line message names the field, e.g.
``network.depth = 0: must be >= 1``. Unknown keys get the closest valid key suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Config",
    "ConfigError",
    "NetworkConfig",
    "OptimizerConfig",
    "RankConfig",
    "RunConfig",
    "TaskConfig",
    "config_from_dict",
    "config_to_toml",
    "load_config",
    "loads_config",
]


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


def _spec(
    default, kind, *, lo=None, hi=None, lo_open=False, choices=None, optional=False, grid=False
):
    """A dataclass field carrying its validation rule in the metadata (``grid``: a list of grid
    values, kept sorted ascending, each value once)."""
    meta = dict(
        kind=kind, lo=lo, hi=hi, lo_open=lo_open, choices=choices, optional=optional, grid=grid
    )
    return field(default=default, metadata=meta)


def _describe(kind) -> str:
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        "floats": "a list of numbers",
        "ints": "a list of integers",
        "threshold": '"auto" or a positive number',
    }[kind]


def _check_field(section: str, f: dataclasses.Field, value: Any) -> Any:
    """Validate one value against the field's rule; return it normalised."""
    m = f.metadata
    name = f"{section}.{f.name}"
    if value is None:
        if m["optional"]:
            return None
        raise ConfigError(f"{name} is required")
    kind = m["kind"]
    if kind == "threshold":
        if value == "auto":
            return value
        if isinstance(value, str):
            raise ConfigError(f"{name} = {value!r}: must be {_describe('threshold')}")
        kind = float
    if kind in ("floats", "ints"):
        scalar = float if kind == "floats" else int
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)) or (kind == "floats" and not value):
            empty = " (non-empty)" if kind == "floats" else ""
            raise ConfigError(f"{name} = {value!r}: must be {_describe(kind)}{empty}")
        values = tuple(_check_scalar(name, scalar, v, m) for v in value)
        return _grid(name, values) if m["grid"] else values
    return _check_scalar(name, kind, value, m)


def _grid(name: str, values: tuple) -> tuple:
    """Grid values sorted ascending (cells, files and figures follow that order); a value given
    twice is refused, since two cells would share one coordinate."""
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise ConfigError(f"{name} = {list(values)}: {twice[0]!r} is given twice; list each once")
    return tuple(sorted(values))


def _check_scalar(name: str, kind, value: Any, m: dict) -> Any:
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} = {value!r}: must be a string")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} = {value!r}: must be an integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} = {value!r}: must be a number")
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(f"{name} = {value!r}: must be finite") from None
        if not math.isfinite(value):
            raise ConfigError(f"{name} = {value!r}: must be finite")
    if m["choices"] is not None and value not in m["choices"]:
        allowed = " | ".join(repr(c) for c in m["choices"])
        raise ConfigError(f"{name} = {value!r}: must be one of {allowed}")
    lo, hi = m["lo"], m["hi"]
    if lo is not None and (value <= lo if m["lo_open"] else value < lo):
        raise ConfigError(f"{name} = {value!r}: must be {'>' if m['lo_open'] else '>='} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{name} = {value!r}: must be <= {hi}")
    return value


class _Section:
    """Validates every field on construction (frozen dataclasses call this)."""

    _name = ""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check_field(self._name, f, getattr(self, f.name)))
        self._check()

    def _check(self) -> None:
        """Cross-field rules of one section."""


@dataclass(frozen=True)
class TaskConfig(_Section):
    """Matrix completion: a rank-``rank`` target of shape (d_out, d_in), partly observed.

    The target has the given ``singular_values`` with Haar-random U, V, or (when omitted) is a
    product of i.i.d. Gaussian factors, rescaled to Frobenius norm ``target_norm`` when given.
    Exactly round(observed * d_out * d_in) entries are observed; ``noise`` is the std of fixed
    i.i.d. Gaussian noise added to the observed targets.
    """

    _name = "task"
    kind: str = _spec("matrix_completion", str, choices=("matrix_completion",))
    d_out: int = _spec(10, int, lo=1, hi=100_000)
    d_in: int = _spec(10, int, lo=1, hi=100_000)
    rank: int = _spec(1, int, lo=1)
    observed: float = _spec(0.5, float, lo=0.0, lo_open=True, hi=1.0)
    singular_values: tuple[float, ...] | None = _spec(
        None, "floats", lo=0.0, lo_open=True, optional=True
    )
    target_norm: float | None = _spec(None, float, lo=0.0, lo_open=True, optional=True)
    noise: float = _spec(0.0, float, lo=0.0)
    seed: int = _spec(0, int, lo=0, hi=2**32 - 1)

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
class NetworkConfig(_Section):
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
    depth: int = _spec(3, int, lo=1, hi=64)
    width: int = _spec(10, int, lo=1, hi=100_000)
    init: str = _spec("gaussian", str, choices=("gaussian", "balanced", "gd_minimum", "file"))
    init_scale: float = _spec(1.0, float, lo=0.0, lo_open=True)
    init_rank: int | None = _spec(None, int, lo=1, optional=True)
    init_file: str | None = _spec(None, str, optional=True)
    seed: int = _spec(0, int, lo=0, hi=2**32 - 1)
    gd_eta: float = _spec(0.02, float, lo=0.0, lo_open=True)
    gd_tol: float = _spec(1e-10, float, lo=0.0, lo_open=True)
    gd_max_steps: int = _spec(2_000_000, int, lo=1)
    gd_start: str = _spec("shared", str, choices=("shared", "per_trajectory"))

    def _check(self):
        if self.gd_start == "per_trajectory" and self.init != "gd_minimum":
            raise ConfigError(
                'network.gd_start = "per_trajectory": needs network.init = "gd_minimum"'
            )
        if self.init == "balanced" and self.init_rank is None:
            raise ConfigError('network.init_rank is required with init = "balanced"')
        if self.init == "file" and self.init_file is None:
            raise ConfigError('network.init_file is required with init = "file"')


@dataclass(frozen=True)
class OptimizerConfig(_Section):
    """The dynamics and the (lam, eta) grid.

    ``kind``: "sgd" (``batch_size`` entries drawn with replacement per step), "gd" (exact mean
    over the observed entries), "label_noise" (sgd on targets plus fresh N(0, label_noise^2)
    noise each step) or "langevin" (gd plus sqrt(2 eta temperature) isotropic noise).
    ``lam`` and ``eta`` are lists: every pair is one cell of the grid. They are kept sorted
    ascending (as the result file's coordinates are); a value listed twice is refused.

    Schedules (annealing) are piecewise constant: phase p starts at step ``schedule_steps[p-1]``
    (phase 0 at step 0) and runs with ``lam * lam_factors[p]`` and ``eta * eta_factors[p]``, for
    every cell's (lam, eta). The factors are traced, so every schedule with the same number of
    phases runs in one compiled program. Ranks are judged with the last phase's lam.
    """

    _name = "optimizer"
    kind: str = _spec("sgd", str, choices=("sgd", "gd", "label_noise", "langevin"))
    batch_size: int = _spec(1, int, lo=1)
    lam: tuple[float, ...] = _spec((1e-3,), "floats", lo=0.0, grid=True)
    eta: tuple[float, ...] = _spec((0.1,), "floats", lo=0.0, lo_open=True, grid=True)
    label_noise: float = _spec(0.0, float, lo=0.0)
    temperature: float = _spec(0.0, float, lo=0.0)
    schedule_steps: tuple[int, ...] = _spec((), "ints", lo=1)
    lam_factors: tuple[float, ...] | None = _spec(None, "floats", lo=0.0, optional=True)
    eta_factors: tuple[float, ...] | None = _spec(
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

    @property
    def n_phases(self) -> int:
        """Number of constant phases of the schedule (1 without a schedule)."""
        return len(self.schedule_steps) + 1

    def factors(self, name: str) -> tuple[float, ...]:
        """Per-phase factors of "lam" or "eta" (all 1.0 when not given)."""
        given = getattr(self, f"{name}_factors")
        return (1.0,) * self.n_phases if given is None else given


@dataclass(frozen=True)
class RunConfig(_Section):
    """How many trajectories, how long, how often recorded, in which precision.

    ``steps`` must be a multiple of ``record_every``; checkpoints are taken at step 0 and every
    ``record_every`` steps. A trajectory is flagged diverged at the first checkpoint where
    ||theta||^2 is non-finite or exceeds ``diverge_norm2``.
    """

    _name = "run"
    trajectories: int = _spec(256, int, lo=1, hi=100_000_000)
    steps: int = _spec(10_000, int, lo=1, hi=2**31 - 1)  # step counters are int32
    record_every: int = _spec(100, int, lo=1, hi=2**31 - 1)
    seed: int = _spec(0, int, lo=0, hi=2**32 - 1)
    chunk_size: int = _spec(512, int, lo=1, hi=10_000_000)
    dtype: str = _spec("float32", str, choices=("float32", "float64"))
    diverge_norm2: float = _spec(1e8, float, lo=0.0, lo_open=True)

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
class RankConfig(_Section):
    """How ranks are judged.

    ``threshold``: per-layer singular values above it count; "auto" uses the absorption bound
    ``safety * (2 lam / rho)^(1/(L-2))`` (docs/theory.md; :func:`rankjump.ranks.thresholds_for`).
    ``rule``: how per-layer ranks make the network's rank (the recorded ``rank``):
    "all_layers" (default) the largest per-layer rank, so rank <= r means every layer has at most
    r singular values above threshold (the absorbing set B_r); "any_layer" the smallest (the
    bottleneck of A_theta); "end_to_end" the numerical rank of A_theta.
    ``k_max``: how many leading singular values of A_theta are stored (default min(d, width, 8)).
    """

    _name = "rank"
    threshold: str | float = _spec("auto", "threshold", lo=0.0, lo_open=True)
    rule: str = _spec("all_layers", str, choices=("all_layers", "any_layer", "end_to_end"))
    safety: float = _spec(0.5, float, lo=0.0, lo_open=True, hi=1.0)
    k_max: int | None = _spec(None, int, lo=1, optional=True)


_SECTIONS = {
    "task": TaskConfig,
    "network": NetworkConfig,
    "optimizer": OptimizerConfig,
    "run": RunConfig,
    "rank": RankConfig,
}


@dataclass(frozen=True)
class Config:
    """A whole validated configuration."""

    task: TaskConfig = field(default_factory=TaskConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    run: RunConfig = field(default_factory=RunConfig)
    rank: RankConfig = field(default_factory=RankConfig)

    def __post_init__(self):
        n, t, o = self.network, self.task, self.optimizer
        for b in o.schedule_steps:
            if b >= self.run.steps or b % self.run.record_every:
                raise ConfigError(
                    f"optimizer.schedule_steps = {list(o.schedule_steps)}: each must be a "
                    f"multiple of run.record_every = {self.run.record_every} below run.steps = "
                    f"{self.run.steps}"
                )
        if n.init_rank is not None and n.init_rank > min(t.d_out, t.d_in, n.width):
            raise ConfigError(
                f"network.init_rank = {n.init_rank}: must be <= min(d_out, d_in, "
                f"width) = {min(t.d_out, t.d_in, n.width)}"
            )
        if self.optimizer.kind in ("sgd", "label_noise") and (
            self.optimizer.batch_size > t.n_observed
        ):
            raise ConfigError(
                f"optimizer.batch_size = {self.optimizer.batch_size}: must be <= "
                f"the number of observed entries ({t.n_observed})"
            )

    @property
    def k_max(self) -> int:
        """Number of leading singular values of A_theta stored per checkpoint."""
        full = min(self.task.d_out, self.task.d_in, self.network.width)
        return min(self.rank.k_max or 8, full)

    def replace(self, **sections: dict[str, Any]) -> Config:
        """A copy with some fields changed: ``cfg.replace(run={"steps": 100})``."""
        for name, body in sections.items():
            if name not in _SECTIONS:
                raise ConfigError(_unknown_section_message(name))
            if not isinstance(body, dict):
                raise ConfigError(f"[{name}]: must be a table of fields")
        new = {}
        for name, cls in _SECTIONS.items():
            current = dataclasses.asdict(getattr(self, name))
            unknown = set(sections.get(name, {})) - set(current)
            if unknown:
                raise ConfigError(_unknown_message(name, sorted(unknown)[0], cls))
            current.update(sections.get(name, {}))
            new[name] = cls(**current)
        return Config(**new)


def _shown(name: str) -> str:
    """A user-given name as it can be printed on one line (quoted when not a plain word)."""
    return name if name.replace("_", "").isalnum() and name.isascii() else repr(name)


def _unknown_section_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(_SECTIONS), n=1)
    hint = f"; did you mean [{close[0]}]?" if close else f"; sections: {', '.join(_SECTIONS)}"
    return f"[{_shown(name)}]: unknown section{hint}"


def _unknown_message(section: str, key: str, cls) -> str:
    valid = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {section}.{close[0]}?" if close else f"; valid keys: {', '.join(valid)}"
    return f"{section}.{_shown(key)}: unknown key{hint}"


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from nested dictionaries (a parsed TOML document)."""
    if not isinstance(data, dict):
        raise ConfigError("configuration must be a table of sections")
    sections = {}
    for name, body in data.items():
        if name not in _SECTIONS:
            raise ConfigError(_unknown_section_message(name))
        if not isinstance(body, dict):
            raise ConfigError(f"[{name}]: must be a table")
        cls = _SECTIONS[name]
        valid = {f.name for f in dataclasses.fields(cls)}
        for key in body:
            if key not in valid:
                raise ConfigError(_unknown_message(name, key, cls))
        sections[name] = cls(**body)
    return Config(**sections)


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML configuration file. A relative ``network.init_file`` is taken
    relative to the file's folder (and recorded as an absolute path)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read configuration ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a TOML configuration (not UTF-8 text)") from None
    cfg = loads_config(text, source=str(path))
    init_file = cfg.network.init_file
    if init_file is not None and not Path(init_file).is_absolute():
        cfg = cfg.replace(network={"init_file": str((path.parent / init_file).absolute())})
    return cfg


def loads_config(text: str, source: str = "<string>") -> Config:
    """Parse and validate TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML ({err})") from None
    return config_from_dict(data)


def _toml_char(c: str) -> str:
    """One character of a TOML basic string, escaped where TOML requires it."""
    if c in ('"', "\\"):
        return "\\" + c
    if ord(c) < 0x20 or ord(c) == 0x7F:
        return f"\\u{ord(c):04x}"
    return c


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + "".join(_toml_char(c) for c in value) + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def config_to_toml(cfg: Config) -> str:
    """Serialise a configuration as TOML text; ``loads_config`` reads it back unchanged."""
    lines = []
    for name in _SECTIONS:
        lines.append(f"[{name}]")
        for key, value in dataclasses.asdict(getattr(cfg, name)).items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
