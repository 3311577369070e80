"""Live delivery of vitals events (new scores, alerts, escalations, acknowledgments) to open
dashboards: the seam a FHIR Subscriptions implementation can take over.

:class:`Feed` is what the rest of the plugin calls (``publish``). The default,
:class:`LiveFeed`, publishes each event on the SDK's live fan-out (``publish_live``) on one
channel, :data:`CHANNEL`, with its tenant beside it; the dashboard's Server-Sent-Events stream
listens there (``live_queue``) and keeps its caller's tenant only. In one process the fan-out is
in memory; with ``FHIRHUB_BROKER=redis://...`` it goes through Redis, so a dashboard connected
to any API process hears the alerts of a write made on another (the consumer runs in one of
them). A deployment with topic-based Subscriptions can register another ``Feed`` with
:func:`set_feed` without touching the scoring or alert code.
"""

from __future__ import annotations

from typing import Any, Protocol

from fhirhub.sdk import Hub, HubLocal, publish_live

#: The live channel of every vitals event: ``{"tenant": "<tenant or ''>", "event": {...}}``.
CHANNEL = "vitals"


class Feed(Protocol):
    def publish(self, tenant: str | None, event: dict[str, Any]) -> None: ...


class LiveFeed:
    """Events to the dashboards of every API process, through the SDK's live fan-out. Best
    effort, as the fan-out is: a dashboard that reconnects reads the board again."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def publish(self, tenant: str | None, event: dict[str, Any]) -> None:
        publish_live(self.hub, CHANNEL, {"tenant": tenant or "", "event": event})


def tenant_event(message: dict[str, Any], tenant: str | None) -> dict[str, Any] | None:
    """The event of a :data:`CHANNEL` message if it is for ``tenant`` ("" the untenanted
    ones; None: every tenant, for the system), else None."""
    event = message.get("event")
    if not isinstance(event, dict):
        return None
    if tenant is not None and message.get("tenant") != tenant:
        return None
    return event


_live: HubLocal[LiveFeed] = HubLocal("vitals.live-feed")
_feeds: HubLocal[Feed] = HubLocal("vitals.feed")


def feed_of(hub: Hub) -> Feed:
    """The feed events go to (the live fan-out unless :func:`set_feed` replaced it)."""
    return _feeds.get(hub) or _live.setdefault(hub, lambda: LiveFeed(hub))


def set_feed(hub: Hub, feed: Feed) -> None:
    _feeds.set(hub, feed)
