"""Batch and transaction Bundles (http://hl7.org/fhir/R4/http.html#transaction).

A transaction is one unit of work: every entry succeeds or nothing is stored. Entries are
processed in the order the spec prescribes (DELETE, POST, PUT/PATCH, GET), after

1. assigning ids to every POST (honouring ``ifNoneExist``) and conditional PUT,
2. resolving conditional references (``Patient?identifier=x|y``) to exactly one resource,
3. rewriting ``urn:uuid:`` / absolute ``fullUrl`` references to the assigned ``Type/id``,
4. validating every resource (in a process pool when the Bundle is large).

Referential integrity is checked once for all written resources at the end, so entries may
reference each other in any order. A batch runs each entry in its own unit of work.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from fhirhub.core.access import current_access
from fhirhub.core.interactions import read as read_interactions
from fhirhub.core.interactions import urls
from fhirhub.core.interactions import write as write_interactions
from fhirhub.core.interactions.checks import require_type
from fhirhub.core.interactions.references import (
    RELATIVE_REFERENCE,
    check_references,
    rewrite_references,
)
from fhirhub.core.interactions.search import match_ids, parse_query, search_bundle
from fhirhub.core.interactions.urls import FhirRequest
from fhirhub.fhir_store.errors import FhirError, Issue, invalid
from fhirhub.fhir_store.search import identifiers
from fhirhub.fhir_store.store import UnitOfWork
from fhirhub.fhir_store.validation import validate_many
from fhirhub.fhir_store.versions import StoredVersion

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

#: Processing order of a transaction by request method (http.html#trules).
METHOD_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}
CONDITIONAL_REFERENCE = re.compile(r"^[A-Z][A-Za-z]+\?.+")


def parse_entry_url(url: str, base_url: str = "", method: str = "GET") -> FhirRequest:
    """What a ``Bundle.entry.request`` asks for (``Patient``, ``Patient/1/_history/2``,
    ``Patient?x=y``, ``_history``...), by the REST API's own grammar."""
    return urls.parse(method, url, base_url)


@dataclass
class _Entry:
    index: int
    method: str
    url: FhirRequest
    raw_url: str
    full_url: str | None
    resource: Any
    request: dict[str, Any]
    resource_type: str | None = None
    assigned_id: str | None = None
    existing: StoredVersion | None = None  # for a POST whose ifNoneExist matched
    fresh: bool = False  # a PUT given a new server id: nothing to read before writing it
    response: bytes = b""
    result_issues: list[Issue] = field(default_factory=list)


def _entries(bundle: dict[str, Any], base_url: str, max_entries: int) -> list[_Entry]:
    raw_entries = bundle.get("entry", [])
    if not isinstance(raw_entries, list):
        raise invalid("Bundle.entry must be an array")
    if len(raw_entries) > max_entries:
        # Work and memory grow with the entries (a unit of work holds every version until it
        # commits), so the limit is on entries as well as on the body's bytes.
        raise FhirError(
            413,
            f"The Bundle has {len(raw_entries)} entries; at most {max_entries} are processed "
            "in one request (FHIRHUB_MAX_BUNDLE_ENTRIES): split it",
            code="too-costly",
        )
    entries: list[_Entry] = []
    for index, raw in enumerate(raw_entries):
        where = f"Bundle.entry[{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
            raise invalid(f"{where} has no request", expression=(f"{where}.request",))
        request = raw["request"]
        method = str(request.get("method", "")).upper()
        url = request.get("url")
        if method not in METHOD_ORDER or not isinstance(url, str) or not url:
            raise invalid(
                f"{where}.request needs a method (GET, HEAD, POST, PUT, PATCH, DELETE) and a url",
                expression=(f"{where}.request",),
            )
        parsed = parse_entry_url(url, base_url, method)
        resource = raw.get("resource")
        entry = _Entry(index, method, parsed, url, raw.get("fullUrl"), resource, request)
        entry.resource_type = parsed.resource_type
        if method in ("POST", "PUT") and not isinstance(resource, dict):
            raise invalid(f"{where} ({method}) has no resource", expression=(f"{where}.resource",))
        if method == "PATCH" and not _patch_body(entry):
            if isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
                raise FhirError(
                    415,
                    f"{where}: FHIRPath Patch (a Parameters resource) is not supported; send a "
                    f"JSON Patch in a Binary ({write_interactions.JSON_PATCH})",
                    code="not-supported",
                )
            raise invalid(
                f"{where} (PATCH) needs a Binary resource holding a JSON Patch",
                expression=(f"{where}.resource",),
            )
        entries.append(entry)
    return entries


