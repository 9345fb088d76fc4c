"""One-line config validation helpers (raise :class:`ConfigError`)."""

from __future__ import annotations

from typing import Any

from robot_rl.core.errors import ConfigError


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_choice(field_name: str, value: Any, allowed: tuple) -> None:
    check(
        value in allowed,
        f"{field_name}={value!r} is not valid; choose one of: {', '.join(map(str, allowed))}",
    )


def check_positive(field_name: str, value: float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    check(ok, f"{field_name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
