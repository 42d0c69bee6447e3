"""Parse resource quantities: plain numbers, or byte sizes such as "16GiB" or "512MB"."""

from __future__ import annotations

import math
import re

from autoscaler.errors import ConfigError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_quantity(value: float | int | str) -> float:
    """Return a non-negative finite number from a number or a string with a size suffix."""
    if isinstance(value, bool):
        raise ConfigError(f"expected a number or a size like '16GiB', got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise ConfigError(f"not a quantity: {value!r} (examples: 2, 0.5, '16GiB', '512MB')")
        number = float(match.group(1)) * _UNITS[unit]
    else:
        raise ConfigError(f"expected a number or a size like '16GiB', got {type(value).__name__}")
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"quantity must be finite and >= 0, got {value!r}")
    return number
