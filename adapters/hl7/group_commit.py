"""Group commit for the MLLP listener: one writer thread, one transaction per group.

Every connection hands its message to :meth:`GroupCommitter.submit` and waits for the outcome
before it reads the next frame (MLLP senders keep one message in flight), so a connection's
messages stay in order. The writer takes whatever has queued up, in arrival order, up to
``max_group`` messages, and processes them with
:func:`fhirhub.adapters.hl7.processing.handle_many`: one ``BEGIN IMMEDIATE`` and one commit for
the group, each message in its own savepoint. Outcomes (and so the ACKs) are released only after
that commit, so an AA still means "committed" and a crash mid-group loses nothing that was
acknowledged. There is no waiting for a group to fill: while one group commits, the next one
queues, so groups grow with the load and a lone message is committed at once.

Lingering: when ACKs of a group are released, its senders answer with their next messages a
fraction of a millisecond later. Taking only what has arrived by then splits the senders into
two cohorts that alternate (half-size groups, twice the commits). So when the listener reports
more open connections (``senders()``) than the writer holds messages, it waits up to
``linger`` seconds for the others; a sender that has gone quiet costs each group at most that.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from fhirhub.adapters.hl7.processing import MAX_GROUP, Outcome, handle_many
from fhirhub.adapters.hl7.senders import OPERATOR, Source

if TYPE_CHECKING:
    from fhirhub.adapters.hl7.convert_pool import Prepared
    from fhirhub.sdk import Hub

log = logging.getLogger("fhirhub.hl7.mllp")

#: Longest wait for the messages of other open connections before a group is committed.
LINGER_SECONDS = 0.002

#: (raw message, its conversion by a worker process or None, where it came from, the
#: outcome's future)
_Job = tuple[bytes, "Prepared | None", Source, "Future[Outcome]"]


class GroupCommitter:
    """``start()`` runs the writer thread; ``submit(raw)`` returns a future of the Outcome."""

    def __init__(
        self,
        hub: Hub,
        *,
        max_group: int = MAX_GROUP,
        senders: Callable[[], int] | None = None,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self.hub = hub
        self.max_group = max_group
        self.senders = senders
        self.linger = linger
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        #: Groups and messages committed so far, and the largest group (for tests and tuning).
        self.groups = 0
        self.messages = 0
        self.largest_group = 0

    def start(self) -> GroupCommitter:
        self._thread = threading.Thread(target=self._run, name="fhirhub-hl7-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what was submitted, then end the writer thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def submit(
        self, raw: bytes, prepared: Prepared | None = None, source: Source = OPERATOR
    ) -> Future[Outcome]:
        """Queue ``raw`` (with its conversion by a worker process, if one was started)."""
        future: Future[Outcome] = Future()
        self._queue.put((raw, prepared, source, future))
        return future

    def _run(self) -> None:
        running = True
        while running:
            first = self._queue.get()
            if first is None:
                break
            jobs = [first]
            wanted = min(self.max_group, self.senders()) if self.senders is not None else 1
            deadline = time.monotonic() + self.linger
            while len(jobs) < self.max_group:
                try:
                    if len(jobs) < wanted:
                        left = deadline - time.monotonic()
                        job = (
                            self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                        )
                    else:
                        job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    running = False
                    break
                jobs.append(job)
            self._commit(jobs)

    def _commit(self, jobs: list[_Job]) -> None:
        try:
            outcomes = handle_many(
                self.hub,
                [raw for raw, _, _, _ in jobs],
                prepared=[p for _, p, _, _ in jobs],
                sources=[source for _, _, source, _ in jobs],
            )
        except BaseException as error:  # handle_many answers failures itself; this is a bug
            log.exception("HL7 group of %d messages failed", len(jobs))
            for _, _, _, future in jobs:
                future.set_exception(error)
            return
        self.groups += 1
        self.messages += len(jobs)
        self.largest_group = max(self.largest_group, len(jobs))
        for (_, _, _, future), outcome in zip(jobs, outcomes, strict=True):
            future.set_result(outcome)
