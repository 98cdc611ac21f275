"""Scalar settings checked one by one: an integer, a number, a flag, or one ``ConfigError`` line naming
the key (a YAML string such as 'abc' is never silently turned into a value)."""

from __future__ import annotations

import re
from typing import Any

from solo_mlvgm.errors import ConfigError

_INTEGER = re.compile(r"\s*-?\d+\s*", re.ASCII)  # ASCII only: all of it int() reads


def integer(value: Any, key: str, minimum: int | None = None) -> int:
    """``value`` as an int (``key`` names it in the error), at least ``minimum``."""
    if isinstance(value, int) and not isinstance(value, bool):
        out = value
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    elif isinstance(value, str) and _INTEGER.fullmatch(value):
        out = int(value)
    else:
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if minimum is not None and out < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {out}")
    return out


def number(value: Any, key: str, minimum: float | None = None) -> float:
    """``value`` as a float (``key`` names it in the error), at least ``minimum``."""
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if out != out:
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if minimum is not None and out < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {out}")
    return out


def flag(value: Any, key: str) -> bool:
    """``value`` as a bool: true or false only (a string such as 'abc' is an error, not True)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value
