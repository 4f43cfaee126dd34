"""Field rules: each dataclass field carries its type and range, checked on construction into
one-line :class:`ConfigError` messages that name the field."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import field
from typing import Any

__all__ = [
    "ConfigError",
    "Section",
    "check_field",
    "shown_value",
    "spec",
    "unknown_message",
    "unknown_section_message",
]


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


def spec(
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
        "auto_int": '"auto" or an integer',
    }[kind]


def shown_value(value: Any) -> str:
    """A configuration value as the message quoting it prints it: as TOML writes a bool and a
    list (``true``, ``[1, 2]``), as Python writes the rest (a string in quotes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown_value(v) for v in value) + "]"
    return repr(value)


def check_field(section: str, f: dataclasses.Field, value: Any) -> Any:
    """Validate one value against the field's rule; return it normalised."""
    m = f.metadata
    name = f"{section}.{f.name}"
    if value is None:
        if m["optional"]:
            return None
        raise ConfigError(f"{name} is required")
    kind = m["kind"]
    if kind in ("threshold", "auto_int"):
        if value == "auto":
            return value
        if isinstance(value, str):
            raise ConfigError(f"{name} = {shown_value(value)}: must be {_describe(kind)}")
        kind = float if kind == "threshold" else int
    if kind in ("floats", "ints"):
        scalar = float if kind == "floats" else int
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)) or (kind == "floats" and not value):
            empty = " (non-empty)" if kind == "floats" else ""
            raise ConfigError(f"{name} = {shown_value(value)}: must be {_describe(kind)}{empty}")
        values = tuple(_check_scalar(name, scalar, v, m) for v in value)
        return _grid(name, values) if m["grid"] else values
    return _check_scalar(name, kind, value, m)


def _grid(name: str, values: tuple) -> tuple:
    """Grid values sorted ascending (cells, files and figures follow that order); a value given
    twice is refused, since two cells would share one coordinate."""
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise ConfigError(
            f"{name} = {shown_value(values)}: {twice[0]!r} is given twice; list each once"
        )
    return tuple(sorted(values))


def _check_scalar(name: str, kind, value: Any, m: dict) -> Any:
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} = {shown_value(value)}: must be a string")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} = {shown_value(value)}: must be an integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} = {shown_value(value)}: must be a number")
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(f"{name} = {shown_value(value)}: must be finite") from None
        if not math.isfinite(value):
            raise ConfigError(f"{name} = {shown_value(value)}: must be finite")
    if m["choices"] is not None and value not in m["choices"]:
        allowed = " | ".join(repr(c) for c in m["choices"])
        raise ConfigError(f"{name} = {shown_value(value)}: must be one of {allowed}")
    lo, hi = m["lo"], m["hi"]
    if lo is not None and (value <= lo if m["lo_open"] else value < lo):
        raise ConfigError(
            f"{name} = {shown_value(value)}: must be {'>' if m['lo_open'] else '>='} {lo}"
        )
    if hi is not None and value > hi:
        raise ConfigError(f"{name} = {shown_value(value)}: must be <= {hi}")
    return value


class Section:
    """Validates every field on construction (frozen dataclasses call this)."""

    _name = ""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_field(self._name, f, getattr(self, f.name)))
        self._check()

    def _check(self) -> None:
        """Cross-field rules of one section."""


def _shown(name: str) -> str:
    """A user-given name as it can be printed on one line (quoted when not a plain word)."""
    return name if name.replace("_", "").isalnum() and name.isascii() else repr(name)


def _closest(name: str, valid) -> str | None:
    """The valid name closest to ``name``, case aside (``RARE`` -> ``rare``), or None."""
    lower = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(name.lower(), list(lower), n=1)
    return lower[close[0]] if close else None


def unknown_section_message(name: str, sections) -> str:
    """The message for a section ``name`` not among ``sections``, with the closest one."""
    close = _closest(name, sections)
    hint = f"; did you mean [{close}]?" if close else f"; sections: {', '.join(sections)}"
    return f"[{_shown(name)}]: unknown section{hint}"


def unknown_message(section: str, key: str, cls) -> str:
    valid = [f.name for f in dataclasses.fields(cls)]
    close = _closest(key, valid)
    hint = f"; did you mean {section}.{close}?" if close else f"; valid keys: {', '.join(valid)}"
    return f"{section}.{_shown(key)}: unknown key{hint}"
