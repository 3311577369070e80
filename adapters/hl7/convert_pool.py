"""Converting MLLP messages in worker processes, ahead of the writer.

Why: the listener's one writer thread is bound by the interpreter lock (py-spy over the MLLP
benchmark: the hub process at one full core, the machine's other core mostly idle). Parsing
and converting a message needs no database and was ~17% of the writer's time per ADT^A01,
so a worker process does it while the writer commits earlier messages.

The worker's Bundle is only a head start, never a second way of processing: the writer still
parses the message, checks duplicates, and converts it itself whenever the worker's result
does not apply (the worker failed on the message, so the writer produces the precise error;
the sender reused a control id with different content, so the Binary/Provenance key differs;
the result has not arrived yet; the pool is still starting, or a worker died). A message's
outcome is therefore the same with or without the pool.

Plumbing: one pipe per worker, written by the thread that submits (the listener's event loop)
and read by that same loop (``add_reader``), so the pool adds no thread of its own to the hub
process. (A ``ProcessPoolExecutor`` was measured first: its feeder and manager threads, each
taking the interpreter lock per message, cost the hub process as much CPU as the conversions
saved.) Without an event loop (tests, scripts) a reader thread takes the loop's place.

The worker also validates the resources it made (the structural walk of
:func:`fhirhub.sdk.validation_issues`, ~6% of the writer's time per message) and says so with the
Bundle; the writer then skips that walk for it (``process_transaction_in(..., validated=True)``).
What the writer changes afterwards (server ids, references to them) keeps a resource valid.
A Bundle with any invalid resource comes back unvalidated, so the writer validates it and
answers with the precise error.

The listener uses the workers only while more than one connection is open: a lone sender's
message reaches an idle writer at once, and converting it there is as quick as waiting for a
worker (measured: the worker's copy only competed for the second core).

Configuration: ``FHIRHUB_HL7_CONVERT_PROCESSES`` or ``[plugin.hl7] convert_processes``; the
default is one worker on a machine with more than one core, none on a single core (where a
worker would only compete with the writer). ``0`` turns it off.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import selectors
import struct
import threading
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, NamedTuple

import orjson

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from fhirhub.sdk import Hub

log = logging.getLogger("fhirhub.hl7.mllp")

#: Messages larger than this are converted by the writer (a pipe write must not stall the
#: event loop that sends it).
MAX_PREPARED_BYTES = 64 * 1024

_JOB = struct.Struct("!Q")  # job number, prefixed to every request and reply
_READY = 0  # the job number of a worker's "imports done" reply
_VALIDATED = b"V"  # first byte of a reply: every resource of the Bundle is valid
_UNCHECKED = b"-"  # first byte of a reply: some resource is not (the writer validates)


class Converted(NamedTuple):
    """A worker's Bundle for one message."""

    bundle: bytes  # the transaction Bundle, JSON
    validated: bool  # every resource in it passed the structural validation
    warnings: bytes = b""  # the conversion's warnings (ErrorLocation fields), JSON; "" if none


def prepare(raw: bytes) -> bytes | None:
    """The worker's reply for one message: a flag byte (``V``: all resources valid, ``-``:
    not), the transaction Bundle (for the message's default key) as JSON and, after a line
    feed (which JSON text never holds unescaped), its warnings; None when the message cannot
    be converted (the writer then produces the error itself)."""
    from dataclasses import astuple

    from fhirhub.adapters.hl7.convert import convert_message, message_key
    from fhirhub.adapters.hl7.parsing import parse
    from fhirhub.sdk import validation_issues

    try:
        message = parse(raw)
        converted = convert_message(message, key=message_key(message))
        bundle = converted.bundle
        valid = all(
            not validation_issues(entry["resource"])
            for entry in bundle["entry"]
            if "resource" in entry
        )
        reply = (_VALIDATED if valid else _UNCHECKED) + orjson.dumps(bundle)
        if converted.warnings:
            reply += b"\n" + orjson.dumps([astuple(w) for w in converted.warnings])
        return reply
    except Exception:
        return None


def _conversion(reply: bytes) -> Converted | None:
    if len(reply) < 2:
        return None
    bundle, _, warnings = reply[1:].partition(b"\n")
    return Converted(bundle, reply[:1] == _VALIDATED, warnings)


def _worker(conn: Connection) -> None:
    """A worker process: import, say ready, then answer each request until the pipe closes."""
    import fhirhub.adapters.hl7.convert  # noqa: F401
    from fhirhub.sdk import prepare_validation

    prepare_validation()  # compiled once, before the worker says it is ready

    conn.send_bytes(_JOB.pack(_READY))
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        head, raw = request[: _JOB.size], request[_JOB.size :]
        conn.send_bytes(head + (prepare(raw) or b""))


def configured_processes(hub: Hub | None) -> int:
    """Worker processes to use (see the module docstring): ``[plugin.hl7] convert_processes``
    / ``FHIRHUB_HL7_CONVERT_PROCESSES``, by default one where there is a second core."""
    from fhirhub.adapters.hl7.settings import hl7_settings
    from fhirhub.sdk import Settings

    return hl7_settings(hub if hub is not None else Settings()).workers


