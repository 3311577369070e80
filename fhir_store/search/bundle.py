"""Assembly of ``searchset`` Bundles from stored bytes (http://hl7.org/fhir/R4/bundle.html).

Entries are spliced from the stored JSON bytes of each resource without parsing them (see
``fhir_store.schema``: ``content`` is exactly what a read returns), so the cost of a page is
the database read plus a byte join.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from fhirhub.fhir_store.errors import Issue, operation_outcome

MATCH = b',"search":{"mode":"match"}}'
INCLUDE = b',"search":{"mode":"include"}}'


def entry(
    base_url: str, resource_type: str, resource_id: str, content: bytes, mode: bytes
) -> bytes:
    """One ``Bundle.entry``: fullUrl, the stored resource bytes and ``search.mode``."""
    full_url = orjson.dumps(f"{base_url}/{resource_type}/{resource_id}")
    return b'{"fullUrl":' + full_url + b',"resource":' + content + mode


def outcome_entry(issues: Sequence[Issue]) -> bytes:
    """An OperationOutcome entry (``search.mode = outcome``) carrying warnings about the
    search, e.g. ignored parameters (http://hl7.org/fhir/R4/search.html#errors)."""
    return orjson.dumps(
        {"resource": operation_outcome(list(issues)), "search": {"mode": "outcome"}}
    )


def searchset(
    *,
    total: int | None,
    links: list[dict[str, str]],
    entries: Iterable[bytes],
    last_updated: str,
    bundle_type: str = "searchset",
) -> bytes:
    head: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": last_updated},
        "type": bundle_type,
    }
    if total is not None:
        head["total"] = total
    head["link"] = links
    body = b",".join(entries)
    encoded = orjson.dumps(head)
    if not body:
        return encoded
    return encoded[:-1] + b',"entry":[' + body + b"]}"
