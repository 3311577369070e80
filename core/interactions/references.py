"""References inside resources: finding them, rewriting them, checking they resolve.

A server must not store a resource whose relative literal reference (``Patient/123``) points
nowhere (referential integrity; http://hl7.org/fhir/R4/references.html). Contained
(``#id``), absolute external and canonical references are not checked, nor are the few
elements that record what somebody *tried* to reach (:data:`RECORD_ONLY`): an audit trail must
be able to say that a user asked for ``Patient/x`` when no such patient exists, or exists only
in another tenant.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

from fhirhub.fhir_store.driver import fetch_all
from fhirhub.fhir_store.errors import FhirError, Issue
from fhirhub.fhir_store.schema import resource_current, resource_version
from fhirhub.fhir_store.store import UnitOfWork

RELATIVE_REFERENCE = re.compile(
    r"^(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-\.]{1,64})(/_history/(?P<version>[A-Za-z0-9\-\.]{1,64}))?$"
)
_CHECK_CHUNK = 200

#: (resource type, element path without indexes) whose references are records of an attempt,
#: not links to current data: never checked (see the module docstring).
RECORD_ONLY = frozenset({("AuditEvent", "entity.what"), ("AuditEvent", "agent.who")})
_INDEX = re.compile(r"\[\d+\]")
_CONTAINERS = (dict, list)


@functools.cache
def _live_targets_sql(count: int) -> str:
    """Which of ``count`` (type, id) pairs are live, and their tenants: one statement text per
    count, sent through the driver (building an OR of SQLAlchemy clauses per written resource
    was a tenth of an HL7 message's cost)."""
    pairs = ", ".join(["(?, ?)"] * count)
    # A join with the VALUES list, not ``(type, id) IN (VALUES ..)``: SQLite scans the whole
    # table for the row-value IN, and looks each pair up by primary key for the join.
    return (
        f"WITH wanted(t, i) AS (VALUES {pairs}) "
        f"SELECT c.resource_type, c.resource_id, c.tenant FROM wanted "
        f"JOIN {resource_current.name} c ON c.resource_type = wanted.t "
        f"AND c.resource_id = wanted.i WHERE NOT c.deleted"
    )


def iter_references(node: Any, path: str = "") -> list[tuple[str, str]]:
    """``(path, reference)`` for every ``Reference.reference`` in a resource, in document
    order. Paths are joined only for the references found (every write walks its resource
    here, and building a path string per element was most of the walk)."""
    found: list[tuple[str, str]] = []
    _collect_references(node, [path] if path else [], found)
    return found


def _collect_references(node: Any, parts: list[str], found: list[tuple[str, str]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.append(("".join(parts), value))
            elif isinstance(value, _CONTAINERS):
                parts.append(f".{key}" if parts else key)
                _collect_references(value, parts, found)
                parts.pop()
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, _CONTAINERS):
                parts.append(f"[{index}]")
                _collect_references(item, parts, found)
                parts.pop()


def rewrite_references(node: Any, replace: Callable[[str], str | None]) -> None:
    """Replace, in place, every ``reference`` for which ``replace`` returns a new value."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                new = replace(value)
                if new is not None:
                    node[key] = new
            elif isinstance(value, _CONTAINERS):
                rewrite_references(value, replace)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, _CONTAINERS):
                rewrite_references(item, replace)


def local_reference(reference: str, base_url: str) -> str:
    """``https://hub/fhir/Patient/1`` -> ``Patient/1`` when it points at this server."""
    if base_url and reference.startswith(base_url + "/"):
        return reference[len(base_url) + 1 :]
    return reference


def check_references(
    uow: UnitOfWork, resources: Iterable[tuple[str, dict[str, Any]]], base_url: str = ""
) -> None:
    """Raise 422 naming each relative reference that resolves to no live resource.

    Targets written in the same unit of work count as present. For a caller acting for a
    tenant, another tenant's resource counts as absent: references do not cross tenants, and
    the error is the same as for a missing target, so it reveals nothing.
    """
    from fhirhub.core.access import current_access
    from fhirhub.fhir_store.tenancy import visible_to_tenant

    tenant = current_access().tenant
    wanted: dict[tuple[str, str], str] = {}
    versioned: dict[tuple[str, str, int], str] = {}
    for resource_type, resource in resources:
        for path, reference in iter_references(resource):
            if (
                resource_type == "AuditEvent"
                and (resource_type, _INDEX.sub("", path)) in RECORD_ONLY
            ):
                continue
            match = RELATIVE_REFERENCE.match(local_reference(reference, base_url))
            if match is None:
                continue
            key = (match["type"], match["id"])
            if match["version"] is not None:
                # A version-specific reference (a Provenance's target) names a log entry,
                # which may be a deletion: it must exist, not be live.
                if not match["version"].isdigit():
                    versioned[(key[0], key[1], 0)] = f"{resource_type}.{path}"
                else:
                    versioned[(key[0], key[1], int(match["version"]))] = f"{resource_type}.{path}"
                continue
            if key in wanted:
                continue
            pending = uow._pending.get(key)
            if pending is not None:
                if pending.version.deleted:
                    wanted[key] = f"{resource_type}.{path}"
                continue
            wanted[key] = f"{resource_type}.{path}"
    _check_versions(uow, versioned, tenant)
    if not wanted:
        return
    keys = list(wanted)
    found: set[tuple[str, str]] = set()
    for start in range(0, len(keys), _CHECK_CHUNK):
        chunk = keys[start : start + _CHECK_CHUNK]
        rows = fetch_all(
            uow.conn, _live_targets_sql(len(chunk)), tuple(v for key in chunk for v in key)
        )
        found.update(
            (row[0], row[1])
            for row in rows
            if tenant is None or visible_to_tenant(row[0], row[2], tenant)
        )
    _refuse(
        [
            (f"Reference {t}/{i} does not resolve to a stored resource", wanted[(t, i)])
            for t, i in keys
            if (t, i) not in found
        ]
    )


def _check_versions(
    uow: UnitOfWork, versioned: dict[tuple[str, str, int], str], tenant: str | None
) -> None:
    """Raise 422 for version-specific references to versions the log does not hold (those
    written by this unit of work count as present)."""
    if not versioned:
        return
    from fhirhub.fhir_store.tenancy import visible_to_tenant

    written = {(v.resource_type, v.resource_id, v.version_id) for v in uow.committed}
    written.update(
        (w.version.resource_type, w.version.resource_id, w.version.version_id)
        for w in uow._pending.values()
    )
    missing = []
    for key in versioned:
        if key in written:
            continue
        row = fetch_all(
            uow.conn,
            f"SELECT tenant FROM {resource_version.name} WHERE resource_type = ? "
            "AND resource_id = ? AND version_id = ?",
            key,
        )
        if not row or not (tenant is None or visible_to_tenant(key[0], row[0][0], tenant)):
            missing.append(key)
    _refuse(
        [
            (
                f"Reference {'/'.join(map(str, key[:2]))}/_history/{key[2]} does not resolve to "
                "a stored version",
                versioned[key],
            )
            for key in missing
        ]
    )


def _refuse(unresolved: list[tuple[str, str]]) -> None:
    """422 with one ``not-found`` issue per (diagnostics, element path), if there are any."""
    if unresolved:
        raise FhirError(
            422, issues=[Issue("error", "not-found", text, (path,)) for text, path in unresolved]
        )
