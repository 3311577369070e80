"""Create, update, patch and delete, plain and conditional
(http://hl7.org/fhir/R4/http.html#create, #update, #patch, #delete, #cond-update).

Each function runs inside a caller-provided :class:`UnitOfWork`, so the same code serves a
single REST request, one entry of a transaction Bundle, an HL7 message or a DICOM instance.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsonpatch
import orjson

from fhirhub.core.access import Access, current_access, forbidden
from fhirhub.core.interactions.checks import require_id, require_type
from fhirhub.core.interactions.references import check_references
from fhirhub.fhir_store.errors import FhirError, Issue, invalid, not_found
from fhirhub.fhir_store.store import UnitOfWork
from fhirhub.fhir_store.tenancy import (
    SHARED_TYPES,
    TENANT_TERMINOLOGY_TYPES,
    tenant_of,
    with_tenant,
)
from fhirhub.fhir_store.validation import validate_resource
from fhirhub.fhir_store.versions import StoredVersion

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

#: The patch format supported (RFC 6902), as the CapabilityStatement declares it.
JSON_PATCH = "application/json-patch+json"

ETAG_PATTERN = re.compile(r'^\s*(W/)?"?(?P<version>[^"]+)"?\s*$')


@dataclass(frozen=True)
class WriteResult:
    """What a write did: the version now current, the HTTP status, and any notes."""

    version: StoredVersion
    status: int  # 201 created, 200 updated / matched, 204 nothing to do
    created: bool = False
    issues: tuple[Issue, ...] = ()


@dataclass
class WriteContext:
    """Passed to ``resource_before_write``: which interaction is writing what, and where."""

    hub: Hub
    interaction: str  # create | update | patch | transaction-entry
    resource_type: str
    resource_id: str
    unit_of_work: UnitOfWork
    previous: Any = None  # the StoredVersion being replaced, if any


def new_id() -> str:
    """A server-assigned id: a UUID version 7 (RFC 9562), a millisecond Unix timestamp then 74
    random bits. Ids made later sort later, so a create adds its rows at the right-hand end of
    every index keyed by id (``resource_current``, the index tables' owner indexes, reference
    targets) instead of at a random page of each: on a hub of a few thousand patients a
    write load used 12-16 % less CPU than with random (version 4) ids, more as tables grow.
    Still unguessable; the id does tell when the resource was created, as its first
    version's ``meta.lastUpdated`` does."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 9562 variant
    # str(uuid.UUID(int=value)) formatted directly: the UUID object cost half of this call.
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def unsupported_patch(what: str) -> FhirError:
    """415 for a patch in a format other than JSON Patch (http://hl7.org/fhir/R4/http.html#patch
    lets a server choose its formats; the CapabilityStatement lists them in ``patchFormat``)."""
    return FhirError(
        415,
        f"{what} is not supported as a patch: send a JSON Patch (RFC 6902) array as {JSON_PATCH}",
        code="not-supported",
    )


def parse_etag(value: str) -> int:
    """``W/"3"`` -> 3 (http://hl7.org/fhir/R4/http.html#concurrency)."""
    match = ETAG_PATTERN.match(value)
    if match is None or not match["version"].isdigit():
        raise invalid(f'Malformed ETag {value!r}; expected W/"<versionId>"')
    return int(match["version"])


def check_if_match(current: StoredVersion | None, if_match: str | None) -> None:
    if if_match is None:
        return
    expected = parse_etag(if_match)
    actual = current.version_id if current is not None and not current.deleted else None
    if actual != expected:
        raise FhirError(
            412,
            f"Version conflict: If-Match asks for version {expected}, "
            f"current is {actual if actual is not None else 'none'}",
            code="conflict",
        )


def store_resource(
    hub: Hub,
    uow: UnitOfWork,
    interaction: str,
    resource_type: str,
    resource_id: str,
    resource: dict[str, Any],
    *,
    previous: StoredVersion | None,
    method: str,
    check_refs: bool = True,
) -> StoredVersion:
    """Authorize the caller, run the before-write hooks, check references and append the
    version."""
    resource["id"] = resource_id
    access = current_access()
    if not access.is_system:
        _authorize_write(uow, access, interaction, resource_type, resource, previous)
    elif resource_type not in SHARED_TYPES and tenant_of(resource) is None:
        # The system updating a resource without naming a tenant (an HL7 feed's conditional
        # update, a bulk load) keeps the resource in its tenant: dropping the label would
        # hide it from that tenant's own clinicians.
        if previous is not None and previous.tenant is not None:
            with_tenant(resource, previous.tenant)
        elif hub.settings.default_tenant:
            # An HL7 feed, a DICOM node or a bulk load writes as the system; in a deployment
            # with tenants its data must still belong to one, or no clinician would see it.
            with_tenant(resource, hub.settings.default_tenant)
    context = WriteContext(hub, interaction, resource_type, resource_id, uow, previous)
    hub.hook.resource_before_write(resource=resource, context=context)
    if (
        interaction == "update"
        and access.patient is None
        and previous is not None
        and _unchanged(previous, resource)
    ):
        return previous
    if check_refs:
        check_references(uow, [(resource_type, resource)], hub.base_url)
    version = uow.put(resource_type, resource_id, resource, method=method, previous=previous)
    if access.patient is not None:
        _require_in_patient_compartment(uow, access, version)
    return version


