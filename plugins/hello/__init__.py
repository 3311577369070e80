"""The smallest complete fhirhub plugin: a page, an operation and a hook.

* ``GET /plugins/hello/`` — a page (listed in the UI shell's navigation through ``ui_pages``)
  showing how many versions of each resource type this plugin has seen;
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

from fhirhub.sdk import Hub, Operation, OperationCall, StoredVersion, create, hookimpl

__version__ = "1.0.0"
PLUGIN_NAME = "hello"

#: The FHIR resource types and SMART scopes this plugin needs (shown by ``fhirhub plugins``).
MANIFEST = {"resource_types": ["*"], "scopes": ["system/*.r"]}

_seen: Counter[str] = Counter()
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
        with _lock:
            rows = "".join(
                f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in sorted(_seen.items())
            )
        return (
            "<!doctype html><html><head><title>Hello</title></head><body>"
            "<h1>Hello from a plugin</h1><p>Versions committed since start-up:</p>"
            f"<table><tr><th>type</th><th>versions</th></tr>{rows}</table></body></html>"
        )

    return router


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    return [{"path": "/plugins/hello/", "title": "Hello", "order": 90}]


@hookimpl
def resource_committed(event: StoredVersion, hub: Hub) -> None:
    with _lock:
        _seen[event.resource_type] += 1


@hookimpl
def register_tasks(hub: Hub) -> dict[str, Any]:
    def note(text: str) -> str:
        stored = create(hub, {"resourceType": "Basic", "code": {"text": f"hello: {text}"}})
        return str(stored["id"])

    return {"hello.note": note}
