"""Checks for the FHIR R4 primitive datatypes in their JSON form.

http://hl7.org/fhir/R4/datatypes.html#primitive gives each primitive a regex (shipped in
``definitions/r4-structure.json``); http://hl7.org/fhir/R4/json.html#primitive says how each one
is written in JSON: ``boolean`` as a JSON boolean, ``integer``/``positiveInt``/``unsignedInt``
as JSON integers (32-bit, R4 datatypes.html#integer), ``decimal`` as a JSON number, everything
else as a non-empty JSON string. A check returns ``None`` when the value is valid, otherwise a
short reason for the diagnostics.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

Check = Callable[[Any], str | None]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

#: base64Binary: the spec's regex ``(\s*([0-9a-zA-Z\+/=]){4}\s*)+`` backtracks badly on large
#: attachments, so the equivalent test is done on the whitespace-free text.
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_WHITESPACE = re.compile(r"\s+")


def _string_check(pattern: str | None, name: str) -> Check:
    matcher = re.compile(pattern).fullmatch if pattern else None

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return f"expected a JSON string ({name}), got {_json_kind(value)}"
        if not value:
            return f"an empty string is not a valid {name}"
        if matcher is not None and matcher(value) is None:
            return f"{value[:64]!r} is not a valid {name}"
        return None

    return check


def _temporal_check(pattern: str, name: str) -> Check:
    """date, dateTime, instant: the regex plus a calendar check of the day (2023-02-30)."""
    matcher = re.compile(pattern).fullmatch

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return f"expected a JSON string ({name}), got {_json_kind(value)}"
        if matcher(value) is None:
            return f"{value[:64]!r} is not a valid {name}"
        if len(value) >= 10:
            try:
                date(int(value[0:4]), int(value[5:7]), int(value[8:10]))
            except ValueError:
                return f"{value[:64]!r} is not a valid {name} (no such day)"
        return None

    return check


def _integer_check(name: str, minimum: int) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is not int:
            return f"expected a JSON integer ({name}), got {_json_kind(value)}"
        if value < minimum or value > INT32_MAX:
            return f"{value} is out of range for {name}"
        return None

    return check


def _boolean(value: Any) -> str | None:
    if type(value) is not bool:
        return f"expected a JSON boolean, got {_json_kind(value)}"
    return None


def _decimal(value: Any) -> str | None:
    kind = type(value)
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            return "NaN and infinity are not valid decimals"
        return None
    if kind is not int:
        return f"expected a JSON number (decimal), got {_json_kind(value)}"
    return None


def _base64(value: Any) -> str | None:
    if type(value) is not str:
        return f"expected a JSON string (base64Binary), got {_json_kind(value)}"
    compact = _WHITESPACE.sub("", value) if any(c.isspace() for c in value[:80]) else value
    if len(compact) % 4 or _BASE64.fullmatch(compact) is None:
        return "not valid base64 content"
    return None


def _xhtml(value: Any) -> str | None:
    """Narrative.div: a string holding an XHTML ``div`` (R4 narrative.html#xhtml)."""
    if type(value) is not str:
        return f"expected a JSON string (xhtml), got {_json_kind(value)}"
    if not value.lstrip().startswith("<div"):
        return "narrative must be an XHTML <div> element"
    return None


def _anything(value: Any) -> str | None:
    return None


#: Meta.versionId and Meta.lastUpdated are overwritten by the server on every write
#: (R4 http.html#create), so whatever a client sent there is accepted and replaced.
SERVER_ASSIGNED: Check = _anything


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def json_kind(value: Any) -> str:
    """How a JSON value reads in a diagnostic ("an object", "a number", ...)."""
    return _json_kind(value)


def build_checks(primitives: dict[str, dict[str, Any]]) -> dict[str, Check]:
    """One check per primitive type, from the derived ``primitives`` table."""
    checks: dict[str, Check] = {}
    minimum = {"integer": INT32_MIN, "unsignedInt": 0, "positiveInt": 1}
    for name, spec in primitives.items():
        if name == "boolean":
            checks[name] = _boolean
        elif name in minimum:
            checks[name] = _integer_check(name, minimum[name])
        elif name == "decimal":
            checks[name] = _decimal
        elif name == "base64Binary":
            checks[name] = _base64
        elif name == "xhtml":
            checks[name] = _xhtml
        elif name in ("date", "dateTime", "instant"):
            checks[name] = _temporal_check(spec["regex"], name)
        elif name in ("string", "markdown"):
            # The regex ``[ \r\n\t\S]+`` only says "not empty".
            checks[name] = _string_check(None, name)
        else:
            checks[name] = _string_check(spec["regex"], name)
    return checks
