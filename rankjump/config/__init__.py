"""Typed, validated, frozen settings and TOML loading.

A configuration has six sections (README.md, configuration): ``[task]``, ``[network]``,
``[optimizer]``, ``[run]``, ``[rank]`` and ``[rare]`` (used by ``rankjump rare`` only). Every
field has a type and an allowed range; a bad value raises :class:`ConfigError` (a
``ValueError``) whose one-line message names the field, e.g. ``network.depth = 0: must be >= 1``.
Unknown keys get the closest valid key suggested.
"""

from rankjump.config.demo import DEMO_CONFIG, demo_config
from rankjump.config.fields import ConfigError
from rankjump.config.kinds import ENTRYWISE_KINDS, KINDS, KindInfo, kind_label
from rankjump.config.sections import (
    NetworkConfig,
    OptimizerConfig,
    RankConfig,
    RareConfig,
    RunConfig,
    TaskConfig,
)
from rankjump.config.toml import (
    complete_config,
    config_from_dict,
    config_to_toml,
    load_config,
    loads_config,
)
from rankjump.config.whole import SECTIONS, Config

__all__ = [
    "DEMO_CONFIG",
    "ENTRYWISE_KINDS",
    "KINDS",
    "SECTIONS",
    "Config",
    "ConfigError",
    "KindInfo",
    "NetworkConfig",
    "OptimizerConfig",
    "RankConfig",
    "RareConfig",
    "RunConfig",
    "TaskConfig",
    "complete_config",
    "config_from_dict",
    "config_to_toml",
    "demo_config",
    "kind_label",
    "load_config",
    "loads_config",
]