def _patch_body(entry: _Entry) -> list[Any] | None:
    """A PATCH entry carries its JSON Patch as a Binary (base64 data) per http.html#patch."""
    import base64

    resource = entry.resource
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            body = orjson.loads(base64.b64decode(resource.get("data", "")))
        except (ValueError, orjson.JSONDecodeError):
            return None
        return body if isinstance(body, list) else None
    if isinstance(resource, list):
        return resource
    return None


def process_bundle(hub: Hub, body: Any, *, base_url: str, return_pref: str = "minimal") -> bytes:
    """Run a batch or transaction Bundle and return the response Bundle's JSON bytes."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise invalid("Expected a Bundle resource")
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise invalid(
            f"Bundle.type must be batch or transaction to be processed, not {kind!r}",
            expression=("Bundle.type",),
        )
    entries = _entries(body, base_url, hub.settings.max_bundle_entries)
    if kind == "transaction":
        return _transaction(hub, entries, base_url, return_pref)
    return _batch(hub, entries, base_url, return_pref)


# -- transaction ------------------------------------------------------------------------------


def _transaction(hub: Hub, entries: list[_Entry], base_url: str, return_pref: str) -> bytes:
    _check_unique_full_urls(entries)
    try:
        with hub.store.unit_of_work() as uow:
            _transaction_in(hub, uow, entries, base_url, return_pref)
    except FhirError as error:
        raise _located(error, entries) from None
    return _response_bundle("transaction-response", entries)


def _transaction_in(
    hub: Hub,
    uow: UnitOfWork,
    entries: list[_Entry],
    base_url: str,
    return_pref: str,
    resolved: Mapping[str, str] | None = None,
    validated: bool = False,
) -> None:
    mapping = _assign_identities(hub, uow, entries, base_url)
    if resolved:
        mapping = {**resolved, **mapping}
    _rewrite(hub, uow, entries, mapping, base_url)
    _validate(hub, entries, structure=not validated)
    written: list[tuple[str, dict[str, Any]]] = []
    for entry in sorted(entries, key=lambda e: (METHOD_ORDER[e.method], e.index)):
        if entry.method == "GET" or entry.method == "HEAD":
            continue
        _run_write(hub, uow, entry, base_url, return_pref, written)
    check_references(uow, written, base_url)
    uow.flush()
    for entry in entries:
        if entry.method in ("GET", "HEAD"):
            _run_read(hub, uow, entry, base_url)


def process_transaction_in(
    hub: Hub,
    uow: UnitOfWork,
    body: Any,
    *,
    base_url: str,
    return_pref: str = "minimal",
    resolved: Mapping[str, str] | None = None,
    validated: bool = False,
) -> bytes:
    """Run a transaction Bundle inside the caller's unit of work and return the response
    Bundle's JSON bytes; the caller commits. Its writes are flushed on return, so a later
    transaction in the same unit (an adapter grouping several messages per commit, each in a
    savepoint) sees them in its conditional matching.

    ``resolved``: ``fullUrl -> Type/id`` of entries the caller already resolved to existing
    resources and removed from ``body`` (a conditional create that matched); references to
    those fullUrls are rewritten like references to the Bundle's own entries.

    ``validated``: every resource in ``body`` already passed
    :func:`fhirhub.fhir_store.validation.resource.resource_issues` (an adapter's conversion
    worker checked its own output in another process), so the structural walk is not repeated
    here; the type/URL check and the model check (``validate_models``) still run. Server ids
    and rewritten references keep a valid resource valid."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise invalid("Expected a Bundle resource")
    if body.get("type") != "transaction":
        raise invalid("Bundle.type must be transaction", expression=("Bundle.type",))
    entries = _entries(body, base_url, hub.settings.max_bundle_entries)
    _check_unique_full_urls(entries)
    try:
        _transaction_in(hub, uow, entries, base_url, return_pref, resolved, validated)
    except FhirError as error:
        raise _located(error, entries) from None
    return _response_bundle("transaction-response", entries)


def _located(error: FhirError, entries: list[_Entry]) -> FhirError:
    """Prefix diagnostics with the failing entry so the client knows which one broke."""
    current = error.entry_index
    if current is None:
        return error
    issues = [
        Issue(
            i.severity,
            i.code,
            f"Bundle.entry[{current}]: {i.diagnostics}",
            i.expression or (f"Bundle.entry[{current}]",),
        )
        for i in error.issues
    ]
    return FhirError(error.status, issues=issues)


