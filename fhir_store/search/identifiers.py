"""Conditional matching by business identifier, many criteria in one index lookup.

Nearly every conditional write a system sends is keyed by one identifier: an HL7 message's
``PUT Patient?identifier=system|value``, a loader's ``ifNoneExist: identifier=...``, a sync's
upsert. Answered by the general search (parse, build SQL, run it) each costs a query plan and a
round trip; a transaction with ten of them spent most of its time there. Here all such
criteria of a transaction are answered by one statement on the token index, which holds the
rows an ``identifier=system|value`` search finds (http://hl7.org/fhir/R4/search.html#token:
system and code both equal), restricted to live resources the caller's tenant may see.

Criteria of any other shape, and callers whose visibility is more than a tenant (a patient
context, a scope limited to some types), are left to the general search, which gives the same
answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Connection

from fhirhub.fhir_store.driver import fetch_all
from fhirhub.fhir_store.schema import resource_current
from fhirhub.fhir_store.search.index_tables import index_token
from fhirhub.fhir_store.search.predicates import split_unescaped, unescape
from fhirhub.fhir_store.search.visibility import Visibility
from fhirhub.fhir_store.tenancy import SHARED_TYPES


@dataclass(frozen=True)
class IdentifierKey:
    """``Type?identifier=system|value``."""

    resource_type: str
    system: str
    value: str


@dataclass(frozen=True)
class Match:
    """A live resource an identifier matched, with what a transaction response needs."""

    resource_id: str
    version_id: int
    last_updated: int
    tenant: str | None


def plain_identifier(query: str) -> tuple[str, str] | None:
    """``identifier=system|value`` read without the general query parser: one parameter whose
    decoded value has exactly one ``|`` and no search escapes (what converters build); None
    when the general parser must decide."""
    query = query.split("?", 1)[1] if "?" in query else query
    if not query.startswith("identifier=") or any(c in query for c in "&;+?"):
        return None
    decoded = unquote(query[11:])
    if "\\" in decoded or decoded.count("|") != 1:
        return None
    system, _, value = decoded.partition("|")
    return (system, value) if system and value else None


def identifier_of(params: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """``(system, value)`` when parsed criteria are exactly one ``identifier=system|value``
    (search escapes decoded), else None."""
    if len(params) != 1 or params[0][0] != "identifier":
        return None
    parts = split_unescaped(params[0][1], "|")
    if len(parts) != 2:
        return None
    system, value = unescape(parts[0]), unescape(parts[1])
    return (system, value) if system and value else None


def answers(visibility: Visibility | None, resource_type: str) -> bool:
    """Whether :func:`lookup` gives the general search's answer for this caller and type:
    true for an unrestricted caller and for one limited to its tenant only."""
    if visibility is None or visibility.unrestricted:
        return True
    return visibility.patient is None and visibility.shows_type(resource_type)


#: Criteria per statement: SQLite refuses an expression tree deeper than 1,000 and caps bound
#: parameters; a scoring batch or a bulk load can name thousands of identifiers.
LOOKUP_CHUNK = 300

#: The statement for ``n`` criteria (a transaction has a handful of shapes), by tenant filter.
_STATEMENTS: dict[tuple[int, bool], str] = {}


def _statement(terms: int, by_tenant: bool) -> str:
    """A join of the wanted ``(type, system, value)`` triples (a VALUES list) with the token
    index: each triple is one probe of ``ix_token_lookup``. ``CROSS JOIN`` makes SQLite keep
    the triples as the outer loop and probe that index; with a plain join it built an automatic
    index over every ``identifier`` row at each statement (a cost growing with the table: 13 ms
    for 300 triples in a hub of 70,000 token rows, 0.6 ms probing). An OR of one clause per
    triple (before) cost a plan of every clause and failed beyond 1,000 of them."""
    statement = _STATEMENTS.get((terms, by_tenant))
    if statement is None:
        token, current = index_token.name, resource_current.name
        values = ", ".join(["(?, ?, ?)"] * terms)
        tenant = ""
        if by_tenant:
            shared = ", ".join(f"'{name}'" for name in sorted(SHARED_TYPES))
            tenant = f" AND (c.tenant = ? OR (c.resource_type IN ({shared}) AND c.tenant IS NULL))"
        statement = _STATEMENTS[(terms, by_tenant)] = (
            f"WITH wanted(t, s, c) AS (VALUES {values}) "
            "SELECT t.resource_type, t.system, t.code, t.resource_id, c.version_id, "
            f"c.last_updated, c.tenant FROM wanted CROSS JOIN {token} t JOIN {current} c "
            "ON c.resource_type = t.resource_type AND c.resource_id = t.resource_id "
            "WHERE t.resource_type = wanted.t AND t.param = 'identifier' AND t.code = wanted.c "
            f"AND t.system = wanted.s AND c.deleted = ?{tenant}"
        )
    return statement


def lookup(
    conn: Connection, keys: Sequence[IdentifierKey], visibility: Visibility | None
) -> dict[IdentifierKey, list[Match]]:
    """The live resources carrying each identifier (sorted by id), one statement per
    :data:`LOOKUP_CHUNK` identifiers, that ``visibility`` shows; only valid where
    :func:`answers` is true for every key's type."""
    found: dict[IdentifierKey, dict[str, Match]] = {key: {} for key in keys}
    unique = list(found)
    if not unique:
        return {}
    tenant = visibility.tenant if visibility is not None else None
    # Positional parameters: binding a few thousand named ones cost as much as the lookups.
    after: tuple[Any, ...] = (False,) if tenant is None else (False, tenant)
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(unique), LOOKUP_CHUNK):
        chunk = unique[start : start + LOOKUP_CHUNK]
        params = tuple(v for k in chunk for v in (k.resource_type, k.system, k.value)) + after
        rows += fetch_all(conn, _statement(len(chunk), tenant is not None), params)
    for rtype, system, code, resource_id, version_id, last_updated, owner in rows:
        matches = found.get(IdentifierKey(rtype, system, code))
        if matches is not None:
            matches[resource_id] = Match(resource_id, int(version_id), int(last_updated), owner)
    return {key: [matches[i] for i in sorted(matches)] for key, matches in found.items()}
