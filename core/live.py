"""Live fan-out: messages published by one thread or process reach every listener, in-process
or (with ``FHIRHUB_BROKER=redis://...``) in every API process through Redis pub/sub.

Durable things (the version log, a plugin's own queue) stay in the database; this is the fast
path that tells open websockets and server-sent-event streams that something happened, so a
client connected to any API process is woken. A message lost here (a process restarting) is
found again by the client asking the durable source (``$events``, a search) on reconnect.

Messages are JSON objects on named channels. Without Redis the fan-out is in-process only,
which is the whole story for a single API process (SQLite always is one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

log = logging.getLogger("fhirhub.live")

REDIS_PREFIX = "fhirhub:live:"
Callback = Callable[[dict[str, Any]], None]


@dataclass(eq=False)
class LiveFanout:
    """One hub's fan-out: local callbacks per channel, and Redis when configured."""

    redis_url: str = ""
    _callbacks: dict[str, list[Callback]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _redis: Any = None
    _pubsub: Any = None
    _thread: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    #: In a worker process without Redis: hands each message to the API process, whose
    #: listeners hold the browsers' connections (:mod:`fhirhub.core.worker_process`).
    relay: Callable[[str, dict[str, Any]], None] | None = None

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Deliver ``message`` to every listener of ``channel`` (in every process with Redis).
        Never raises: live delivery is best effort, the durable source is the truth."""
        if self.redis_url:
            try:
                self._client().publish(REDIS_PREFIX + channel, orjson.dumps(message))
                return
            except Exception:
                log.exception("Publishing to Redis failed; delivering in this process only")
        if self.relay is not None:
            self.relay(channel, message)
        self._deliver(channel, message)

    def deliver_here(self, channel: str, message: dict[str, Any]) -> None:
        """Deliver a message relayed from the worker process to this process's listeners."""
        self._deliver(channel, message)

    @contextlib.contextmanager
    def subscribed(self, channel: str, callback: Callback) -> Iterator[None]:
        """Call ``callback(message)`` (on a fan-out thread: keep it quick) for each message on
        ``channel`` while the block runs."""
        with self._lock:
            self._callbacks.setdefault(channel, []).append(callback)
        if self.redis_url:
            self._ensure_listener()
        try:
            yield
        finally:
            with self._lock:
                callbacks = self._callbacks.get(channel, [])
                if callback in callbacks:
                    callbacks.remove(callback)

    def listeners(self, channel: str) -> int:
        with self._lock:
            return len(self._callbacks.get(channel, []))

    def close(self) -> None:
        self._stopping.set()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                self._pubsub.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                self._redis.close()

    # -- internals ---------------------------------------------------------------------------
    def _deliver(self, channel: str, message: dict[str, Any]) -> None:
        with self._lock:
            callbacks = list(self._callbacks.get(channel, ()))
        for callback in callbacks:
            try:
                callback(message)
            except Exception:  # one broken listener must not starve the others
                log.exception("Live listener of %s failed", channel)

    def _client(self) -> Any:
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self.redis_url)
        return self._redis

    def _ensure_listener(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._pubsub = self._client().pubsub(ignore_subscribe_messages=True)
            self._pubsub.psubscribe(REDIS_PREFIX + "*")
            self._thread = threading.Thread(
                target=self._listen, name="fhirhub-live-redis", daemon=True
            )
            self._thread.start()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                item = self._pubsub.get_message(timeout=1.0)
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("Redis pub/sub listener failed; retrying")
                self._stopping.wait(1.0)
                continue
            if not item or item.get("type") != "pmessage":
                continue
            channel = item["channel"].decode()[len(REDIS_PREFIX) :]
            try:
                message = orjson.loads(item["data"])
            except orjson.JSONDecodeError:
                continue
            self._deliver(channel, message)


_fanouts: dict[int, LiveFanout] = {}
_fanouts_lock = threading.Lock()


def fanout_of(hub: Hub) -> LiveFanout:
    """The hub's fan-out, created on first use (Redis when ``FHIRHUB_BROKER`` is redis://)."""
    with _fanouts_lock:
        fanout = _fanouts.get(id(hub))
        if fanout is None:
            broker = hub.settings.broker
            url = broker if broker.startswith(("redis://", "rediss://")) else ""
            fanout = _fanouts[id(hub)] = LiveFanout(url)
        return fanout


def close_fanout(hub: Hub) -> None:
    with _fanouts_lock:
        fanout = _fanouts.pop(id(hub), None)
    if fanout is not None:
        fanout.close()


def publish_live(hub: Hub, channel: str, message: dict[str, Any]) -> None:
    """Publish a JSON object to every live listener of ``channel`` (see the module docstring)."""
    fanout_of(hub).publish(channel, message)


class LiveQueue:
    """An asyncio queue fed by one channel: what a websocket or SSE endpoint awaits."""

    def __init__(self, hub: Hub, *channels: str, maxsize: int = 10_000) -> None:
        self._hub = hub
        self._channels = channels
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize)
        self._loop = asyncio.get_running_loop()
        self._context: contextlib.ExitStack | None = None
        self.dropped = 0

    def _put(self, message: dict[str, Any]) -> None:
        def put() -> None:
            try:
                self._queue.put_nowait(message)
            except asyncio.QueueFull:  # a stalled client: it re-reads the durable source
                self.dropped += 1

        self._loop.call_soon_threadsafe(put)

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message, or None after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    def __enter__(self) -> LiveQueue:
        self._context = contextlib.ExitStack()
        fanout = fanout_of(self._hub)
        for channel in self._channels:
            self._context.enter_context(fanout.subscribed(channel, self._put))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._context is not None:
            self._context.close()


def live_queue(hub: Hub, *channels: str) -> LiveQueue:
    """An asyncio queue of the messages on ``channels`` (use as ``with live_queue(...) as q``,
    inside the event loop: a websocket or streaming endpoint)."""
    return LiveQueue(hub, *channels)
