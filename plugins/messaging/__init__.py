"""Messaging between users and notifications: the clinic's inbox (docs/messaging.md).

* messages are FHIR ``Communication`` resources written through the REST API; a user's own
  messages carry their Practitioner as ``sender`` (filled in, and checked: no one sends in
  another's name);
* open pages hear of new messages and receipts at once (server-sent events over the SDK's live
  fan-out, across API processes with Redis);
* ``/plugins/messaging/`` is the conversation page (threads, unread counts, read receipts),
  listed in the UI shell;
* a notification bell in the UI shell's top bar (``ui_topbar_items``) on every shell page;
* appointment reminders (a schedule) and ``fhirhub notify USER TYPE TEXT``;
* notifications by email for the users who ask for it (:mod:`.email`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from fhirhub.plugins.messaging import email, identity
from fhirhub.plugins.messaging.demo import seed_demo
from fhirhub.plugins.messaging.messages import (
    CATEGORIES,
    CATEGORY_SYSTEM,
    category_of,
    inbox,
    is_unread,
    live_channel,
    mark_read,
    now_instant,
    publish_versions,
    read_all,
    sent_by,
    thread_root,
)
from fhirhub.plugins.messaging.reminders import send_reminders
from fhirhub.plugins.messaging.settings import MessagingSettings
from fhirhub.sdk import (
    SYSTEM,
    Consumer,
    FhirError,
    Hub,
    Schedule,
    StoredVersion,
    WriteContext,
    acting_as,
    command_hub,
    current_access,
    forbidden,
    hookimpl,
    live_queue,
    plugin_settings,
    search,
    system_for,
    tenant_of,
    transaction,
)

PLUGIN_NAME = "messaging"
__version__ = "1.0.0"

MANIFEST = {
    "resource_types": ["Communication", "CommunicationRequest", "Appointment", "Practitioner"],
    "scopes": ["user/Communication.cruds", "system/Appointment.rs"],
}

STATIC = Path(__file__).resolve().parent / "static"
PAGE = f"/plugins/{PLUGIN_NAME}/page/"


def _settings(hub: Hub) -> MessagingSettings:
    settings: MessagingSettings = plugin_settings(hub, PLUGIN_NAME, MessagingSettings)
    return settings


@hookimpl
def register_consumers(hub: Hub) -> list[Consumer]:
    def handle(versions: Sequence[StoredVersion]) -> None:
        publish_versions(hub, list(versions))

    def queue_email(versions: Sequence[StoredVersion]) -> None:
        email.enqueue(hub, _settings(hub), list(versions))

    return [
        Consumer(
            "messaging-live",
            handle,
            types=frozenset({"Communication", "CommunicationRequest"}),
            batch_size=200,
        ),
        Consumer(
            "messaging-email",
            queue_email,
            types=frozenset({"Communication"}),
            batch_size=100,
        ),
    ]


@hookimpl
def resource_before_write(resource: dict[str, Any], context: WriteContext) -> None:
    """A user's message is sent in their own name: ``sender`` is their Practitioner."""
    if context.resource_type != "Communication" or context.interaction not in (
        "create",
        "transaction-entry",
    ):
        return
    username = identity.username_of(current_access())
    if username is None:
        return
    mine = identity.practitioner_of(context.hub, username)
    if mine is None:
        return
    sender = (resource.get("sender") or {}).get("reference")
    if sender is None:
        resource["sender"] = {"reference": mine}
    elif sender not in identity.mailboxes(context.hub, mine):
        raise forbidden(f"You cannot send a message as {sender}")


@hookimpl
def startup(hub: Hub) -> None:
    email.database(hub)  # the email tables, before the consumer and schedule use them
    seed_demo(hub)


@hookimpl
def register_schedules(hub: Hub) -> list[Schedule]:
    settings = _settings(hub)

    def remind(h: Hub) -> None:
        send_reminders(h, settings.reminder_lead_s)

    def send_email(h: Hub) -> None:
        email.deliver_due(h, settings)

    return [
        Schedule("messaging-reminders", settings.reminder_check_s, remind),
        Schedule("messaging-email", settings.email_check_s, send_email),
    ]


