"""Live delivery of vitals events (new scores, alerts, escalations, acknowledgments) to open
dashboards: the seam a FHIR Subscriptions implementation can take over.

:class:`Feed` is what the rest of the plugin calls (``publish``); the in-process
:class:`LocalFeed` hands each event to the Server-Sent-Events streams of this process, filtered
by tenant. A deployment with topic-based Subscriptions can register another ``Feed`` with
:func:`set_feed` without touching the scoring or alert code.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Protocol

from fhirhub.sdk import Hub, HubLocal


class Feed(Protocol):
    def publish(self, tenant: str | None, event: dict[str, Any]) -> None: ...


class LocalFeed:
    """Fan-out to the asyncio queues of this process's open streams."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: list[
            tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]], str | None]
        ] = []

    def subscribe(self, tenant: str | None) -> asyncio.Queue[dict[str, Any]]:
        """A queue of the events of ``tenant`` ("" the untenanted ones; None: every tenant,
        for the system)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        with self._lock:
            self._streams.append((asyncio.get_running_loop(), queue, tenant))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._streams = [s for s in self._streams if s[1] is not queue]

    def publish(self, tenant: str | None, event: dict[str, Any]) -> None:
        with self._lock:
            streams = list(self._streams)
        for loop, queue, wanted in streams:
            if wanted is not None and wanted != (tenant or ""):
                continue
            try:
                loop.call_soon_threadsafe(_offer, queue, event)
            except RuntimeError:  # the stream's loop closed
                self.unsubscribe(queue)


def _offer(queue: asyncio.Queue[dict[str, Any]], event: dict[str, Any]) -> None:
    if not queue.full():
        queue.put_nowait(event)


_local: HubLocal[LocalFeed] = HubLocal("vitals.local-feed")
_feeds: HubLocal[Feed] = HubLocal("vitals.feed")


def local_feed(hub: Hub) -> LocalFeed:
    return _local.setdefault(hub, LocalFeed)


def feed_of(hub: Hub) -> Feed:
    """The feed events go to (the local one unless :func:`set_feed` replaced it)."""
    return _feeds.get(hub) or local_feed(hub)


def set_feed(hub: Hub, feed: Feed) -> None:
    _feeds.set(hub, feed)
