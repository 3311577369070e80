"""Small readers of OSCAR's loosely typed column values."""

from __future__ import annotations

import re
from typing import Any

_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*$")


def text(value: Any) -> str | None:
    """A stripped string, or None for empty/NULL."""
    if value is None:
        return None
    out = str(value).strip()
    return out or None


def flag(value: Any) -> bool:
    """OSCAR's booleans: tinyint 0/1, char '0'/'1', 'Y'/'N', true/false."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int | float):
        return value != 0
    return str(value).strip().lower() in ("1", "y", "yes", "true", "t")


def number(value: Any) -> float | None:
    """A decimal number, or None when the value is not one."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    found = _NUMBER.match(str(value))
    return float(found.group(0)) if found else None


def fhir_decimal(value: float) -> int | float:
    """An integral float as an int (``70`` rather than ``70.0`` in the JSON)."""
    return int(value) if value == int(value) else value