def _mailbox_summary(hub: Hub) -> dict[str, Any]:
    me = identity.me(hub)
    boxes = identity.mailboxes(hub, me)
    received = inbox(hub, boxes)
    sent = sent_by(hub, me)
    by_id = {m["id"]: m for m in received + sent}
    threads: dict[str, list[dict[str, Any]]] = {}

    def order(m: dict[str, Any]) -> tuple[str, str]:
        return (m.get("sent", ""), (m.get("meta") or {}).get("lastUpdated", ""))

    for message in sorted(by_id.values(), key=order):
        threads.setdefault(thread_root(message, by_id), []).append(message)
    unread = [m for m in received if is_unread(m)]
    return {
        "me": me,
        "mailboxes": boxes,
        "unread": len(unread),
        "unread_notifications": sum(
            1
            for m in unread
            if any(
                c.get("system") == CATEGORY_SYSTEM and c.get("code") != "message"
                for concept in m.get("category", ())
                for c in concept.get("coding", ())
            )
        ),
        "threads": [
            {"id": root, "messages": messages}
            for root, messages in sorted(
                threads.items(), key=lambda t: order(t[1][-1]), reverse=True
            )
        ],
    }


def _names(hub: Hub, references: set[str]) -> dict[str, str]:
    """Display names of the Practitioners among ``references`` the caller can see."""
    ids = sorted(
        r.removeprefix("Practitioner/") for r in references if r.startswith("Practitioner/")
    )
    names: dict[str, str] = {}
    if not ids:
        return names
    for found in search(hub, "Practitioner", {"_id": ",".join(ids), "_count": str(len(ids))}):
        for name in found.get("name", ()):
            text = name.get("text") or " ".join([*name.get("given", ()), name.get("family", "")])
            if text.strip():
                names[f"Practitioner/{found['id']}"] = text.strip()
                break
    return names


def _notifications(hub: Hub, limit: int) -> dict[str, Any]:
    """The bell's view: unread counts and the latest messages received, each with its thread.

    A caller who is no messaging user (no linked Practitioner) gets ``available: false``
    rather than 403: the bell is on every shell page, for every user."""
    username = identity.username_of(current_access())
    if username is None or identity.practitioner_of(hub, username) is None:
        return {"available": False, "unread": 0, "notifications": 0, "items": []}
    summary = _mailbox_summary(hub)
    received = [
        (thread["id"], m)
        for thread in summary["threads"]
        for m in thread["messages"]
        if (m.get("sender") or {}).get("reference") != summary["me"]
    ]
    received.sort(key=lambda t: t[1].get("sent", ""), reverse=True)
    latest = received[:limit]
    senders = {(m.get("sender") or {}).get("reference") or "" for _, m in latest}
    names = _names(hub, senders)
    return {
        "available": True,
        "unread": summary["unread"],
        "notifications": summary["unread_notifications"],
        "items": [_bell_item(root, m, names) for root, m in latest],
    }


