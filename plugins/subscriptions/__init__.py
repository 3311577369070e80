"""FHIR Subscriptions: R4 criteria subscriptions and the R5 Backport's topic-based ones,
delivered by rest-hook, websocket and server-sent events, from the version log (docs/subscriptions.md).

* ``resource_before_write`` checks a Subscription when it is written (its criteria run through
  the REST search code: what the search cannot answer is a 400), records whose eyes it has
  (the writer's access) and makes a ``requested`` subscription ``active``;
* a consumer of the version log evaluates every committed version, in log order, against each
  subscription's criteria as its owner, and queues numbered events (``service.py``);
* a delivery thread POSTs rest-hook notifications in order with exponential back-off
  (``delivery.py``); websocket and SSE clients get them live (``live.py``), through Redis
  pub/sub across API processes when ``FHIRHUB_BROKER`` is a redis:// URL;
* ``$status``, ``$events`` and ``$get-ws-binding-token`` (``operations.py``);
* a status page in the UI shell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy import insert, update

from fhirhub.plugins.subscriptions import model
from fhirhub.plugins.subscriptions.delivery import Deliverer
from fhirhub.plugins.subscriptions.demo import seed_demo
from fhirhub.plugins.subscriptions.live import router as live_router
from fhirhub.plugins.subscriptions.operations import operations
from fhirhub.plugins.subscriptions.owners import access_to_json
from fhirhub.plugins.subscriptions.service import (
    PLUGIN_NAME,
    internal_write,
    service_of,
)
from fhirhub.plugins.subscriptions.spec import parse_subscription
from fhirhub.plugins.subscriptions.topics import known_topics
from fhirhub.sdk import (
    Consumer,
    Hub,
    HubLocal,
    Operation,
    WriteContext,
    current_access,
    hookimpl,
    matching,
)

__version__ = "1.0.0"
__all__ = ["PLUGIN_NAME"]

MANIFEST = {"resource_types": ["Subscription", "Basic"], "scopes": ["system/*.rs"]}

STATIC = Path(__file__).resolve().parent / "static"
STATUS_PAGE = f"/plugins/{PLUGIN_NAME}/page/"

_deliverers: HubLocal[Deliverer] = HubLocal("subscriptions.deliverer")


@hookimpl
def register_consumers(hub: Hub) -> list[Consumer]:
    service = service_of(hub)
    return [
        Consumer(
            "subscriptions",
            service.handle_versions,
            start="head",
            batch_size=max(1, service.settings.batch_size),
            durable=service.durable,
            linger_s=service.linger_s,
            # Criteria evaluation is CPU work: beside a write load it runs on another core.
            worker_process=True,
            # The delivery thread takes the consumer's events from memory.
            companion=lambda: _start_delivery(hub),
        )
    ]


def _start_delivery(hub: Hub) -> Any:
    """The rest-hook delivery thread, in the process serving the consumer; returns its stop."""
    service = service_of(hub)
    service.serve_consumer(True)
    deliverer = _deliverers.set(hub, Deliverer(service).start())

    def stop() -> None:
        if _deliverers.get(hub) is deliverer:
            _deliverers.pop(hub)
        deliverer.stop()
        service.serve_consumer(False)
        service.wait_stored(timeout=10.0)  # what was numbered is stored before the process ends

    return stop


@hookimpl
def resource_before_write(resource: dict[str, Any], context: WriteContext) -> None:
    if context.resource_type != "Subscription" or internal_write.get():
        return
    hub = context.hub
    access = current_access()
    spec = parse_subscription({**resource, "id": context.resource_id}, known_topics(hub))
    for trigger in spec.triggers:
        access.require("r", trigger.resource_type)
        matching(hub, trigger.resource_type, trigger.criteria, [])  # 400 when unanswerable
    if resource.get("status") in (None, "requested"):
        resource["status"] = "active"  # accepted: the server's part of R4's status workflow
    if resource["status"] == "active":
        resource.pop("error", None)  # a (re)activated subscription has no current error
    owner = access_to_json(access)
    conn = context.unit_of_work.conn
    changed = conn.execute(
        update(model.owner).where(model.owner.c.id == context.resource_id).values(access=owner)
    ).rowcount
    if not changed:
        conn.execute(insert(model.owner).values(id=context.resource_id, access=owner))


@hookimpl
def register_operations(hub: Hub) -> list[Operation]:
    service_of(hub)  # while the hub is built: the tables exist before the first write
    return operations()


@hookimpl
def startup(hub: Hub) -> None:
    seed_demo(hub)


@hookimpl
def shutdown(hub: Hub) -> None:
    if (deliverer := _deliverers.pop(hub)) is not None:
        deliverer.stop()
    service_of(hub).close()


@hookimpl
def health_checks(hub: Hub) -> list[tuple[str, Any]]:
    deliverer = _deliverers.get(hub)
    return [("subscriptions-delivery", lambda: deliverer is None or deliverer.alive)]


@hookimpl
def register_routes(hub: Hub) -> list[APIRouter]:
    pages = APIRouter()

    @pages.get("/page/", response_class=HTMLResponse)
    def status_page() -> FileResponse:
        # The page holds no data: its script reads the Subscriptions through the FHIR API
        # with the signed-in user's token, as the UI shell does.
        return FileResponse(STATIC / "subscriptions.html", media_type="text/html")

    @pages.get("/page/subscriptions.js")
    def status_script() -> FileResponse:
        return FileResponse(STATIC / "subscriptions.js", media_type="text/javascript")

    return [pages, live_router(hub)]


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    # The page and the websocket endpoint: the page's data comes from the protected API, and
    # a websocket authenticates with its binding token.
    return [STATUS_PAGE, f"/plugins/{PLUGIN_NAME}/ws"]


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    return [{"path": STATUS_PAGE, "title": "Subscriptions", "order": 60}]
