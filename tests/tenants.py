"""Tenants for tests: a tenant is an Organization, which must exist before anything written for
it can name it (a Provenance's ``onBehalfOf``, a resource's ``managingOrganization``)."""

from __future__ import annotations

from typing import Any

from fhirhub.sdk import SYSTEM, acting_as, transaction


def add_tenants(hub: Any, *tenants: str) -> None:
    """Create the Organization of each tenant id (as the system, idempotently)."""
    with acting_as(SYSTEM), transaction(hub) as tx:
        for tenant in tenants:
            tx.update({"resourceType": "Organization", "id": tenant, "name": f"Tenant {tenant}"})