_VERSION_META = ("versionId", "lastUpdated")


def _without_version_meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = resource.get("meta")
    if not isinstance(meta, dict) or not any(key in meta for key in _VERSION_META):
        return resource
    rest = {key: value for key, value in meta.items() if key not in _VERSION_META}
    out = {key: value for key, value in resource.items() if key != "meta"}
    if rest:
        out["meta"] = rest
    return out


def _unchanged(previous: StoredVersion, resource: dict[str, Any]) -> bool:
    """Whether an update would store what the current version already holds (apart from
    ``meta.versionId``/``lastUpdated``). Such an update is answered with the current version
    and no new one (HAPI's "suppress no-op updates"): feeds resend the same demographics with
    every HL7 message, and a version per resend would bury the real changes in ``_history``,
    fire subscriptions and outbound messages for nothing, and cost a full write each."""
    if previous.deleted or previous.content is None:
        return False
    stored = orjson.loads(previous.content)
    return bool(_without_version_meta(stored) == _without_version_meta(resource))


def _authorize_write(
    uow: UnitOfWork,
    access: Access,
    interaction: str,
    resource_type: str,
    resource: dict[str, Any],
    previous: StoredVersion | None,
) -> None:
    """Scopes, ownership and the tenant label of a write by a non-system caller.

    A version the caller may not see (another tenant's, even deleted; for a patient context,
    one outside its compartment) is treated as absent: writing its id is an update-as-create,
    which a confined caller may not do (:func:`may_choose_ids`), so the answer is the same
    405 a free id gets and tells nothing of what exists. Nor can it take over the id, or move
    another patient's resource into its own chart. The caller's tenant label replaces any
    the client sent, so a write can never place data in, or move it out of, another tenant.
    """
    seen = previous if previous is not None and sees(uow, access, previous) else None
    if seen is None and interaction == "update" and not may_choose_ids(access, resource_type):
        raise FhirError(
            405,
            f"{resource_type}/{resource['id']} does not exist, and a caller confined to a "
            "tenant or a patient may not create resources with ids of its choosing: create it "
            f"with POST {resource_type}",
            code="not-supported",
        )
    if previous is not None and seen is None:
        raise forbidden(f"{resource_type}/{previous.resource_id} may not be written")
    exists = seen is not None and not seen.deleted
    access.require("u" if exists or interaction == "patch" else "c", resource_type)
    if access.tenant is not None and resource_type in SHARED_TYPES:
        # A tenant writes its own code systems, value sets and concept maps (labelled with it
        # below, seen by it alone); the shared ones, and other definitions, are a hub admin's.
        if resource_type not in TENANT_TERMINOLOGY_TYPES:
            raise forbidden(
                f"{resource_type} is shared by every tenant; only a hub admin writes it"
            )
        if previous is not None and previous.tenant != access.tenant:
            raise forbidden(
                f"{resource_type}/{previous.resource_id} is shared by every tenant; only a hub "
                "admin writes it"
            )
    access.label_for_write(resource)


def may_choose_ids(access: Access, resource_type: str) -> bool:
    """Whether the caller may create a resource with an id of its choosing (update as create,
    http://hl7.org/fhir/R4/http.html#upsert). Only a caller that sees every resource of the
    type may: for one confined to a tenant (or, for the Patient compartment's types, to a
    patient), ids taken outside its view would have to be refused while free ones are
    created, and the difference would tell it which ids exist elsewhere. The system acting
    for a tenant (:func:`fhirhub.core.access.system_for`) is no such client: it keeps its ids,
    and another tenant's stay refused (403)."""
    from fhirhub.fhir_store.search.visibility import patient_guarded_types

    if access.subject == "system" and access.scopes is None:
        return True  # the system, also acting for one tenant: an adapter keying its writes
    if access.tenant is not None:
        return False
    return access.patient is None or resource_type not in patient_guarded_types()


def seen_by_caller(uow: UnitOfWork, version: StoredVersion | None) -> StoredVersion | None:
    """``version`` if the current caller may see it, else None: what ``If-Match`` is checked
    against, so that a version it may not see answers 412 "current is none" like a free id,
    and never tells its version number."""
    if version is None or sees(uow, current_access(), version):
        return version
    return None


