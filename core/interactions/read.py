"""Read, vread and history (http://hl7.org/fhir/R4/http.html#read, #vread, #history).

The read path returns the stored JSON bytes as they are; it never parses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

import orjson
from sqlalchemy import Connection, func, select

from fhirhub.core.access import current_access
from fhirhub.core.interactions.checks import require_type
from fhirhub.fhir_store.errors import FhirError, invalid, not_found
from fhirhub.fhir_store.schema import resource_version
from fhirhub.fhir_store.search.normalize import date_range
from fhirhub.fhir_store.search.visibility import visible
from fhirhub.fhir_store.store import read_current, read_history, read_version
from fhirhub.fhir_store.versions import StoredVersion, http_date


def read(conn: Connection, resource_type: str, resource_id: str) -> StoredVersion:
    require_type(resource_type)
    current_access().require("r", resource_type)
    current = read_current(conn, resource_type, resource_id)
    if current is None or not _visible(conn, current):
        raise not_found(f"{resource_type}/{resource_id} is not known")
    if current.deleted:
        raise FhirError(410, f"{resource_type}/{resource_id} has been deleted", code="deleted")
    return current


def vread(conn: Connection, resource_type: str, resource_id: str, version_id: str) -> StoredVersion:
    require_type(resource_type)
    current_access().require("r", resource_type)
    if not version_id.isdigit():
        raise not_found(f"{resource_type}/{resource_id} has no version {version_id!r}")
    version = read_version(conn, resource_type, resource_id, int(version_id))
    if version is None or not _visible(conn, version):
        raise not_found(f"{resource_type}/{resource_id} has no version {version_id}")
    if version.deleted:
        raise FhirError(
            410,
            f"Version {version_id} of {resource_type}/{resource_id} is a deletion",
            code="deleted",
        )
    return version


def _visible(conn: Connection, version: StoredVersion) -> bool:
    """Whether the caller may see ``version`` (for a patient context: whether that version was
    in the patient's compartment, so a deletion of one of its own resources reads 410): an
    invisible resource answers exactly like a missing one (404), so its existence leaks to no
    other tenant or patient."""
    visibility = current_access().visibility("r")
    return visible(
        conn,
        visibility,
        version.resource_type,
        version.resource_id,
        version.tenant,
        version.seq,
    )


def _instant_param(name: str, value: str, *, upper: bool) -> int:
    bounds = date_range(value)
    if bounds is None:
        raise invalid(f"Invalid {name} value {value!r}: expected a FHIR instant or date")
    return bounds[1] if upper else bounds[0]


def history_bundle(
    conn: Connection,
    base_url: str,
    params: Sequence[tuple[str, str]],
    resource_type: str | None = None,
    resource_id: str | None = None,
    *,
    default_count: int = 50,
    max_count: int = 1000,
) -> bytes:
    """A ``history`` Bundle, newest first, with stable paging.

    The first page pins the newest sequence number (``_snapshot``) in its links, so versions
    written while a client pages do not shift later pages.
    """
    if resource_type is not None:
        require_type(resource_type)
    access = current_access()
    access.require("r", resource_type)
    visibility = access.visibility("r")
    values = dict(params)
    if resource_id is not None:
        current = read_current(conn, resource_type or "", resource_id)
        if current is None or not (
            _visible(conn, current)
            or read_history(conn, resource_type, resource_id, count=0, visibility=visibility)[1]
        ):
            # Visible when its current version is, or an earlier one (an Observation since
            # moved to another patient's chart keeps its earlier versions in this one's).
            raise not_found(f"{resource_type}/{resource_id} is not known")
    since = _instant_param("_since", values["_since"], upper=False) if "_since" in values else None
    at = _instant_param("_at", values["_at"], upper=True) if "_at" in values else None
    count = _int_param(values, "_count", default_count, 0, max_count)
    offset = _int_param(values, "_offset", 0, 0, 10**9)
    snapshot = _int_param(values, "_snapshot", 0, 0, 2**62)
    if not snapshot:
        snapshot = int(
            conn.execute(select(func.coalesce(func.max(resource_version.c.seq), 0))).scalar_one()
        )
    versions, total = read_history(
        conn,
        resource_type,
        resource_id,
        since=since,
        at=at,
        count=count,
        offset=offset,
        max_seq=snapshot,
        visibility=visibility,
    )
    path = "/".join(p for p in (resource_type, resource_id) if p)
    path = f"{base_url}/{path}/_history" if path else f"{base_url}/_history"
    keep = [(k, v) for k, v in params if k in ("_since", "_at")]

    def link(relation: str, page_offset: int) -> dict[str, str]:
        query = keep + [
            ("_count", str(count)),
            ("_offset", str(page_offset)),
            ("_snapshot", str(snapshot)),
        ]
        return {"relation": relation, "url": f"{path}?{urlencode(query)}"}

    links = [link("self", offset), link("first", 0)]
    if count and offset + count < total:
        links.append(link("next", offset + count))
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    head = orjson.dumps(
        {"resourceType": "Bundle", "type": "history", "total": total, "link": links}
    )
    entries = [history_entry(base_url, version) for version in versions]
    return head[:-1] + b',"entry":[' + b",".join(entries) + b"]}"


def history_entry(base_url: str, version: StoredVersion) -> bytes:
    full_url = f"{base_url}/{version.resource_type}/{version.resource_id}"
    if version.deleted:
        request = {"method": "DELETE", "url": f"{version.resource_type}/{version.resource_id}"}
        status = "204 No Content"
    elif version.method == "POST":
        request = {"method": "POST", "url": version.resource_type}
        status = "201 Created"
    else:
        request = {
            "method": version.method,
            "url": f"{version.resource_type}/{version.resource_id}",
        }
        status = "200 OK"
    tail = orjson.dumps(
        {
            "request": request,
            "response": {
                "status": status,
                "etag": version.etag,
                "lastModified": version.last_updated_instant,
            },
        }
    )
    parts = [b'{"fullUrl":', orjson.dumps(full_url)]
    if version.content is not None:
        parts += [b',"resource":', version.content]
    parts += [b",", tail[1:]]
    return b"".join(parts)


def _int_param(values: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    if name not in values:
        return default
    try:
        number = int(values[name])
    except ValueError as exc:
        raise invalid(f"{name} must be an integer, not {values[name]!r}") from exc
    return max(low, min(high, number))


__all__ = ["history_bundle", "history_entry", "http_date", "read", "vread"]
