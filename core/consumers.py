"""Consumers of committed versions and scheduled jobs, as plugins declare them.

A :class:`Consumer` is a named reader of the version log: the dispatcher gives it its own
durable cursor (the ``dispatch_cursor`` table) and its own worker thread, so it sees every
committed version in log order, at least once, and a slow or failing consumer delays nobody
else. A plugin's ``resource_committed`` hook is a consumer named after the plugin; plugins that
keep a projection (an index, a graph, a vector store) declare their own with
``register_consumers`` to start from the beginning of the log and take versions in batches.

A :class:`Schedule` is a function the hub runs every so many seconds (``register_schedules``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from fhirhub.fhir_store.versions import StoredVersion

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

#: Seconds a delivery may run before the consumer is reported stalled (``/healthz``).
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Consumer:
    """A named reader of the version log (see the module docstring).

    ``handle`` receives a batch of versions in ``seq`` order; it must be idempotent (a crash
    between handling and saving the cursor delivers the batch again). Raising retries the
    same batch with exponential back-off; the cursor never skips a version.

    ``start``: where a consumer seen for the first time begins: ``"head"`` (only what is
    committed from now on) or ``"beginning"`` (the whole log: a projection's backfill).
    ``reset``: called by ``fhirhub replay`` before the consumer is delivered the log again
    from the beginning (drop the projection it keeps); None for consumers that keep nothing.
    ``types``: only versions of these resource types are handed over (others still advance
    the cursor); None for all.
    ``durable``: for a consumer that finishes its work after ``handle`` returns (stores it on
    a thread of its own), the highest ``seq`` whose work is stored; the cursor is saved no
    further, so a crash re-delivers the rest. None: the work is done when ``handle`` returns.
    ``linger_s``: under a steady feed, the least time between two deliveries, so versions
    gather into larger batches. Every batch costs a read of the log and, for most consumers,
    a write transaction, which on SQLite makes the sources' writers wait: during a load that
    commits a Bundle every few milliseconds, a consumer woken by each commit handled batches
    of one Bundle. A version after a quiet spell (no delivery within ``linger_s``) is
    delivered at once, and a backlog (full batches) is read without pause. For projections
    that may lag a little (a search index); 0 (the default) for consumers whose latency
    matters (notifications). A function is asked before each delivery: a consumer with
    nothing to do for now (no active subscription) can linger until it has.
    ``caught_up``: called on the consumer's thread once it has reached the head of the log
    after handling versions (within the one-second poll of its last batch), for work that
    waits for "nothing more is coming", such as a set a full batch cut short, whose
    transaction may have ended at the batch's edge. Raising retries it at the next poll.
    ``worker_process``: the consumer may run in the hub's worker process rather than in the
    API process (``fhirhub serve`` starts one where the machine has a core to spare, see
    ``FHIRHUB_WORKER_PROCESS``). For CPU-heavy consumers: in the API process their work
    shares one interpreter lock with the request handlers, so a write load slows by all of
    it; in the worker it runs on another core. The consumer then shares no memory with the
    plugin's routes: what they need from it goes through the database or the live fan-out
    (``publish_live``, relayed to the API process).
    ``companion``: background work that must run in the same process as the consumer (a
    thread the consumer hands work to in memory). Called when a process starts serving the
    consumer, before its first delivery; returns the function that stops it, called after
    the consumer's last delivery there.
    """

    name: str
    handle: Callable[[Sequence[StoredVersion]], None]
    start: Literal["head", "beginning"] = "head"
    batch_size: int = 100
    types: frozenset[str] | None = None
    reset: Callable[[], None] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    durable: Callable[[], int] | None = None
    linger_s: float | Callable[[], float] = 0.0
    caught_up: Callable[[], None] | None = None
    worker_process: bool = False
    companion: Callable[[], Callable[[], None]] | None = None


@dataclass(frozen=True)
class Schedule:
    """A job run every ``every_s`` seconds while the hub serves, on its own thread, in one
    API process at a time; a run that raises is logged and retried at the next interval."""

    name: str
    every_s: float
    run: Callable[[Hub], None]
    timeout_s: float = DEFAULT_TIMEOUT_S


class PartialDelivery(Exception):
    """Raised by a consumer's ``handle`` that failed part-way through a batch: versions up to
    ``done`` (a ``seq``; 0 for none) were handled, so the retry starts after it instead of
    handing them over again (a consumer that sends messages sends none twice this way)."""

    def __init__(self, done: int, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.done = done


def each_version(
    handle_one: Callable[[StoredVersion], None],
) -> Callable[[Sequence[StoredVersion]], None]:
    """A consumer's ``handle`` that calls ``handle_one`` for each version, in order; one
    failing part-way raises :class:`PartialDelivery`, so the retry starts at that version."""

    def handle(versions: Sequence[StoredVersion]) -> None:
        done = 0
        for version in versions:
            try:
                handle_one(version)
            except Exception as exc:
                raise PartialDelivery(done, exc) from exc
            done = version.seq

    return handle
