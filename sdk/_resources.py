"""Typed in-process access to FHIR resources for plugins.

Each helper runs the same interaction as the REST API (validation, ``resource_before_write``
hooks, versions, indexes, ``resource_committed``), without HTTP.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhirhub.core.hub import Hub
from fhirhub.core.interactions import read as _read
from fhirhub.core.interactions import write as _write
from fhirhub.core.interactions.search import search_bundle


def read(hub: Hub, resource_type: str, resource_id: str) -> dict[str, Any]:
    """The current version of a resource; raises ``FhirError`` 404/410."""
    with hub.store.read() as conn:
        version = _read.read(conn, resource_type, resource_id)
    content: dict[str, Any] = orjson.loads(version.content or b"{}")
    return content


def search(
    hub: Hub, resource_type: str, params: dict[str, str] | list[tuple[str, str]] | None = None
) -> list[dict[str, Any]]:
    """Matching resources (the first page, ``_count`` applies), as dicts."""
    pairs = list(params.items()) if isinstance(params, dict) else list(params or [])
    with hub.store.read() as conn:
        bundle = orjson.loads(search_bundle(hub, conn, resource_type, pairs, base_url=hub.base_url))
    return [
        entry["resource"]
        for entry in bundle.get("entry", [])
        if entry.get("search", {}).get("mode") == "match"
    ]


def create(
    hub: Hub, resource: dict[str, Any], *, if_none_exist: str | None = None
) -> dict[str, Any]:
    """Create a resource (server-assigned id) and return it as stored."""
    with hub.store.unit_of_work() as uow:
        result = _write.create(
            hub, uow, str(resource.get("resourceType")), dict(resource), if_none_exist=if_none_exist
        )
    stored: dict[str, Any] = orjson.loads(result.version.content or b"{}")
    return stored


def update(hub: Hub, resource: dict[str, Any], *, if_match: str | None = None) -> dict[str, Any]:
    """Update (or create with its id) a resource and return it as stored."""
    with hub.store.unit_of_work() as uow:
        result = _write.update(
            hub,
            uow,
            str(resource.get("resourceType")),
            str(resource.get("id")),
            dict(resource),
            if_match=if_match,
        )
    stored: dict[str, Any] = orjson.loads(result.version.content or b"{}")
    return stored


def delete(hub: Hub, resource_type: str, resource_id: str) -> None:
    with hub.store.unit_of_work() as uow:
        _write.delete(hub, uow, resource_type, resource_id)


def plugin_settings(hub: Hub, name: str) -> dict[str, Any]:
    """The ``[plugin.<name>]`` table of the TOML configuration (empty when absent)."""
    return dict(hub.settings.plugin_config.get(name, {}))
