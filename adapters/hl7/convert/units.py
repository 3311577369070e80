"""Units of measure: which OBX-6 / RXA-7 / RXE-5 codes are UCUM (http://unitsofmeasure.org).

FHIR Quantity says ``system`` + ``code`` are a coded unit; labelling a unit that is not UCUM
(``mEq/L``, ``cells/uL``, ``ratio``) as UCUM makes it wrong for every consumer that converts
or compares units. So a code is sent with the UCUM system only when the UCUM grammar (the
``ucumvert`` parser, built from the official ``ucum-essence.xml``) accepts it; otherwise the
Quantity keeps the unit as text only and the conversion warns.

A valid UCUM code can still be a lab's shorthand that means something else in UCUM (``K/uL``
is kelvin per microlitre there, thousands per microlitre on the wire): the grammar cannot
tell, so such codes pass as sent.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

UCUM = "http://unitsofmeasure.org"
_lock = threading.Lock()
_parser: list[Any] = []


def _ucum_parser() -> Any:
    """The UCUM grammar's parser, built once per process on first use (~0.3 s)."""
    if not _parser:
        with _lock:
            if not _parser:
                from ucumvert import get_ucum_parser

                _parser.append(get_ucum_parser())
    return _parser[0]


@lru_cache(maxsize=4096)
def is_ucum(code: str) -> bool:
    """Whether ``code`` is a valid UCUM expression (case-sensitive, as UCUM is)."""
    if not code or code != code.strip() or len(code) > 200:
        return False
    try:
        _ucum_parser().parse(code)
    except Exception:  # lark's parse errors: not UCUM
        return False
    return True