def sees(uow: UnitOfWork, access: Access, version: StoredVersion) -> bool:
    """Whether the caller may see, and so change, ``version`` (its tenant's and, for a patient
    context, in the patient's compartment as that version was written)."""
    if access.is_system:
        return True
    if not access.owns(version.tenant, version.resource_type):
        return False
    if version.seq == 0:
        return True  # written earlier in this unit of work, by this caller
    from fhirhub.fhir_store.search.visibility import visible

    return visible(
        uow.conn,
        access.visibility("r"),
        version.resource_type,
        version.resource_id,
        version.tenant,
        version.seq,
    )


def _require_in_patient_compartment(
    uow: UnitOfWork, access: Access, version: StoredVersion
) -> None:
    """A patient-context caller may only write resources of its own compartment (checked on
    the index, after this unit's writes are flushed; a refusal rolls the unit back)."""
    from fhirhub.fhir_store.search.visibility import patient_guarded_types, visible

    if version.resource_type not in patient_guarded_types():
        return
    uow.flush()
    if not visible(
        uow.conn, access.visibility("r"), version.resource_type, version.resource_id, version.tenant
    ):
        raise forbidden(
            f"A {version.resource_type} written with patient context must belong to "
            f"Patient/{access.patient}"
        )


def validated(hub: Hub, body: Any, resource_type: str) -> dict[str, Any]:
    """Structural validation against the R4 definitions, plus the fhir.resources models when
    ``FHIRHUB_VALIDATE_MODELS`` is on."""
    validate_resource(body, expected_type=resource_type)
    assert isinstance(body, dict)
    check_models(hub, [body])
    return body


def check_models(hub: Hub, resources: list[Any]) -> None:
    if not hub.settings.validate_models:
        return
    from fhirhub.fhir_store.validation.models import model_error

    for resource in resources:
        error = model_error(resource)
        if error is not None:
            raise error


def create(
    hub: Hub,
    uow: UnitOfWork,
    resource_type: str,
    body: Any,
    *,
    if_none_exist: str | None = None,
    check_refs: bool = True,
) -> WriteResult:
    """Create with a server-assigned id (an ``id`` in the body is ignored, as the spec says)."""
    require_type(resource_type)
    resource = validated(hub, body, resource_type)
    if if_none_exist:
        from fhirhub.core.interactions.search import match_ids

        matches = match_ids(hub, uow, resource_type, if_none_exist)
        if len(matches) == 1:
            existing = uow.current(resource_type, matches[0])
            assert existing is not None
            return WriteResult(existing, 200, created=False)
        if len(matches) > 1:
            raise FhirError(
                412,
                f"If-None-Exist {if_none_exist!r} matches {len(matches)} resources",
                code="multiple-matches",
            )
    resource_id = new_id()
    version = store_resource(
        hub,
        uow,
        "create",
        resource_type,
        resource_id,
        resource,
        previous=None,
        method="POST",
        check_refs=check_refs,
    )
    return WriteResult(version, 201, created=True)


def update(
    hub: Hub,
    uow: UnitOfWork,
    resource_type: str,
    resource_id: str,
    body: Any,
    *,
    if_match: str | None = None,
    check_refs: bool = True,
) -> WriteResult:
    """Update, or create with the client's id when none exists (update-as-create)."""
    require_type(resource_type)
    require_id(resource_id)
    resource = validated(hub, body, resource_type)
    body_id = resource.get("id")
    if body_id is None:
        raise invalid("The resource in an update must carry an id", expression=("id",))
    if body_id != resource_id:
        raise invalid(
            f"Resource id {body_id!r} does not match the id {resource_id!r} in the URL",
            expression=(f"{resource_type}.id",),
        )
    current = uow.current(resource_type, resource_id, for_update=True)
    check_if_match(seen_by_caller(uow, current), if_match)
    version = store_resource(
        hub,
        uow,
        "update",
        resource_type,
        resource_id,
        resource,
        previous=current,
        method="PUT",
        check_refs=check_refs,
    )
    created = current is None or current.deleted
    return WriteResult(version, 201 if created else 200, created=created)


