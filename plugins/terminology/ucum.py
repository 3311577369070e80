"""UCUM unit conversion for quantity search, with ``ucumvert`` (UCUM's grammar and unit table
on top of ``pint``): no hand-written table of units.

A conversion is defined only between units of one dimension: ``mmol/L`` converts to
``umol/L`` but not to ``mg/dL`` (mass against amount of substance needs the analyte's molar
mass), so a glucose stored in ``mg/dL`` is never matched silently by a search in ``mmol/L``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from fhirhub.sdk import UnitConversion

_lock = threading.Lock()
_registry: Any = None


def registry() -> Any:
    """The UCUM-aware pint registry (built once per process: a few seconds)."""
    global _registry
    with _lock:
        if _registry is None:
            from ucumvert import PintUcumRegistry

            _registry = PintUcumRegistry()
        return _registry


@lru_cache(maxsize=4096)
def _unit(code: str) -> Any:
    try:
        return registry().from_ucum(code)
    except Exception:
        return None


@lru_cache(maxsize=4096)
def conversion(source: str, target: str) -> UnitConversion | None:
    """How a value in ``source`` reads in ``target``; None when they do not convert."""
    if source == target:
        return UnitConversion(1.0)
    a, b = _unit(source), _unit(target)
    if a is None or b is None:
        return None
    ureg = registry()
    try:
        zero = ureg.Quantity(0.0, a.units if hasattr(a, "units") else a).to(
            b.units if hasattr(b, "units") else b
        )
        one = ureg.Quantity(1.0, a.units if hasattr(a, "units") else a).to(
            b.units if hasattr(b, "units") else b
        )
        scale_a = float(getattr(a, "magnitude", 1.0))
        scale_b = float(getattr(b, "magnitude", 1.0))
    except Exception:  # pint's DimensionalityError and offset-unit errors
        return None
    offset = float(zero.magnitude) / scale_b
    factor = (float(one.magnitude) - float(zero.magnitude)) * scale_a / scale_b
    return UnitConversion(factor, offset)


def conversions(code: str, stored: Sequence[str]) -> dict[str, UnitConversion]:
    """The stored units a value in ``code`` converts into. A code UCUM does not define (a
    client's ``mmHg``) matches itself only, as without conversion."""
    out = {code: UnitConversion(1.0)}
    if _unit(code) is None:
        return out
    for unit in stored:
        found = conversion(code, unit)
        if found is not None:
            out[unit] = found
    return out