def _check_unique_full_urls(entries: list[_Entry]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.full_url and entry.method in ("POST", "PUT"):
            if entry.full_url in seen:
                raise invalid(
                    f"Bundle.entry[{entry.index}].fullUrl {entry.full_url!r} duplicates "
                    f"entry {seen[entry.full_url]}"
                )
            seen[entry.full_url] = entry.index


def _identifier_matches(
    hub: Hub, uow: UnitOfWork, entries: list[_Entry]
) -> dict[int, list[identifiers.Match]]:
    """Entry index -> matches, for every conditional entry keyed by one identifier, answered
    together by one index lookup (:mod:`fhirhub.fhir_store.search.identifiers`); the other
    conditional entries are matched one by one by the general search."""
    visibility = current_access().visibility("r")
    wanted: dict[int, identifiers.IdentifierKey] = {}
    for entry in entries:
        rtype = entry.url.resource_type or ""
        if entry.method == "POST" and entry.request.get("ifNoneExist"):
            criteria = str(entry.request["ifNoneExist"])
        elif entry.method == "PUT" and entry.url.conditional:
            criteria = entry.url.query or ""
        else:
            continue
        definition = hub.store.registry.get(rtype, "identifier")
        if definition is None or definition.type != "token":
            continue
        if not identifiers.answers(visibility, rtype):
            continue
        plain = identifiers.plain_identifier(criteria)
        if plain is None:
            try:
                plain = identifiers.identifier_of(parse_query(criteria))
            except FhirError:
                continue  # the general path reports the malformed criteria for this entry
        if plain is not None:
            wanted[entry.index] = identifiers.IdentifierKey(rtype, plain[0], plain[1])
    if not wanted:
        return {}
    uow.flush()
    found = identifiers.lookup(uow.conn, list(wanted.values()), visibility)
    return {index: found[key] for index, key in wanted.items()}


def _matched(
    hub: Hub,
    uow: UnitOfWork,
    entry: _Entry,
    prefetched: dict[int, list[identifiers.Match]],
    rtype: str,
    criteria: str,
) -> list[str]:
    found = prefetched.get(entry.index)
    if found is None:
        return match_ids(hub, uow, rtype, criteria)
    return [match.resource_id for match in found]


def _assign_identities(
    hub: Hub, uow: UnitOfWork, entries: list[_Entry], base_url: str
) -> dict[str, str]:
    """fullUrl -> ``Type/id`` for every entry that creates or updates a resource."""
    mapping: dict[str, str] = {}
    prefetched = _identifier_matches(hub, uow, entries)
    for entry in entries:
        try:
            if entry.method == "POST":
                rtype = entry.url.resource_type or ""
                require_type(rtype)
                condition = entry.request.get("ifNoneExist")
                if condition:
                    matches = _matched(hub, uow, entry, prefetched, rtype, condition)
                    if len(matches) > 1:
                        raise FhirError(
                            412,
                            f"ifNoneExist {condition!r} matches {len(matches)} resources",
                            code="multiple-matches",
                        )
                    if matches:
                        entry.existing = _existing(uow, entry, prefetched, rtype, matches[0])
                        entry.assigned_id = matches[0]
                entry.assigned_id = entry.assigned_id or write_interactions.new_id()
            elif entry.method == "PUT":
                rtype = entry.url.resource_type or ""
                require_type(rtype)
                if entry.url.conditional:
                    query = entry.url.query or ""
                    matches = _matched(hub, uow, entry, prefetched, rtype, query)
                    if len(matches) > 1:
                        raise FhirError(
                            412,
                            f"Conditional update matches {len(matches)} resources",
                            code="multiple-matches",
                        )
                    body_id = entry.resource.get("id") if isinstance(entry.resource, dict) else None
                    if matches:
                        entry.assigned_id = matches[0]
                    elif body_id:
                        write_interactions.require_unmatched_id_free(uow, rtype, body_id)
                        entry.assigned_id = body_id
                    else:
                        entry.assigned_id = write_interactions.new_id()
                        entry.fresh = True
                else:
                    entry.assigned_id = entry.url.resource_id
            else:
                continue
        except FhirError as error:
            error.entry_index = entry.index
            raise
        target = f"{entry.url.resource_type}/{entry.assigned_id}"
        if entry.full_url:
            mapping[entry.full_url] = target
    return mapping


def _existing(
    uow: UnitOfWork,
    entry: _Entry,
    prefetched: dict[int, list[identifiers.Match]],
    rtype: str,
    resource_id: str,
) -> StoredVersion | None:
    """The version a matched conditional create answers with: from the identifier lookup
    when it found it (the response names version and time; content is read only for
    ``return=representation``, see :func:`_entry_response`), else read."""
    for match in prefetched.get(entry.index, ()):
        if match.resource_id == resource_id:
            return StoredVersion(
                rtype,
                resource_id,
                match.version_id,
                match.last_updated,
                False,
                None,
                tenant=match.tenant,
            )
    return uow.current(rtype, resource_id)


def _rewrite(
    hub: Hub, uow: UnitOfWork, entries: list[_Entry], mapping: dict[str, str], base_url: str
) -> None:
    resolved: dict[str, str] = {}

    def replace(reference: str) -> str | None:
        if reference in mapping:
            return mapping[reference]
        if CONDITIONAL_REFERENCE.match(reference):
            if reference not in resolved:
                rtype, _, query = reference.partition("?")
                matches = match_ids(hub, uow, rtype, query)
                if len(matches) != 1:
                    raise FhirError(
                        412,
                        f"Conditional reference {reference!r} matches {len(matches)} resources; "
                        "exactly one is required",
                        code="multiple-matches" if matches else "not-found",
                    )
                resolved[reference] = f"{rtype}/{matches[0]}"
            return resolved[reference]
        if reference.startswith("urn:uuid:") or reference.startswith("urn:oid:"):
            raise invalid(f"Reference {reference!r} matches no fullUrl in this transaction")
        return None

    for entry in entries:
        if entry.method in ("POST", "PUT") and isinstance(entry.resource, dict):
            try:
                rewrite_references(entry.resource, replace)
            except FhirError as error:
                error.entry_index = entry.index
                raise


def _validate(hub: Hub, entries: list[_Entry], *, structure: bool = True) -> None:
    """Type/URL agreement, the structural walk (unless ``structure`` is False: the caller
    validated the resources already) and the model check, for the entries written."""
    targets = [e for e in entries if e.method in ("POST", "PUT") and e.existing is None]
    for entry in targets:
        if entry.url.resource_type and isinstance(entry.resource, dict):
            if entry.resource.get("resourceType") != entry.url.resource_type:
                error = invalid(
                    f"Resource type {entry.resource.get('resourceType')!r} does not match the "
                    f"request url {entry.raw_url!r}"
                )
                error.entry_index = entry.index
                raise error
    results = validate_many([e.resource for e in targets]) if structure else [None] * len(targets)
    for entry, result in zip(targets, results, strict=True):
        if result is None:
            try:
                write_interactions.check_models(hub, [entry.resource])
            except FhirError as error:
                result = error
        if result is not None:
            result.entry_index = entry.index
            raise result


def _run_write(
    hub: Hub,
    uow: UnitOfWork,
    entry: _Entry,
    base_url: str,
    return_pref: str,
    written: list[tuple[str, dict[str, Any]]],
) -> None:
    rtype = entry.url.resource_type or ""
    try:
        if entry.method == "DELETE":
            if entry.url.conditional:
                outcome = write_interactions.conditional_delete(
                    hub, uow, rtype, entry.url.query or ""
                )
            elif entry.url.resource_id:
                # An id that does not exist and one the caller may not see both answer 204.
                outcome = write_interactions.delete(
                    hub, uow, rtype, entry.url.resource_id, missing_ok=True
                )
            else:
                raise invalid("DELETE needs Type/id or Type?criteria")
            entry.response = _entry_response(
                outcome.version if outcome else None,
                204 if outcome is None else outcome.status,
                base_url,
                "minimal",
            )
            return
        if entry.method == "POST":
            if entry.existing is not None:
                existing = entry.existing
                if return_pref == "representation" and existing.content is None:
                    existing = uow.current(rtype, existing.resource_id) or existing
                entry.response = _entry_response(existing, 200, base_url, return_pref)
                return
            resource = entry.resource
            version = write_interactions.store_resource(
                hub,
                uow,
                "create",
                rtype,
                entry.assigned_id or "",
                resource,
                previous=None,
                method="POST",
                check_refs=False,
            )
            written.append((rtype, resource))
            entry.response = _entry_response(version, 201, base_url, return_pref)
            return
        if entry.method == "PUT":
            resource = dict(entry.resource)
            if entry.url.conditional:
                resource["id"] = entry.assigned_id
            elif resource.get("id") != entry.assigned_id:
                raise invalid(
                    f"Resource id {resource.get('id')!r} does not match the url {entry.raw_url!r}"
                )
            current = (
                None
                if entry.fresh
                else uow.current(rtype, entry.assigned_id or "", for_update=True)
            )
            write_interactions.check_if_match(
                write_interactions.seen_by_caller(uow, current), entry.request.get("ifMatch")
            )
            version = write_interactions.store_resource(
                hub,
                uow,
                "create" if entry.fresh else "update",  # fresh: an id the server assigned
                rtype,
                entry.assigned_id or "",
                resource,
                previous=current,
                method="PUT",
                check_refs=False,
            )
            written.append((rtype, resource))
            created = current is None or current.deleted
            entry.response = _entry_response(
                version, 201 if created else 200, base_url, return_pref
            )
            return
        if entry.method == "PATCH":
            if not entry.url.resource_id:
                raise invalid("PATCH needs Type/id")
            result = write_interactions.patch(
                hub,
                uow,
                rtype,
                entry.url.resource_id,
                _patch_body(entry),
                if_match=entry.request.get("ifMatch"),
            )
            entry.response = _entry_response(result.version, 200, base_url, return_pref)
    except FhirError as error:
        error.entry_index = entry.index
        raise


def _run_read(hub: Hub, uow: UnitOfWork, entry: _Entry, base_url: str) -> None:
    url = entry.url
    try:
        if url.interaction == "vread" and url.resource_type and url.resource_id:
            version = read_interactions.vread(
                uow.conn, url.resource_type, url.resource_id, url.version_id or ""
            )
            entry.response = _entry_response(version, 200, base_url, "representation")
        elif url.interaction == "read" and url.resource_type and url.resource_id:
            version = read_interactions.read(uow.conn, url.resource_type, url.resource_id)
            entry.response = _entry_response(version, 200, base_url, "representation")
        elif url.interaction in ("search-type", "search-system"):
            params = parse_qsl(url.query or "", keep_blank_values=True)
            bundle = search_bundle(hub, uow.conn, url.resource_type, params, base_url=base_url)
            entry.response = b'{"resource":' + bundle + b',"response":{"status":"200 OK"}}'
        else:
            raise FhirError(
                400, f"GET {entry.raw_url!r} is not supported inside a Bundle", code="not-supported"
            )
    except FhirError as error:
        error.entry_index = entry.index
        raise


def _entry_response(
    version: StoredVersion | None, status: int, base_url: str, return_pref: str
) -> bytes:
    response: dict[str, Any] = {"status": STATUS_TEXT.get(status, str(status))}
    parts: list[bytes] = [b"{"]
    if version is not None:
        full_url = f"{base_url}/{version.resource_type}/{version.resource_id}"
        parts.append(b'"fullUrl":' + orjson.dumps(full_url) + b",")
        if return_pref == "representation" and version.content is not None:
            parts.append(b'"resource":' + version.content + b",")
        if not version.deleted:
            response["location"] = (
                f"{version.resource_type}/{version.resource_id}/_history/{version.version_id}"
            )
            response["etag"] = version.etag
        response["lastModified"] = version.last_updated_instant
    parts.append(b'"response":' + orjson.dumps(response) + b"}")
    return b"".join(parts)


def _response_bundle(kind: str, entries: list[_Entry]) -> bytes:
    head = orjson.dumps({"resourceType": "Bundle", "type": kind})
    body = b",".join(entry.response for entry in entries)
    return head[:-1] + b',"entry":[' + body + b"]}"


# -- batch ------------------------------------------------------------------------------------


def _batch(hub: Hub, entries: list[_Entry], base_url: str, return_pref: str) -> bytes:
    """Each entry on its own: a failure becomes that entry's response, others proceed."""
    for entry in sorted(entries, key=lambda e: (METHOD_ORDER[e.method], e.index)):
        try:
            if entry.method in ("GET", "HEAD"):
                with hub.store.read() as conn:
                    fake = UnitOfWork(hub.store, conn)
                    _run_read(hub, fake, entry, base_url)
                continue
            with hub.store.unit_of_work() as uow:
                _assign_identities(hub, uow, [entry], base_url)
                if isinstance(entry.resource, dict) and entry.method in ("POST", "PUT"):
                    _validate(hub, [entry])
                written: list[tuple[str, dict[str, Any]]] = []
                _run_write(hub, uow, entry, base_url, return_pref, written)
                check_references(uow, written, base_url)
        except FhirError as error:
            outcome = error.outcome_bytes()
            entry.response = (
                b'{"response":{"status":'
                + orjson.dumps(str(error.status))
                + b',"outcome":'
                + outcome
                + b"}}"
            )
    return _response_bundle("batch-response", entries)


__all__ = ["RELATIVE_REFERENCE", "parse_entry_url", "process_bundle", "process_transaction_in"]
