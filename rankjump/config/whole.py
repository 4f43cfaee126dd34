"""A whole configuration: its sections and the rules that join them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rankjump.config.fields import ConfigError, unknown_message, unknown_section_message
from rankjump.config.kinds import ENTRYWISE_KINDS
from rankjump.config.sections import (
    NetworkConfig,
    OptimizerConfig,
    RankConfig,
    RareConfig,
    RunConfig,
    TaskConfig,
)

__all__ = ["SECTIONS", "Config"]


SECTIONS = {
    "task": TaskConfig,
    "network": NetworkConfig,
    "optimizer": OptimizerConfig,
    "run": RunConfig,
    "rank": RankConfig,
    "rare": RareConfig,
}


@dataclass(frozen=True)
class Config:
    """A whole validated configuration."""

    task: TaskConfig = field(default_factory=TaskConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    run: RunConfig = field(default_factory=RunConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    rare: RareConfig = field(default_factory=RareConfig)

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
        if self.optimizer.kind in ENTRYWISE_KINDS and (self.optimizer.batch_size > t.n_observed):
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
            if name not in SECTIONS:
                raise ConfigError(unknown_section_message(name, SECTIONS))
            if not isinstance(body, dict):
                raise ConfigError(f"[{name}]: must be a table of fields")
        new = {}
        for name, cls in SECTIONS.items():
            current = dataclasses.asdict(getattr(self, name))
            unknown = set(sections.get(name, {})) - set(current)
            if unknown:
                raise ConfigError(unknown_message(name, sorted(unknown)[0], cls))
            current.update(sections.get(name, {}))
            new[name] = cls(**current)
        return Config(**new)
