"""Configurations from and to TOML."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from rankjump.config.fields import ConfigError, unknown_message, unknown_section_message
from rankjump.config.whole import SECTIONS, Config

__all__ = ["complete_config", "config_from_dict", "config_to_toml", "load_config", "loads_config"]


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from nested dictionaries (a parsed TOML document)."""
    if not isinstance(data, dict):
        raise ConfigError("configuration must be a table of sections")
    sections = {}
    for name, body in data.items():
        if name not in SECTIONS:
            raise ConfigError(unknown_section_message(name, SECTIONS))
        if not isinstance(body, dict):
            raise ConfigError(f"[{name}]: must be a table")
        cls = SECTIONS[name]
        valid = {f.name for f in dataclasses.fields(cls)}
        for key in body:
            if key not in valid:
                raise ConfigError(unknown_message(name, key, cls))
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
    for name in SECTIONS:
        lines.append(f"[{name}]")
        for key, value in dataclasses.asdict(getattr(cfg, name)).items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def complete_config(text: str) -> dict[str, Any]:
    """The configuration ``text`` as nested dictionaries with every field present, so that two
    configurations compare equal whatever fields either left at their defaults (a file written
    before a field existed matches one that writes it); as written where it no longer validates."""
    try:
        return tomllib.loads(config_to_toml(loads_config(text)))
    except ConfigError:
        return tomllib.loads(text)
