"""Search as an interaction: the REST entry points and conditional matching.

Query semantics live in :mod:`fhirhub.fhir_store.search.query`; this module adapts them to
the interactions (a unit of work, strict handling for conditional operations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import Connection

from fhirhub.core.access import current_access
from fhirhub.core.interactions.checks import require_type
from fhirhub.fhir_store.errors import invalid
from fhirhub.fhir_store.search import identifiers
from fhirhub.fhir_store.search.identifiers import identifier_of, plain_identifier
from fhirhub.fhir_store.search.query import matching_ids, search, search_rows
from fhirhub.fhir_store.store import UnitOfWork

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

#: Conditional operations only need to know whether there are 0, 1 or more matches.
_MATCH_PROBE = 2


def parse_query(query: str) -> list[tuple[str, str]]:
    query = query.split("?", 1)[1] if "?" in query else query
    try:
        return parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise invalid(f"Malformed search criteria {query!r}") from exc


def criteria_pairs(criteria: str | Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Conditional criteria as parsed pairs (a query string is parsed strictly)."""
    params = parse_query(criteria) if isinstance(criteria, str) else list(criteria)
    if not params:
        raise invalid("Conditional criteria must not be empty")
    return params


def match_ids(
    hub: Hub, uow: UnitOfWork, resource_type: str, criteria: str | Sequence[tuple[str, str]]
) -> list[str]:
    """Ids matching conditional criteria (``If-None-Exist``, ``PUT Type?...``), strictly
    parsed: an unknown parameter must not silently match everything. At most
    :data:`_MATCH_PROBE` ids: enough to tell none, one and several apart.

    The caller's visibility applies: a conditional write never matches, and so never reveals
    or touches, what the caller may not see. No content is read: the ids come from the
    indexes (one identifier lookup when the criteria are ``identifier=system|value``)."""
    uow.flush()  # earlier writes of this unit of work must be visible to the search
    visibility = current_access().visibility("r")
    plain = plain_identifier(criteria) if isinstance(criteria, str) else None
    params: list[tuple[str, str]] | None = None
    if plain is None:
        params = criteria_pairs(criteria)
        plain = identifier_of(params)
    if plain is not None and identifiers.answers(visibility, resource_type):
        definition = hub.store.registry.get(resource_type, "identifier")
        if definition is not None and definition.type == "token":
            key = identifiers.IdentifierKey(resource_type, plain[0], plain[1])
            found = identifiers.lookup(uow.conn, [key], visibility)[key]
            return [match.resource_id for match in found[:_MATCH_PROBE]]
    if params is None:
        params = criteria_pairs(criteria)
    return matching_ids(
        uow.conn,
        hub.store.registry,
        resource_type,
        [p for p in params if p[0] not in ("_count", "_summary", "_elements", "_total")],
        limit=_MATCH_PROBE,
        visibility=visibility,
    )


def search_resources(
    hub: Hub, conn: Connection, resource_type: str | None, params: Sequence[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The first page of matches as dicts, with the caller's access: the in-process search
    of plugins (no searchset Bundle is built and parsed back). ``resource_type`` None: a
    system-level search (``_type`` restricts it)."""
    if resource_type is not None:
        require_type(resource_type)
    access = current_access()
    access.require("s", resource_type)
    rows = search_rows(
        conn,
        hub.store.registry,
        resource_type,
        list(params),
        default_count=hub.settings.default_page_size,
        max_count=hub.settings.max_page_size,
        visibility=access.visibility("s"),
    )
    return [orjson.loads(content) for content in rows]


def search_bundle(
    hub: Hub,
    conn: Connection,
    resource_type: str | None,
    params: Sequence[tuple[str, str]],
    *,
    base_url: str,
    strict: bool = False,
    compartment: tuple[str, str] | None = None,
) -> bytes:
    if resource_type is not None:
        require_type(resource_type)
    access = current_access()
    access.require("s", resource_type)
    return search(
        conn,
        hub.store.registry,
        resource_type,
        list(params),
        base_url=base_url,
        strict=strict,
        compartment=compartment,
        default_count=hub.settings.default_page_size,
        max_count=hub.settings.max_page_size,
        visibility=access.visibility("s"),
    )
