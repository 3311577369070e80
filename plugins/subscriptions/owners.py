"""Whose eyes a subscription has: the access of the caller who wrote it, kept so that criteria
are evaluated, and events shown, exactly as that caller's searches would be (tenant, scopes,
patient context), long after the request that created it is gone."""

from __future__ import annotations

from typing import Any

import orjson

from fhirhub.sdk import Access, Scope, parse_scopes, system_for


def scope_text(scope: Scope) -> str:
    return f"{scope.context}/{scope.resource_type}.{''.join(sorted(scope.permissions))}"


def access_to_json(access: Access) -> str:
    data: dict[str, Any] = {
        "subject": access.subject,
        "tenant": access.tenant,
        "roles": sorted(access.roles),
        "scopes": None if access.scopes is None else [scope_text(s) for s in access.scopes],
        "patient": access.patient,
        "client_id": access.client_id,
    }
    return orjson.dumps(data).decode()


def access_from_json(text: str | None, tenant: str | None) -> Access:
    """The stored owner; a subscription with none (written before the plugin ran, or by a
    bulk load) has the system's eyes for its own tenant."""
    if not text:
        return system_for(tenant)
    data = orjson.loads(text)
    scopes = data.get("scopes")
    return Access(
        subject=data["subject"],
        tenant=data.get("tenant"),
        roles=frozenset(data.get("roles") or ()),
        scopes=None if scopes is None else parse_scopes(" ".join(scopes)),
        patient=data.get("patient"),
        client_id=data.get("client_id"),
    )