def _bell_item(thread: str, message: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    sender = (message.get("sender") or {}).get("reference")
    return {
        "id": message["id"],
        "thread": thread,
        "category": category_of(message),
        "sender": sender,
        "sender_name": names.get(sender or "") or sender or "fhirhub",
        "text": " ".join(
            p.get("contentString") or (p.get("contentAttachment") or {}).get("title", "")
            for p in message.get("payload", ())
        ),
        "sent": message.get("sent"),
        "unread": is_unread(message),
    }


def _preferences(hub: Hub) -> dict[str, Any]:
    me = identity.me(hub)
    tenant = current_access().tenant
    prefs = email.preferences_of(hub, tenant, me)
    return {
        "notifications": prefs.notifications,
        "messages": prefs.messages,
        "address": prefs.address,
        "effective_address": email.email_address(hub, me, prefs),
        "email_available": bool(_settings(hub).smtp_url),
        "delivery": email.delivery_status(hub, tenant, me),
    }


@hookimpl
def register_routes(hub: Hub) -> APIRouter:
    router = APIRouter()
    keepalive = _settings(hub).keepalive_s

    @router.get("/page/", response_class=HTMLResponse)
    def page() -> FileResponse:
        # The page holds no data: its script reads through the API with the user's token.
        return FileResponse(STATIC / "messages.html", media_type="text/html")

    @router.get("/page/messages.js")
    def script() -> FileResponse:
        return FileResponse(STATIC / "messages.js", media_type="text/javascript")

    @router.get("/page/bell.js")
    def bell_script() -> FileResponse:
        return FileResponse(STATIC / "bell.js", media_type="text/javascript")

    @router.get("/api/notifications")
    def notifications(limit: int = 10) -> dict[str, Any]:
        return _notifications(hub, max(1, min(limit, 50)))

    @router.post("/api/read-all")
    def read_everything() -> dict[str, Any]:
        boxes = identity.mailboxes(hub, identity.me(hub))
        return {"read": read_all(hub, boxes)}

    @router.get("/api/preferences")
    def get_preferences() -> dict[str, Any]:
        return _preferences(hub)

    @router.put("/api/preferences")
    async def put_preferences(request: Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise FhirError(400, f"The body is not JSON: {exc}") from exc

        def save() -> dict[str, Any]:
            # Only the caller's own: no parameter names a user.
            me = identity.me(hub)
            tenant = current_access().tenant
            wanted = email.parse_preferences(body, email.preferences_of(hub, tenant, me))
            email.save_preferences(hub, tenant, me, wanted)
            return _preferences(hub)

        return await run_in_threadpool(save)

    @router.get("/api/mailbox")
    def mailbox() -> dict[str, Any]:
        return _mailbox_summary(hub)

    @router.get("/api/unread")
    def unread() -> dict[str, Any]:
        summary = _mailbox_summary(hub)
        return {"unread": summary["unread"], "notifications": summary["unread_notifications"]}

    @router.post("/api/messages/{message_id}/read")
    def read_receipt(message_id: str) -> dict[str, Any]:
        boxes = identity.mailboxes(hub, identity.me(hub))
        return mark_read(hub, message_id, boxes)

    @router.get("/api/stream")
    async def stream(request: Request) -> StreamingResponse:
        boxes = await run_in_threadpool(lambda: identity.mailboxes(hub, identity.me(hub)))
        tenant = current_access().tenant

        async def events() -> AsyncIterator[bytes]:
            with live_queue(hub, *(live_channel(b) for b in boxes)) as queue:
                yield b": connected\n\n"
                while not await request.is_disconnected():
                    event = await queue.get(timeout=keepalive)
                    if event is None:
                        yield b": keep-alive\n\n"
                    elif tenant is None or event.get("tenant") in (tenant, None):
                        yield b"event: message\ndata: %s\n\n" % orjson.dumps(event)
                    await asyncio.sleep(0)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    return [PAGE]


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    return [{"path": PAGE, "title": "Messages", "order": 15}]


@hookimpl
def ui_topbar_items(hub: Hub) -> list[dict[str, Any]]:
    # The script sits under the public page prefix: it holds no data, it reads the API.
    return [
        {
            "id": "messaging-bell",
            "title": "Notifications",
            "icon": "🔔",
            "script": f"{PAGE}bell.js",
            "order": 10,
        }
    ]


def notify(hub: Hub, username: str, category: str, text: str) -> dict[str, Any]:
    """Send a notification to a user (their Practitioner), as the system for its tenant."""
    if category not in CATEGORIES:
        raise SystemExit(f"TYPE must be one of {', '.join(CATEGORIES)}")
    with acting_as(SYSTEM):
        found = search(
            hub,
            "Practitioner",
            {"identifier": f"{identity.USER_SYSTEM}|{username}", "_count": "2"},
        )
    if not found:
        raise SystemExit(
            f"No Practitioner with identifier {identity.USER_SYSTEM}|{username}: "
            "link the user to a Practitioner first"
        )
    practitioner = found[0]
    recipient = f"Practitioner/{practitioner['id']}"
    message: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "in-progress",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}],
        "sent": now_instant(),
        "recipient": [{"reference": recipient}],
        "payload": [{"contentString": text}],
    }
    with acting_as(system_for(tenant_of(practitioner))), transaction(hub) as tx:
        result = tx.create(message)
    return {"id": result.version.resource_id, "recipient": recipient}


@hookimpl
def register_commands(cli: Any) -> None:
    @cli.command("notify")  # type: ignore[untyped-decorator]
    def notify_command(user: str, type: str, text: str, db: str | None = None) -> None:  # noqa: A002
        """Send a notification (TYPE: message, notification or reminder) to USER's inbox."""
        with command_hub(db=db) as hub:
            sent = notify(hub, user, type, text)
        print(f"Communication/{sent['id']} sent to {sent['recipient']}")
