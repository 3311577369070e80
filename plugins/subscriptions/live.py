"""Live channels: the FHIR websocket binding and server-sent events.

Websocket (``/plugins/subscriptions/ws``), as the Subscriptions Backport IG binds it: the
client gets a token from ``Subscription/{id}/$get-ws-binding-token`` (an authenticated
request), connects, and sends ``bind-with-token <token>``; the hub answers with a handshake
Bundle per subscription, then one ``event-notification`` Bundle per event and ``heartbeat``
Bundles at the subscription's heartbeat period. The R4 form ``bind <id>`` (answered
``bound <id>``, then ``ping <id>`` per event) is accepted only when authentication is off,
since it carries no credentials.

Server-sent events (``GET /plugins/subscriptions/sse/{id}``, authenticated like any request):
the same Bundles as ``event: notification`` records whose ``id`` is the last event number, so
a browser's automatic reconnect (``Last-Event-ID``) resumes without a gap.

Both read the durable queue for anything the live fan-out did not bring (a gap in event
numbers, a reconnect), so a client sees every event in order, none twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from fhirhub.plugins.subscriptions import model
from fhirhub.plugins.subscriptions.operations import owned_state
from fhirhub.plugins.subscriptions.service import SubscriptionService, live_channel, service_of
from fhirhub.sdk import FhirError, Hub, live_queue

SSE_KEEPALIVE_S = 15.0


class _Binding:
    """One subscription bound on one connection: the last event number it was sent."""

    def __init__(self, service: SubscriptionService, subscription_id: str, last: int) -> None:
        self.service = service
        self.id = subscription_id
        self.last = last

    async def catch_up(self, upto: int | None = None) -> list[tuple[int, str]]:
        """Bundles (as JSON text) for the events after ``last`` from the durable queue (up
        to ``upto``)."""
        state = await run_in_threadpool(self.service.state, self.id)
        if state is None:
            return []
        events = await run_in_threadpool(self.service.events, self.id, self.last, upto, 100)
        bundles = []
        for event in events:
            bundle = self.service.bundle(state, "event-notification", [event])
            bundles.append((event.number, orjson.dumps(bundle).decode()))
            self.last = event.number
        return bundles

    async def accept(self, message: dict[str, Any]) -> list[tuple[int, str]]:
        """What to send for a live message: nothing for numbers already sent, the queue's
        missing events first when numbers were skipped.

        A websocket subscription's message carries its Bundle, serialised once for every
        client (``text``), and goes out before its events are stored; the events of earlier
        messages are stored by then (the consumer stores a batch before it numbers the
        next). Other messages only announce numbers stored in the queue."""
        numbers: list[int] = message.get("numbers") or []
        if not numbers or numbers[-1] <= self.last:
            return []
        out: list[tuple[int, str]] = []
        if numbers[0] > self.last + 1:
            out += await self.catch_up(numbers[0] - 1)
        if numbers[0] == self.last + 1 and "text" in message:
            self.last = numbers[-1]
            out.append((self.last, message["text"]))
        else:
            out += await self.catch_up(numbers[-1])
        return out


def router(hub: Hub) -> APIRouter:
    routes = APIRouter()
    service = service_of(hub)

    @routes.websocket("/ws")
    async def websocket(socket: WebSocket) -> None:
        await socket.accept()
        send_lock = asyncio.Lock()
        tasks: dict[str, asyncio.Task[None]] = {}

        async def send(text: str) -> None:
            async with send_lock:
                await socket.send_text(text)

        async def forward(binding: _Binding, ping_only: bool, heartbeat: float) -> None:
            with live_queue(hub, live_channel(binding.id)) as queue:
                backlog = await binding.catch_up()
                if (recent := service.recent.get(binding.id)) is not None:
                    backlog += await binding.accept(recent)  # handed over, maybe not stored
                for _, text in backlog:
                    await send(f"ping {binding.id}" if ping_only else text)
                while True:
                    message = await queue.get(timeout=heartbeat or None)
                    if message is None:
                        state = await run_in_threadpool(service.state, binding.id)
                        if state is not None and not ping_only:
                            await send(
                                orjson.dumps(service.bundle(state, "heartbeat", [])).decode()
                            )
                        continue
                    for _, text in await binding.accept(message):
                        await send(f"ping {binding.id}" if ping_only else text)

        async def bind(subscription_id: str, ping_only: bool) -> None:
            state = await run_in_threadpool(service.state, subscription_id)
            if state is None or state.spec.channel != "websocket":
                await send(f"error {subscription_id} is not an active websocket subscription")
                return
            if ping_only:
                await send(f"bound {subscription_id}")
            else:
                handshake = service.bundle(state, "handshake", [])
                await send(orjson.dumps(handshake).decode())
            binding = _Binding(service, subscription_id, state.event_count)
            old = tasks.pop(subscription_id, None)
            if old is not None:
                old.cancel()
            tasks[subscription_id] = asyncio.create_task(
                forward(binding, ping_only, float(state.spec.heartbeat_s))
            )

        try:
            while True:
                text = (await socket.receive_text()).strip()
                command, _, argument = text.partition(" ")
                argument = argument.strip()
                if command == "bind-with-token":
                    ids = await run_in_threadpool(_redeem, service, argument)
                    if ids is None:
                        await send("error invalid or expired token")
                        continue
                    for subscription_id in ids:
                        await bind(subscription_id, ping_only=False)
                elif command == "bind" and not hub.settings.auth_enabled:
                    await bind(argument, ping_only=True)
                elif command == "unbind" and argument in tasks:
                    tasks.pop(argument).cancel()
                    await send(f"unbound {argument}")
                else:
                    await send(f"error unknown command {command!r}")
        except WebSocketDisconnect:
            pass
        finally:
            for task in tasks.values():
                task.cancel()

    @routes.get("/sse/{subscription_id}")
    async def server_sent_events(subscription_id: str, request: Request) -> StreamingResponse:
        try:
            _, state = await run_in_threadpool(owned_state, hub, subscription_id)
        except FhirError:
            raise
        start = request.headers.get("last-event-id") or request.query_params.get("since")
        last = int(start) if start and start.isdigit() else state.event_count
        binding = _Binding(service, subscription_id, last)

        async def stream() -> AsyncIterator[bytes]:
            with live_queue(hub, live_channel(subscription_id)) as queue:
                yield b": connected\n\n"
                for number, text in await binding.catch_up():
                    yield _sse(text, number)
                while not await request.is_disconnected():
                    message = await queue.get(timeout=SSE_KEEPALIVE_S)
                    if message is None:
                        # Live channel quiet: also the moment to pick up what it may have
                        # missed (events of a rest-hook subscription are not broadcast).
                        for number, text in await binding.catch_up():
                            yield _sse(text, number)
                        yield b": keep-alive\n\n"
                        continue
                    for number, text in await binding.accept(message):
                        yield _sse(text, number)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return routes


def _sse(text: str, number: int) -> bytes:
    return b"id: %d\nevent: notification\ndata: %s\n\n" % (number, text.encode())


def _redeem(service: SubscriptionService, token: str) -> list[str] | None:
    with service.db.read() as conn:
        row = conn.execute(
            select(model.binding_token).where(model.binding_token.c.token == token)
        ).first()
    if row is None or row.expires_at < time.time():
        return None
    return [i for i in row.subscriptions.split() if i]
