"""Search criteria evaluated against one resource's own index rows, without SQL.

A reader of the version log that tests every new version against standing criteria (a
Subscription) would otherwise run one query per criteria per batch. The simple criteria are
answered here from the rows the :class:`~.extract.Extractor` makes for the version (the very
rows the SQL search reads once the version is indexed), with the SQL search's semantics:

* token: ``code``, ``system|code``, ``|code``, ``system|``, and ``:not``;
* reference: ``Type/id`` and a plain id (any target type);
* number and quantity with a prefix (``gt80``; a quantity's ``|system|code`` too);
* ``:missing=true|false`` on any indexed parameter; ``_id``.

Anything else (chains, ``_has``, strings, dates, URIs, composites, other modifiers) gives
``None``: the caller falls back to the SQL search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fhirhub.fhir_store.search.extract import Extractor
from fhirhub.fhir_store.search.predicates import (
    _number_matches,
    parse_name,
    parse_number,
    split_prefix,
    split_unescaped,
    unescape,
)

#: Index rows of one resource, by table kind, as :meth:`Extractor.extract` returns them.
Rows = dict[str, list[dict[str, Any]]]
RowTest = Callable[[dict[str, Any]], bool]
#: True when the resource (its id, its index rows) matches.
Matcher = Callable[[str, Rows], bool]


class Compiled:
    """A compiled criteria: its test and the parameter codes whose rows it reads (extract
    only those)."""

    def __init__(self, test: Matcher, codes: frozenset[str]) -> None:
        self.test = test
        self.codes = codes


_TABLE_OF = {"token": "token", "reference": "reference", "number": "number", "quantity": "quantity"}


def compile_criteria(
    extractor: Extractor, resource_type: str, params: Sequence[tuple[str, str]]
) -> Compiled | None:
    """A matcher for ``params`` (all must hold), or None when one of them needs SQL."""
    tests: list[Matcher] = []
    for name, value in params:
        test = _compile_one(extractor, resource_type, name, value)
        if test is None:
            return None
        tests.append(test)
    codes = frozenset(parse_name(name).code for name, _ in params) - {"_id"}
    return Compiled(lambda resource_id, rows: all(t(resource_id, rows) for t in tests), codes)


def _compile_one(extractor: Extractor, resource_type: str, name: str, value: str) -> Matcher | None:
    parsed = parse_name(name)
    if parsed.chain is not None or name.startswith("_"):
        if parsed.code == "_id" and parsed.modifier is None and parsed.chain is None:
            ids = {unescape(v) for v in split_unescaped(value, ",") if v}
            return lambda resource_id, rows: resource_id in ids
        return None
    definition = extractor.registry.get(resource_type, parsed.code)
    if definition is None or not definition.supported:
        return None
    table = _TABLE_OF.get(definition.type)
    if table is None:
        return None
    code = definition.code
    if parsed.modifier == "missing":
        if value not in ("true", "false"):
            return None
        missing = value == "true"
        return lambda resource_id, rows: missing != _has_rows(rows, table, code)
    if parsed.modifier not in (None, "not") or (parsed.modifier == "not" and table != "token"):
        return None
    values = [v for v in split_unescaped(value, ",") if v != ""]
    if not values:
        return None
    try:
        row_tests = [_row_test(table, v) for v in values]
    except Exception:  # noqa: BLE001 - malformed: let the SQL search give its 400
        return None
    if any(t is None for t in row_tests):
        return None
    checks = [t for t in row_tests if t is not None]

    def present(rows: Rows) -> bool:
        return any(
            row["param"] == code and any(check(row) for check in checks)
            for row in rows.get(table, ())
        )

    if parsed.modifier == "not":
        return lambda resource_id, rows: not present(rows)
    return lambda resource_id, rows: present(rows)


def _has_rows(rows: Rows, table: str, code: str) -> bool:
    return any(row["param"] == code for row in rows.get(table, ()))


def _row_test(table: str, raw: str) -> RowTest | None:
    if table == "token":
        return _token_test(raw)
    if table == "reference":
        return _reference_test(raw)
    if table == "number":
        prefix, text = split_prefix(raw)
        number = parse_number(text)
        return lambda row: (
            row["value"] is not None and _number_matches(prefix, number, row["value"])
        )
    return _quantity_test(raw)


def _token_test(raw: str) -> RowTest | None:
    parts = split_unescaped(raw, "|")
    if len(parts) == 1:
        code = unescape(parts[0])
        return lambda row: row["code"] == code
    if len(parts) != 2:
        return None
    system, code = unescape(parts[0]), unescape(parts[1])
    if system == "" and code == "":
        return None
    if system == "":
        return lambda row: row["system"] is None and row["code"] == code
    if code == "":
        return lambda row: row["system"] == system
    return lambda row: row["code"] == code and row["system"] == system


def _reference_test(raw: str) -> RowTest | None:
    text = unescape(raw)
    if ":" in text or "|" in text or "?" in text or "#" in text:
        return None  # absolute URLs (and the hub's own base) are left to the SQL search
    parts = text.split("/")
    if len(parts) >= 4 and parts[2] == "_history":
        parts = parts[:2]
    if len(parts) == 2 and all(parts):
        target_type, target_id = parts
        return lambda row: row["target_type"] == target_type and row["target_id"] == target_id
    if len(parts) == 1 and text:
        return lambda row: row["target_id"] == text
    return None


def _quantity_test(raw: str) -> RowTest | None:
    parts = split_unescaped(raw, "|")
    if len(parts) not in (1, 3):
        return None
    prefix, text = split_prefix(parts[0])
    number = parse_number(text)
    system = code = ""
    if len(parts) == 3:
        system, code = unescape(parts[1]), unescape(parts[2])

    def test(row: dict[str, Any]) -> bool:
        value = row["value"]
        if value is None or not _number_matches(prefix, number, value):
            return False
        if system:
            return bool(row["system"] == system and (not code or row["code"] == code))
        if code:
            return bool(row["code"] == code or row["unit"] == code)
        return True

    return test
