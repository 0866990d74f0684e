"""Checks of configuration and argument values, one wording each: every error names the value, what it got
and what would be valid, the same way everywhere."""

from __future__ import annotations

from typing import Any


def check_positive_int(name: str, value: Any, *, optional: bool = False) -> None:
    """`value` must be an int >= 1 (bools are not counts); None too when `optional`."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        valid = "an int >= 1 or None" if optional else "an int >= 1"
        raise ValueError(f"{name} must be {valid}, got {value!r}")


def check_positive_ints(owner: Any, *names: str, prefix: str = "") -> None:
    """check_positive_int for each named attribute of `owner` (a config), reported as `prefix + name`."""
    for name in names:
        check_positive_int(prefix + name, getattr(owner, name))


def check_fraction(name: str, value: Any) -> None:
    """A rate of dropping or smoothing: a number in [0, 1) (1 would leave nothing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