class Prepared:
    """A worker's conversion of one message, taken by the writer when it reaches the message.

    The writer never waits for it: a result that has not arrived by then is dropped when it
    does, and the writer converts the message itself. With one message in flight per
    connection, all connections answer a group's ACKs at once, so waiting would leave the
    writer idle while a worker converts the whole group; this way the writer converts the
    first message of a group itself and finds the others' Bundles ready."""

    __slots__ = ("_pool", "_done", "_result", "_wanted")

    def __init__(self, pool: ConvertPool) -> None:
        self._pool = pool
        self._done = threading.Event()
        self._result: Converted | None = None
        self._wanted = True

    def _arrived(self, result: Converted | None) -> None:
        self._result = result if self._wanted else None
        self._done.set()

    def finished(self, timeout: float | None = 0) -> bool:
        """Whether the worker's answer arrived, waiting up to ``timeout`` seconds."""
        return self._done.wait(timeout)

    def cancel(self) -> None:
        """Not needed after all (the writer converts the message itself)."""
        self._wanted = False
        self._result = None

    def take(self) -> Converted | None:
        """The worker's Bundle if it is here now; otherwise None (and it is not wanted)."""
        if not self._done.is_set():
            self.cancel()
            return None
        result = self._result
        if result is not None:
            self._pool.prepared += 1
        return result


class ConvertPool:
    """``start()`` spawns the workers (without waiting for them); ``submit(raw)`` starts a
    conversion, or returns None when the pool has none to offer (starting, broken, or the
    message is too large)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._processes: list[BaseProcess] = []
        self._pipes: list[Connection] = []
        self._ready_pipes: set[int] = set()
        self._next = itertools.cycle(range(processes))
        self._jobs = itertools.count(1)
        self._pending: dict[int, Prepared] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False
        self._broken = False
        #: Messages whose worker-made Bundle the writer used (for tests and tuning).
        self.prepared = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> ConvertPool:
        """Spawn the workers; their replies are read on ``loop`` (from then on, ``submit``
        must be called on that loop's thread), or on a reader thread without one."""
        # spawn, not fork: the hub process has threads (the writer, the dispatcher, uvicorn).
        context = multiprocessing.get_context("spawn")
        for _ in range(self.processes):
            ours, theirs = context.Pipe(duplex=True)
            process = context.Process(
                target=_worker, args=(theirs,), name="fhirhub-hl7-convert", daemon=True
            )
            process.start()
            theirs.close()
            self._processes.append(process)
            self._pipes.append(ours)
        self._loop = loop
        if loop is not None:
            for index, pipe in enumerate(self._pipes):
                loop.call_soon_threadsafe(loop.add_reader, pipe.fileno(), self._receive, index)
        else:
            self._reader = threading.Thread(
                target=self._read_forever, name="fhirhub-hl7-convert-reader", daemon=True
            )
            self._reader.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._loop is not None and not self._loop.is_closed():
            for pipe in self._pipes:
                try:
                    self._loop.call_soon_threadsafe(self._loop.remove_reader, pipe.fileno())
                except RuntimeError:  # the loop has stopped: its readers went with it
                    pass
        for pipe in self._pipes:
            pipe.close()  # the workers see end of file and exit
        for process in self._processes:
            process.join(2)
            if process.is_alive():
                process.kill()
        if self._reader is not None:
            self._reader.join(2)
        self._pipes, self._processes = [], []
        for prepared in self._pending.values():
            prepared._arrived(None)
        self._pending.clear()

    @property
    def ready(self) -> bool:
        return (
            not self._broken
            and not self._stopping
            and len(self._ready_pipes) == len(self._pipes) > 0
        )

    # -- jobs -----------------------------------------------------------------------------

    def submit(self, raw: bytes) -> Prepared | None:
        if not self.ready or len(raw) > MAX_PREPARED_BYTES:
            return None
        job = next(self._jobs)
        prepared = Prepared(self)
        self._pending[job] = prepared
        index = next(self._next)
        try:
            self._pipes[index].send_bytes(_JOB.pack(job) + raw)
        except (OSError, ValueError) as error:
            self._pending.pop(job, None)
            self._mark_broken(error)
            return None
        return prepared

    def _receive(self, index: int) -> None:
        pipe = self._pipes[index] if index < len(self._pipes) else None
        if pipe is None:
            return
        try:
            reply = pipe.recv_bytes()
        except (EOFError, OSError) as error:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(pipe.fileno())
            if not self._stopping:
                self._mark_broken(error)
            return
        (job,) = _JOB.unpack_from(reply)
        if job == _READY:
            self._ready_pipes.add(index)
            return
        prepared = self._pending.pop(job, None)
        if prepared is not None:
            prepared._arrived(_conversion(reply[_JOB.size :]))

    def _read_forever(self) -> None:
        with selectors.DefaultSelector() as selector:
            for index, pipe in enumerate(self._pipes):
                selector.register(pipe.fileno(), selectors.EVENT_READ, index)
            while not self._stopping and not self._broken:
                try:
                    ready = selector.select(0.2)
                except (OSError, ValueError):  # a pipe closed under us: stopping
                    return
                for key, _ in ready:
                    self._receive(key.data)

    def _mark_broken(self, error: BaseException | None) -> None:
        if not self._broken:
            log.warning("HL7 conversion worker failed (%s); converting in-process", error)
        self._broken = True
        for prepared in list(self._pending.values()):
            prepared._arrived(None)
        self._pending.clear()