def conditional_update(
    hub: Hub,
    uow: UnitOfWork,
    resource_type: str,
    query: str,
    body: Any,
    *,
    if_match: str | None = None,
) -> WriteResult:
    """``PUT Type?criteria``: 0 matches creates (with the body's id, if any, as an update as
    create: :func:`require_unmatched_id_free`), 1 updates it, more is 412."""
    from fhirhub.core.interactions.search import match_ids

    require_type(resource_type)
    matches = match_ids(hub, uow, resource_type, query)
    if len(matches) > 1:
        raise FhirError(
            412,
            f"Conditional update {query!r} matches {len(matches)} resources",
            code="multiple-matches",
        )
    if not matches:
        body_id = body.get("id") if isinstance(body, dict) else None
        if body_id:
            require_unmatched_id_free(uow, resource_type, str(body_id))
            return update(hub, uow, resource_type, str(body_id), body, if_match=if_match)
        return create(hub, uow, resource_type, body)
    target = matches[0]
    if isinstance(body, dict) and body.get("id") not in (None, target):
        raise invalid(
            f"Resource id {body.get('id')!r} does not match the matched resource {target!r}"
        )
    if isinstance(body, dict):
        body = {**body, "id": target}
    return update(hub, uow, resource_type, target, body, if_match=if_match)


def require_unmatched_id_free(uow: UnitOfWork, resource_type: str, resource_id: str) -> None:
    """A conditional update that matched nothing but names an id is an update as create of
    that id; if the caller can see a resource with that id, which its criteria did not match,
    that is a 409 (FHIR R5 states it; R4 leaves it open). An id it cannot see is left to the
    update, which answers exactly as for a free id."""
    current = uow.current(resource_type, resource_id, for_update=True)
    if current is not None and not current.deleted and sees(uow, current_access(), current):
        raise FhirError(
            409,
            f"{resource_type}/{resource_id} exists but does not match the conditional update's "
            "criteria",
            code="conflict",
        )


def patch(
    hub: Hub,
    uow: UnitOfWork,
    resource_type: str,
    resource_id: str,
    operations: Any,
    *,
    if_match: str | None = None,
) -> WriteResult:
    """JSON Patch (RFC 6902) applied to the current version, then validated like an update."""
    require_type(resource_type)
    current = uow.current(resource_type, resource_id, for_update=True)
    if current is None or not _may_delete(uow, current_access(), current):
        raise not_found(f"{resource_type}/{resource_id} is not known")
    if current.deleted or current.content is None:
        raise FhirError(410, f"{resource_type}/{resource_id} has been deleted", code="deleted")
    check_if_match(current, if_match)
    if not isinstance(operations, list):
        raise invalid("A JSON Patch body must be an array of operations")
    document = orjson.loads(current.content)
    try:
        patched = jsonpatch.JsonPatch(operations).apply(document)
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        TypeError,
        KeyError,
    ) as exc:
        raise FhirError(422, f"JSON Patch could not be applied: {exc}", code="processing") from exc
    if patched.get("resourceType") != resource_type or patched.get("id") != resource_id:
        raise FhirError(422, "A patch may not change resourceType or id", code="processing")
    validated(hub, patched, resource_type)
    version = store_resource(
        hub, uow, "patch", resource_type, resource_id, patched, previous=current, method="PATCH"
    )
    return WriteResult(version, 200)


def delete(
    hub: Hub, uow: UnitOfWork, resource_type: str, resource_id: str, *, missing_ok: bool = False
) -> WriteResult | None:
    """Delete (append a tombstone). Deleting what is already deleted changes nothing (204).

    What does not exist, or is not the caller's to see, is 404; with ``missing_ok`` (Bundle
    entries, whose DELETE of an unknown id has always been a no-op) it is None for both alike.
    """
    require_type(resource_type)
    access = current_access()
    access.require("d", resource_type)
    current = uow.current(resource_type, resource_id, for_update=True)
    if current is None or not _may_delete(uow, access, current):
        if missing_ok:
            return None
        raise not_found(f"{resource_type}/{resource_id} is not known")
    if current.deleted:
        return WriteResult(current, 204)
    version = uow.delete(resource_type, resource_id)
    assert version is not None
    return WriteResult(version, 200)


def _may_delete(uow: UnitOfWork, access: Access, current: StoredVersion) -> bool:
    """Whether the caller may change ``current`` (patch, delete): it must see it and own it."""
    if access.tenant is not None and current.resource_type in SHARED_TYPES:
        if current.resource_type not in TENANT_TERMINOLOGY_TYPES or current.tenant != access.tenant:
            return False
    return sees(uow, access, current)


def conditional_delete(
    hub: Hub, uow: UnitOfWork, resource_type: str, query: str
) -> WriteResult | None:
    """``DELETE Type?criteria`` (single-match mode: several matches are 412)."""
    from fhirhub.core.interactions.search import match_ids

    require_type(resource_type)
    matches = match_ids(hub, uow, resource_type, query)
    if len(matches) > 1:
        raise FhirError(
            412,
            f"Conditional delete {query!r} matches {len(matches)} resources",
            code="multiple-matches",
        )
    if not matches:
        return None
    return delete(hub, uow, resource_type, matches[0])
