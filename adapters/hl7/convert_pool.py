"""Converting MLLP messages in worker processes, ahead of the writer.

Why: the listener's one writer thread is bound by the interpreter lock (py-spy over the MLLP
benchmark: the hub process at one full core, the machine's other core mostly idle). Parsing
and converting a message needs no database and was ~17% of the writer's time per ADT^A01,
so a worker process does it while the writer commits earlier messages.

The worker's Bundle is only a head start, never a second way of processing: the writer still
parses the message, checks duplicates, and converts it itself whenever the worker's result
does not apply (the worker failed on the message, so the writer produces the precise error;
the sender reused a control id with different content, so the Binary/Provenance key differs;
the pool is still starting, or broke). A message's outcome is therefore the same with or
without the pool.

Configuration: ``FHIRHUB_HL7_CONVERT_PROCESSES`` or ``[plugin.hl7] convert_processes``; the
default is one worker on a machine with more than one core, none on a single core (where a
worker would only compete with the writer). ``0`` turns it off.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

log = logging.getLogger("fhirhub.hl7.mllp")


def prepare(raw: bytes) -> bytes | None:
    """In a worker: the message's transaction Bundle (for its default key) as JSON bytes, or
    None when it cannot be converted (the writer then produces the error itself)."""
    from fhirhub.adapters.hl7.convert import convert, message_key
    from fhirhub.adapters.hl7.parsing import parse

    try:
        message = parse(raw)
        return orjson.dumps(convert(message, key=message_key(message)))
    except Exception:
        return None


def _warm_up() -> bool:
    """Import the converters in the worker before the first message needs them."""
    import fhirhub.adapters.hl7.convert  # noqa: F401

    return True


def configured_processes(hub: Hub | None) -> int:
    """Worker processes to use (see the module docstring)."""
    value = os.environ.get("FHIRHUB_HL7_CONVERT_PROCESSES")
    if value is None and hub is not None:
        setting = hub.settings.plugin_config.get("hl7", {}).get("convert_processes")
        value = None if setting is None else str(setting)
    if value is not None:
        try:
            return max(0, int(value))
        except ValueError:
            log.warning("Ignoring FHIRHUB_HL7_CONVERT_PROCESSES=%r (not a number)", value)
    return 1 if (os.cpu_count() or 1) > 1 else 0


class Prepared:
    """A worker's conversion of one message, taken by the writer when it reaches the message.

    The writer never waits for it: a conversion not finished by then is cancelled (or its
    result ignored) and the writer converts the message itself. With one message in flight
    per connection, all connections answer a group's ACKs at once, so the worker would
    otherwise convert a whole group while the writer idles; this way the writer converts the
    first message of a group itself and finds the others' Bundles ready."""

    def __init__(self, pool: ConvertPool, future: Future[bytes | None]) -> None:
        self._pool = pool
        self._future = future

    def finished(self, timeout: float | None = 0) -> bool:
        """Whether the worker is done with it, waiting up to ``timeout`` seconds."""
        try:
            self._future.exception(timeout)
        except TimeoutError:
            return False
        except CancelledError:
            pass
        return True

    def cancel(self) -> None:
        """Not needed after all (the writer converts the message itself)."""
        self._future.cancel()

    def take(self) -> bytes | None:
        """The worker's Bundle if it is ready now; otherwise None (and the job is cancelled)."""
        future = self._future
        if not future.done():
            future.cancel()
            return None
        if future.cancelled() or future.exception() is not None:
            return None
        result = future.result()
        if isinstance(result, bytes):
            self._pool.prepared += 1
            return result
        return None


class ConvertPool:
    """``start()`` spawns the workers (without waiting for them); ``submit(raw)`` starts a
    conversion, or returns None when the pool has none to offer (starting, broken)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None
        self._ready = threading.Event()
        self._broken = False
        #: Messages whose worker-made Bundle the writer used (for tests and tuning).
        self.prepared = 0

    def start(self) -> ConvertPool:
        # spawn, not fork: the hub process has threads (the writer, the dispatcher, uvicorn).
        context = multiprocessing.get_context("spawn")
        self._executor = ProcessPoolExecutor(max_workers=self.processes, mp_context=context)
        warm: list[Future[bool]] = [self._executor.submit(_warm_up) for _ in range(self.processes)]

        def warmed(_: Future[bool]) -> None:
            if all(f.done() and not f.cancelled() and f.exception() is None for f in warm):
                self._ready.set()

        for future in warm:
            future.add_done_callback(warmed)
        return self

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._broken

    def submit(self, raw: bytes) -> Prepared | None:
        executor = self._executor
        if executor is None or not self.ready:
            return None
        try:
            future: Future[bytes | None] = executor.submit(prepare, raw)
        except Exception as error:  # a crashed worker breaks the pool: the writer converts
            self._mark_broken(error)
            return None
        future.add_done_callback(self._check)
        return Prepared(self, future)

    def _check(self, future: Future[bytes | None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._mark_broken(future.exception())

    def _mark_broken(self, error: BaseException | None) -> None:
        if not self._broken:
            log.warning("HL7 conversion workers failed (%s); converting in-process", error)
        self._broken = True

    def stop(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
