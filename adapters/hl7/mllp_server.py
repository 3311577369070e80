"""MLLP listener (HL7 v2 "Minimal Lower Layer Protocol", release 2: <VT> message <FS><CR>).

asyncio, one task per connection, messages on a connection processed strictly in order (the
next frame is read only once the previous one is answered). The database work runs on one
writer thread that commits the messages of all connections in groups
(:mod:`fhirhub.adapters.hl7.group_commit`), so the loop keeps accepting and reading other
connections and SQLite pays one lock and one commit per group rather than per message. TCP_NODELAY is set on every accepted socket and each response
(all ACK frames of one message) is written with one ``write`` call: with Nagle's algorithm and
delayed ACKs a request/response protocol stalls ~40-200 ms per message on loopback.

Bad input never stops the listener: bytes outside a frame are logged and skipped, a frame
without its end block is cut off after ``frame_timeout`` seconds (and dead-lettered as what it
is), a frame above ``max_frame_bytes`` is rejected with AR, a connection dropped mid-frame
dead-letters the partial bytes. Such transport dead letters are kept only for senders the hub
accepts (:mod:`fhirhub.adapters.hl7.senders`), within their hourly quota, and at most
``KEPT_PARTIAL_BYTES`` of each: an unauthenticated peer cannot fill the database.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from fhirhub.adapters.hl7.ack import (
    ErrorLocation,
    Header,
    acknowledgments,
    batch_acknowledgment,
)
from fhirhub.adapters.hl7.convert_pool import ConvertPool
from fhirhub.adapters.hl7.group_commit import GroupCommitter
from fhirhub.adapters.hl7.parsing import split_messages
from fhirhub.adapters.hl7.processing import MAX_GROUP
from fhirhub.adapters.hl7.senders import Refusal, Source, sender_directory, sender_of

if TYPE_CHECKING:
    from fhirhub.sdk import Hub

log = logging.getLogger("fhirhub.hl7.mllp")

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\r"
#: Frames bigger than this are refused (AR) without being read into memory further.
MAX_FRAME_BYTES = 8 * 1024 * 1024
#: Of an unfinished or oversized frame, this much is kept as its dead letter.
KEPT_PARTIAL_BYTES = 64 * 1024


def frame(payload: bytes) -> bytes:
    return START_BLOCK + payload + END_BLOCK


class MllpServer:
    """``start()`` runs the listener on its own thread and event loop; ``stop()`` ends it."""

    def __init__(
        self,
        hub: Hub | None,
        host: str = "0.0.0.0",
        port: int = 2575,
        *,
        handler: Callable[[bytes], list[bytes]] | None = None,
        dead_letter: Callable[[bytes, str], None] | None = None,
        frame_timeout: float = 30.0,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_group: int = MAX_GROUP,
        convert_processes: int = 0,
    ) -> None:
        self.hub = hub
        self.host = host
        self.port = port
        self.frame_timeout = frame_timeout
        self.max_frame_bytes = max_frame_bytes
        self._handler = handler
        #: With a hub and no custom handler, messages are committed in groups by one writer.
        self.committer = (
            GroupCommitter(hub, max_group=max_group, senders=lambda: self.connections)
            if handler is None and hub is not None
            else None
        )
        #: Worker processes converting messages ahead of the writer (``convert_processes``,
        #: see :mod:`fhirhub.adapters.hl7.convert_pool`); None when off.
        self.convert_pool = (
            ConvertPool(convert_processes)
            if self.committer is not None and convert_processes > 0
            else None
        )
        #: A custom dead-letter store (tests, embedders); by default the hub's, per sender.
        self._custom_dead_letter = dead_letter
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.connections = 0

    async def _process(self, raw: bytes, source: Source) -> list[bytes]:
        """The response frames for one received frame. A frame holding several messages
        (concatenated, or an FHS/BHS batch) is split at each MSH and every message processed
        on its own, in order, never merged; their ACKs go back in ONE frame, since an MLLP
        sender reads one response per frame (for a batch: wrapped in a batch envelope)."""
        frame_content = split_messages(raw)
        if len(frame_content.messages) == 1 and not frame_content.batch:
            return await self._process_one(raw, source)
        if self.committer is not None:  # submitted in order: the writer keeps that order
            answers = await asyncio.gather(
                *(self._process_one(m, source) for m in frame_content.messages)
            )
        else:
            answers = [await self._process_one(m, source) for m in frame_content.messages]
        acks = [ack for answer in answers for ack in answer]
        if frame_content.batch:
            return [batch_acknowledgment(frame_content.batch, acks)]
        return [b"".join(acks)] if acks else []

    async def _process_one(self, raw: bytes, source: Source) -> list[bytes]:
        if self.committer is not None:
            pool = self.convert_pool
            # A worker helps when messages queue (several connections); a lone sender's
            # message reaches the writer at once, which converts it before the worker's
            # Bundle would arrive, so the worker's copy would only be work thrown away.
            prepared = pool.submit(raw) if pool is not None and self.connections > 1 else None
            outcome = await asyncio.wrap_future(self.committer.submit(raw, prepared, source))
            return outcome.acks
        if self._handler is None:
            raise RuntimeError("an MllpServer without a hub needs a handler")
        return await asyncio.to_thread(self._handler, raw)

    def _dead_letter(self, raw: bytes, reason: str, peer: str | None = None) -> None:
        if len(raw) > KEPT_PARTIAL_BYTES:
            raw = raw[:KEPT_PARTIAL_BYTES]
            reason += f" (first {KEPT_PARTIAL_BYTES} bytes kept)"
        try:
            if self._custom_dead_letter is not None:
                self._custom_dead_letter(raw, reason)
            else:
                self._dead_letter_in_store(raw, reason, peer)
        except Exception:  # the listener must survive a failing store
            log.exception("MLLP: could not store a dead letter (%s)", reason)

    def _dead_letter_in_store(self, raw: bytes, reason: str, peer: str | None = None) -> None:
        """Keep a transport failure's bytes for a sender the hub accepts, within its quota."""
        from fhirhub.adapters.hl7.processing import DeadLetter

        if self.hub is None:
            raise RuntimeError("an MllpServer without a hub needs a dead_letter callback")
        header = Header.salvage(raw)
        sender = sender_of(header.sending_app, header.sending_facility)
        feed = sender_directory(self.hub).resolve(sender, Source(peer=peer))
        if isinstance(feed, Refusal):
            log.warning("MLLP %s: %s not kept: %s", peer, reason, feed.text)
            return
        # The same record as a processing failure's: the feed's quota, written for its tenant.
        DeadLetter(raw, reason, "AR", "MLLP transport error", feed).store(self.hub)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> MllpServer:
        if self.committer is not None:
            self.committer.start()
        self._thread = threading.Thread(target=self._run, name="fhirhub-mllp", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            if self.committer is not None:
                self.committer.stop()
            if self.convert_pool is not None:
                self.convert_pool.stop()
            raise RuntimeError(f"MLLP listener failed to start: {self._error}")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, self.port, limit=2**16)
            )
            sock = self._server.sockets[0]
            self.port = sock.getsockname()[1]
            log.info("MLLP listener on %s:%s", self.host, self.port)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        if self.convert_pool is not None:  # its replies are read on this loop
            self.convert_pool.start(loop)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        if self.committer is not None:
            self.committer.stop()
        if self.convert_pool is not None:
            self.convert_pool.stop()

    # -- one connection -------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = Source(peer=peer[0] if isinstance(peer, tuple) and peer else None)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        buffer = bytearray()
        try:
            while True:
                payload = await self._next_frame(reader, buffer, peer, source)
                if payload is None:
                    break
                if isinstance(payload, int):  # oversized: answer and drop its bytes
                    header = Header.salvage(bytes(buffer[:4096]))
                    where = ErrorLocation("207", f"Frame exceeds {self.max_frame_bytes} bytes")
                    await asyncio.to_thread(
                        self._dead_letter,
                        bytes(buffer[:KEPT_PARTIAL_BYTES]),
                        f"Frame over {self.max_frame_bytes} bytes (truncated copy)",
                        source.peer,
                    )
                    buffer.clear()
                    writer.write(
                        b"".join(frame(a) for a in acknowledgments(header, "AR", where.text, where))
                    )
                    await writer.drain()
                    await self._skip_to_end(reader, buffer)
                    continue
                try:
                    acks = await self._process(payload, source)
                except Exception as exc:  # keep the message and tell the sender
                    log.exception("MLLP %s: processing failed", peer)
                    await asyncio.to_thread(
                        self._dead_letter, payload, f"Processing failed: {exc}", source.peer
                    )
                    where = ErrorLocation("207", f"Processing failed: {type(exc).__name__}")
                    acks = acknowledgments(Header.salvage(payload), "AE", where.text, where)
                if acks:
                    writer.write(b"".join(frame(a) for a in acks))
                    await writer.drain()
        except _FrameTimeout as timeout:
            writer.write(b"".join(frame(a) for a in timeout.acks))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("MLLP connection %s closed: %s", peer, exc)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("MLLP connection %s failed", peer)
        finally:
            self.connections -= 1
            writer.close()

    async def _skip_to_end(self, reader: asyncio.StreamReader, buffer: bytearray) -> None:
        """Discard the rest of an oversized frame; keep what follows its end block."""
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), self.frame_timeout)
            except TimeoutError:
                return
            end = chunk.find(b"\x1c")
            if not chunk:
                return
            if end >= 0:
                rest = chunk[end + 1 :]
                buffer.extend(rest[1:] if rest[:1] == b"\r" else rest)
                return

    async def _next_frame(
        self, reader: asyncio.StreamReader, buffer: bytearray, peer: object, source: Source
    ) -> bytes | int | None:
        """The next frame's payload; ``None`` at end of stream; ``-1`` when oversized."""
        while True:
            start = buffer.find(START_BLOCK)
            if start > 0 or (start < 0 and buffer):
                junk = bytes(buffer[: start if start >= 0 else len(buffer)])
                if junk.strip(b"\r\n\x00 "):
                    log.warning(
                        "MLLP %s: %d bytes outside a frame ignored: %r", peer, len(junk), junk[:40]
                    )
                del buffer[: start if start >= 0 else len(buffer)]
                start = buffer.find(START_BLOCK)
            if start == 0:
                end = buffer.find(b"\x1c", 1)
                if end >= 0:
                    payload = bytes(buffer[1:end])
                    cut = end + 2 if buffer[end + 1 : end + 2] == b"\r" else end + 1
                    del buffer[:cut]
                    return payload
                if len(buffer) > self.max_frame_bytes:
                    return -1
            try:
                chunk = await asyncio.wait_for(
                    reader.read(65536), self.frame_timeout if buffer else None
                )
            except TimeoutError:
                partial = bytes(buffer[1:])
                log.warning(
                    "MLLP %s: frame without end block after %.0f s (%d bytes)",
                    peer,
                    self.frame_timeout,
                    len(partial),
                )
                if partial:
                    await asyncio.to_thread(
                        self._dead_letter,
                        partial,
                        "MLLP frame had no end block (timeout)",
                        source.peer,
                    )
                    header = Header.salvage(partial)
                    where = ErrorLocation("100", "MLLP frame has no end block (<FS><CR>)")
                    return_acks = acknowledgments(header, "AR", where.text, where)
                    buffer.clear()
                    raise _FrameTimeout(return_acks) from None
                buffer.clear()
                continue
            if not chunk:
                partial = bytes(buffer[1:]) if buffer[:1] == START_BLOCK else bytes(buffer)
                if partial.strip():
                    log.warning(
                        "MLLP %s: connection dropped mid-frame (%d bytes kept)", peer, len(partial)
                    )
                    await asyncio.to_thread(
                        self._dead_letter, partial, "Connection dropped mid-frame", source.peer
                    )
                return None
            buffer.extend(chunk)


class _FrameTimeout(ConnectionError):
    def __init__(self, acks: list[bytes]) -> None:
        super().__init__("frame timeout")
        self.acks = acks
