"""``--set SECTION.KEY=VALUE``: change configuration fields from the command line.

A value is read as a TOML value (``run.steps=1000``, ``optimizer.eta=[0.1, 0.2]``,
``network.init="gd_minimum"``); a bare word that is not TOML is taken as a string
(``network.init=gd_minimum``). The changed configuration is validated as a file is, so a bad
value is refused naming its field, and it is what the result file records.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rankjump.config import Config, ConfigError, config_from_dict, config_to_toml

__all__ = ["parse_override", "with_overrides"]


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"section.key=value"`` -> ``(section, key, value)``."""
    name, eq, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not eq or not dot or not section or not key or "." in key:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. run.steps=1000")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: a string
    return section, key, value


def with_overrides(cfg: Config, overrides: Sequence[str] = ()) -> Config:
    """``cfg`` with each ``SECTION.KEY=VALUE`` of ``overrides`` applied in order, validated.

    A relative ``network.init_file`` given here is taken relative to the working directory.
    """
    if not overrides:
        return cfg
    data = tomllib.loads(config_to_toml(cfg))
    for text in overrides:
        section, key, value = parse_override(text)
        if section == "network" and key == "init_file" and isinstance(value, str):
            value = str(Path(value).absolute())
        data.setdefault(section, {})[key] = value
    return config_from_dict(data)
