"""Tenants are Organizations (hospitals, clinics), each labelled as its own tenant
(:func:`fhirhub.sdk.with_tenant`), so that it is visible to its members."""

from __future__ import annotations

import re
from typing import Any

from fhirhub.sdk import SYSTEM, FhirError, acting_as, tenant_of, with_tenant

#: http://hl7.org/fhir/R4/datatypes.html#id
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def create_tenant(hub: Any, tenant_id: str, name: str) -> dict[str, Any]:
    """Create the Organization ``tenant_id`` as its own tenant. An id that exists (in any
    tenant, or deleted) is 409: an existing Organization is never overwritten or moved."""
    from fhirhub.sdk import transaction

    if not FHIR_ID.match(tenant_id):
        raise FhirError(400, f"{tenant_id!r} is not a FHIR id (A-Z a-z 0-9 - ., at most 64)")
    organization: dict[str, Any] = {
        "resourceType": "Organization",
        "id": tenant_id,
        "active": True,
        "name": name,
    }
    with_tenant(organization, tenant_id)
    with acting_as(SYSTEM), transaction(hub) as tx:
        # Checked in the unit of work that writes it; deleted ones count too.
        if tx.current("Organization", tenant_id) is not None:
            raise FhirError(409, f"The Organization {tenant_id!r} exists already", code="duplicate")
        tx.update(organization)
    return organization


def list_tenants(hub: Any, only: str | None = None) -> list[dict[str, Any]]:
    """Organizations that are tenants (labelled with their own id)."""
    from fhirhub.sdk import read, search

    with acting_as(SYSTEM):
        if only is not None:
            try:
                found = [read(hub, "Organization", only)]
            except FhirError:
                found = []
        else:
            found = search(hub, "Organization", {"_count": "1000"})
    return [
        {"id": org["id"], "name": org.get("name", "")}
        for org in found
        if tenant_of(org) == org.get("id")
    ]


def tenant_exists(hub: Any, tenant_id: str) -> bool:
    return bool(list_tenants(hub, only=tenant_id))
