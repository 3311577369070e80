"""Search as an interaction: the REST entry points and conditional matching.

Query semantics live in :mod:`fhirhub.fhir_store.search.query`; this module adapts them to
the interactions (a unit of work, strict handling for conditional operations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import Connection

from fhirhub.core.access import current_access
from fhirhub.core.interactions.write import require_type
from fhirhub.fhir_store.errors import invalid
from fhirhub.fhir_store.search.query import search
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


def match_ids(hub: Hub, uow: UnitOfWork, resource_type: str, query: str) -> list[str]:
    """Ids matching conditional criteria (``If-None-Exist``, ``PUT Type?...``), strictly
    parsed: an unknown parameter must not silently match everything."""
    params = parse_query(query)
    if not params:
        raise invalid("Conditional criteria must not be empty")
    uow.flush()  # earlier writes of this unit of work must be visible to the search
    probe = [p for p in params if p[0] not in ("_count", "_summary", "_elements")]
    probe += [("_count", str(_MATCH_PROBE)), ("_total", "none")]
    # The caller's visibility applies: a conditional write never matches, and so never
    # reveals or touches, what the caller may not see.
    bundle = orjson.loads(
        search(
            uow.conn,
            hub.store.registry,
            resource_type,
            probe,
            base_url=hub.base_url,
            strict=True,
            visibility=current_access().visibility("r"),
        )
    )
    return [
        entry["resource"]["id"]
        for entry in bundle.get("entry", [])
        if entry.get("search", {}).get("mode", "match") == "match"
    ]


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
