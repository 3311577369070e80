"""The smallest complete fhirhub plugin: a page, an operation and a hook.

* ``GET /plugins/hello/`` — a page (listed in the UI shell's navigation through ``ui_pages``)
  showing how many versions of each resource type of the caller's tenant this plugin has seen
  (counts are data too: a caller sees only those of what it may search);
* ``$hello`` — a system-level FHIR operation answering a ``Parameters`` greeting;
* ``resource_committed`` — counts committed versions per resource type;
* ``hello.note`` — a background task (in-process, or on Celery workers with a broker) that
  stores a ``Basic`` resource through the SDK.

Copy this folder (or run ``fhirhub plugin new NAME``) to start your own; see docs/plugins.md.
"""

from __future__ import annotations

import html
import threading
from collections import Counter
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from fhirhub.sdk import (
    Hub,
    Operation,
    OperationCall,
    StoredVersion,
    create,
    current_access,
    hookimpl,
)

__version__ = "1.0.0"
PLUGIN_NAME = "hello"

#: The FHIR resource types and SMART scopes this plugin needs (shown by ``fhirhub plugins``).
MANIFEST = {"resource_types": ["*"], "scopes": ["system/*.r"]}

#: (tenant, resource type) -> versions committed since start-up.
_seen: Counter[tuple[str | None, str]] = Counter()
_lock = threading.Lock()


def _hello(call: OperationCall) -> dict[str, Any]:
    name = (call.parameters.get("name") or ["world"])[0]
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "greeting", "valueString": f"Hello, {name}!"}],
    }


@hookimpl
def register_operations(hub: Hub) -> list[Operation]:
    return [
        Operation(
            "hello",
            _hello,
            system=True,
            description="Answers a greeting; the smallest example of a plugin operation",
            parameters=(
                {"name": "name", "use": "in", "min": 0, "max": "1", "type": "string"},
                {"name": "greeting", "use": "out", "min": 1, "max": "1", "type": "string"},
            ),
        )
    ]


@hookimpl
def register_routes(hub: Hub) -> APIRouter:
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse)
    def page() -> str:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in visible_counts().items()
        )
        return (
            "<!doctype html><html><head><title>Hello</title></head><body>"
            "<h1>Hello from a plugin</h1><p>Versions committed since start-up:</p>"
            f"<table><tr><th>type</th><th>versions</th></tr>{rows}</table></body></html>"
        )

    return router


def visible_counts() -> dict[str, int]:
    """The counts the current caller may see: its tenant's (every tenant's for the system and
    global admins), of types it may search; none in a patient context, where a count would
    tell about other patients."""
    access = current_access()
    if access.patient is not None:
        return {}
    counts: Counter[str] = Counter()
    with _lock:
        seen = list(_seen.items())
    for (tenant, resource_type), number in seen:
        if access.tenant is not None and tenant != access.tenant:
            continue
        if access.allows("s", resource_type):
            counts[resource_type] += number
    return dict(sorted(counts.items()))


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    return [{"path": "/plugins/hello/", "title": "Hello", "order": 90}]


@hookimpl
def resource_committed(event: StoredVersion, hub: Hub) -> None:
    with _lock:
        _seen[(event.tenant, event.resource_type)] += 1


@hookimpl
def register_tasks(hub: Hub) -> dict[str, Any]:
    def note(text: str) -> str:
        stored = create(hub, {"resourceType": "Basic", "code": {"text": f"hello: {text}"}})
        return str(stored["id"])

    return {"hello.note": note}
