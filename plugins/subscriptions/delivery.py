"""rest-hook delivery: each subscription's queue POSTed to its endpoint strictly in order.

One thread picks the subscriptions with something due (a handshake, events not yet
delivered, a heartbeat) and hands each to a small pool, one subscription per worker at a
time. A worker claims the subscription with a lease in the database (a conditional UPDATE),
so two API processes never send the same queue at once. A notification that fails (no
answer, a non-2xx status) is retried after ``retry_initial_s``, then twice as long each time
(capped at ``retry_max_interval_s``); after ``give_up_after_s`` of failing, the subscription's
status becomes ``error`` and delivery stops, its queue kept: the owner sets it ``active``
again and delivery resumes at the first undelivered event. Delivery is at least once: a
notification whose answer was lost is sent again with the same event numbers.

The consumer hands each batch's events over as soon as they are numbered (``_offer``), before
they are stored, and a worker sends them from memory; the stored queue is read when memory
does not hold the next event (after a restart, a failure, a long backlog). A delivered
count is written only up to what is stored (``SubscriptionService.stored``): after a crash,
events sent but not yet stored are numbered again from the log and sent again.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import orjson
from sqlalchemy import bindparam, select, update

from fhirhub.plugins.subscriptions import model
from fhirhub.plugins.subscriptions.notifications import Event
from fhirhub.plugins.subscriptions.poster import Poster, PostFailed
from fhirhub.plugins.subscriptions.service import State, SubscriptionService, parsed_spec

log = logging.getLogger("fhirhub.subscriptions.delivery")

#: A claim on a subscription's queue lapses after this long unless renewed (each send
#: renews it), so a process killed mid-send holds nobody up for longer.
LEASE_S = 30.0
POLL_S = 0.5
FLUSH_S = 0.2
#: A worker sending a backlog reads its subscription's state again after this many seconds.
STATE_FRESH_S = 1.0
FHIR_JSON = "application/fhir+json"
#: Events held in memory per subscription for sending; beyond, the stored queue is read.
MAX_QUEUED = 5000


class Deliverer:
    def __init__(self, service: SubscriptionService) -> None:
        self.service = service
        self.settings = service.settings
        self._stop = threading.Event()
        self._busy: set[str] = set()
        #: Busy subscriptions the picking thread found due: looked at again when served.
        self._recheck: set[str] = set()
        self._busy_lock = threading.Lock()
        self._leases: dict[str, float] = {}  # subscription id -> when our claim lapses
        # Successful sends not yet written (subscription id -> (delivered, sent at)): written
        # together by the picking thread, so a busy hub does one write per round, not one
        # per notification. A crash before the write re-sends them: at least once.
        self._sent: dict[str, tuple[int, float]] = {}
        self._sent_lock = threading.Lock()
        # Events handed over by the consumer, not yet known to be delivered, per subscription
        # (numbers consecutive): sent without reading the stored queue back.
        self._queued: dict[str, list[Event]] = {}
        self._queued_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, self.settings.delivery_workers),
            thread_name_prefix="fhirhub-subscriptions-send",
        )
        # One HTTP client per pool worker (kept-alive connections of its own, or a child
        # process of its own making its plain-http POSTs): a shared client's connection pool
        # is one lock that the workers queue on when notifications are many and small.
        self._local = threading.local()
        self._clients: list[Poster] = []
        self._clients_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name="fhirhub-subscriptions-delivery", daemon=True
        )
        # Writes what was sent on its own thread: waiting for SQLite's write lock behind a
        # large ingest must not hold up picking the next notifications.
        self._flusher = threading.Thread(
            target=self._flush_loop, name="fhirhub-subscriptions-flush", daemon=True
        )

    def start(self) -> Deliverer:
        if self.service.db.is_sqlite:
            # One process serves a SQLite hub: a claim still held was left by a killed one.
            with self.service.db.begin() as conn:
                conn.execute(update(model.state).values(lease_until=0.0))
        self.service.on_numbered.append(self._offer)
        self._thread.start()
        self._flusher.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._offer in self.service.on_numbered:
            self.service.on_numbered.remove(self._offer)
        self.service.wake_delivery.set()
        self._thread.join(timeout=10)
        self._flusher.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._flush()
        with self._clients_lock:
            for client in self._clients:
                client.close()
            self._clients.clear()

    # -- events handed over by the consumer --------------------------------------------------
    def _offer(self, state: State, events: list[Event]) -> None:
        """Keep a batch's just-numbered events of one subscription for sending (consumer thread)."""
        with self._queued_lock:
            queued = self._queued.setdefault(state.id, [])
            if queued:
                fresh = [e for e in events if e.number > queued[-1].number]  # a batch retried
                if fresh and fresh[0].number != queued[-1].number + 1:
                    queued.clear()  # not consecutive: the stored queue fills the gap
            else:
                fresh = events
            queued += fresh
            if len(queued) > MAX_QUEUED:
                del queued[: len(queued) - MAX_QUEUED]
        # The consumer wakes the picking thread once the whole batch is handed over.

    def _from_memory(self, subscription_id: str, since: int, limit: int) -> list[Event] | None:
        """The events after ``since`` held in memory, if memory holds the next one."""
        with self._queued_lock:
            queued = self._queued.get(subscription_id)
            if not queued:
                return None
            if queued[0].number <= since:
                keep = [e for e in queued if e.number > since]
                queued[:] = keep
            if not queued or queued[0].number != since + 1:
                return None
            return queued[:limit]

    def _queued_last(self, subscription_id: str) -> int:
        with self._queued_lock:
            queued = self._queued.get(subscription_id)
            return queued[-1].number if queued else 0

    def _storable(self, subscription_id: str, delivered: int) -> int:
        """``delivered``, capped at the events stored (see the module docstring)."""
        stored = self.service.stored.get(subscription_id)
        return delivered if stored is None else min(delivered, stored)

    # -- the picking thread ----------------------------------------------------------------
    def _run(self) -> None:
        wake = self.service.wake_delivery
        while not self._stop.is_set():
            wake.wait(POLL_S)
            wake.clear()
            try:
                # A subscription being served while its state is read is left for the next
                # round (its worker wakes this thread when done): what the worker writes
                # (failures, a handshake sent) may come after the read.
                with self._busy_lock:
                    busy = set(self._busy)
                for state in self._due(time.time()):
                    with self._busy_lock:
                        if state.id in self._busy:
                            self._recheck.add(state.id)  # its worker wakes this thread
                            continue
                        if state.id in busy:  # done since the read: read again
                            wake.set()
                            continue
                        self._busy.add(state.id)
                    self._pool.submit(self._serve, state.id, state)
            except Exception:  # the database restarting, say: try again shortly
                log.exception("Picking subscriptions to deliver failed")
                self._stop.wait(POLL_S)

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_S):
            try:
                self._flush()
            except Exception:  # the database restarting: the sends stay recorded, retried
                log.exception("Recording delivered notifications failed")

    def _flush(self, subscription_id: str | None = None) -> None:
        """Write the recorded successful sends (of one subscription, or all)."""
        with self._sent_lock:
            if subscription_id is None:
                sent = dict(self._sent)
            elif subscription_id in self._sent:
                sent = {subscription_id: self._sent[subscription_id]}
            else:
                return
        if not sent:
            return
        s = model.state.c
        written = {sid: self._storable(sid, delivered) for sid, (delivered, _) in sent.items()}
        with self.service.db.begin() as conn:  # one statement, however many subscriptions
            conn.execute(
                update(model.state)
                .where(s.id == bindparam("sid"), s.delivered < bindparam("below"))
                .values(delivered=bindparam("number"), last_sent_at=bindparam("at")),
                [
                    {"sid": sid, "below": written[sid], "number": written[sid], "at": at}
                    for sid, (_, at) in sent.items()
                ],
            )
        # Forgotten only once written in full, and only if no newer send was recorded
        # meanwhile: a reader always sees max(stored, recorded) >= what was really delivered.
        with self._sent_lock:
            for sid, value in sent.items():
                if self._sent.get(sid) == value and written[sid] == value[0]:
                    del self._sent[sid]

    def _read_state(self, subscription_id: str) -> State | None:
        """The subscription's state, its delivered count including what was sent but maybe
        not yet written (taken before the read: see ``_due``)."""
        with self._sent_lock:
            sent = self._sent.get(subscription_id)
        state = self.service.state(subscription_id)
        if state is not None and sent is not None:
            state.delivered = max(state.delivered, sent[0])
        return state

    def _delivered(self, subscription_id: str, stored: int) -> int:
        with self._sent_lock:
            recorded = self._sent.get(subscription_id)
        return max(stored, recorded[0]) if recorded else stored

    def _due(self, now: float) -> list[State]:
        """Active rest-hook subscriptions with a handshake, events or a heartbeat due, as read
        (a worker starts from this state instead of reading it again)."""
        s = model.state.c
        # What was sent but maybe not yet written, taken before the rows are read: the flush
        # writes a send before forgetting it, so each row's delivered count or this copy
        # holds every send (read the other way round, a flush in between would lose one).
        with self._sent_lock:
            recorded = dict(self._sent)
        with self.service.db.read() as conn:
            rows = conn.execute(
                select(model.state).where(
                    s.status == "active", s.next_attempt_at <= now, s.lease_until <= now
                )
            ).all()
        due = []
        for row in rows:
            spec = parsed_spec(row.spec)  # cached: this runs at every wake
            if spec.channel != "rest-hook":
                continue
            heartbeat = spec.heartbeat_s
            numbered = max(row.event_count, self._queued_last(row.id))
            sent = recorded.get(row.id)
            delivered = max(row.delivered, sent[0]) if sent else row.delivered
            if (
                delivered < numbered
                or row.handshake_pending
                or (heartbeat and now - row.last_sent_at >= heartbeat)
            ):
                state = State.from_row(row)
                state.delivered = delivered
                due.append(state)
        return due

    # -- one subscription, on a pool worker ------------------------------------------------
    def _serve(self, subscription_id: str, picked: State | None = None) -> None:
        try:
            if self._claim(subscription_id):
                if not self.service.db.is_sqlite:
                    # Another process may have sent and recorded more before our claim.
                    picked = None
                try:
                    self._drain(subscription_id, picked)
                finally:
                    self._release(subscription_id)
        except Exception:
            log.exception("Delivering subscription %s failed", subscription_id)
        finally:
            # The picking thread is woken only if it found this subscription due while it was
            # being served: a worker that sent all there was has nothing left to pick (events
            # numbered later wake the picking thread themselves).
            with self._busy_lock:
                self._busy.discard(subscription_id)
                again = subscription_id in self._recheck
                self._recheck.discard(subscription_id)
            if again:
                self.service.wake_delivery.set()

    def _claim(self, subscription_id: str) -> bool:
        if self.service.db.is_sqlite:
            return True  # one process serves a SQLite hub: the in-memory busy set suffices
        now = time.time()
        with self.service.db.begin() as conn:
            claimed = conn.execute(
                update(model.state)
                .where(model.state.c.id == subscription_id, model.state.c.lease_until <= now)
                .values(lease_until=now + LEASE_S)
            ).rowcount
        if claimed:
            self._leases[subscription_id] = now + LEASE_S
        return bool(claimed)

    def _release(self, subscription_id: str) -> None:
        if self._leases.pop(subscription_id, None) is None:
            return
        self._flush(subscription_id)  # before another process may take the queue over
        with self.service.db.begin() as conn:
            conn.execute(
                update(model.state)
                .where(model.state.c.id == subscription_id)
                .values(lease_until=0.0)
            )

    def _drain(self, subscription_id: str, picked: State | None = None) -> None:
        """Send what is due, in order, until the queue is empty or a send fails (starting
        from the state the picking thread read, when given). The state is read again only
        once it is :data:`STATE_FRESH_S` old: this worker writes what its sends change (kept
        in the state it holds, the delivered count recorded aside), and a change of status
        by the owner applies to the next notification sent after that."""
        state, read_at = picked, time.monotonic()
        while not self._stop.is_set():
            if state is None or time.monotonic() - read_at > STATE_FRESH_S:
                state, read_at = self._read_state(subscription_id), time.monotonic()
            if state is None or state.status != "active" or state.spec.channel != "rest-hook":
                return
            now = time.time()
            if state.next_attempt_at > now:
                return
            if state.handshake_pending:
                bundle = self.service.bundle(state, "handshake", [])
                if not self._attempt(state, bundle, None):
                    return
                continue
            limit = state.spec.max_count or self.settings.max_events_per_notification
            delivered = self._delivered(subscription_id, state.delivered)
            events = self._from_memory(subscription_id, delivered, limit)
            if events is None:
                events = self.service.events(subscription_id, since=delivered, limit=limit)
            if events:
                if events[-1].number > state.event_count:  # handed over, not yet stored
                    state = replace(state, event_count=events[-1].number)
                bundle = self.service.bundle(state, "event-notification", events, raw=True)
                if not self._attempt(state, bundle, events[-1].number) or len(events) < limit:
                    # Sent all there was: events queued since woke the picking thread, which
                    # serves this subscription again once this worker is done with it.
                    return
                continue
            heartbeat = state.spec.heartbeat_s
            if heartbeat and now - state.last_sent_at >= heartbeat:
                self._attempt(state, self.service.bundle(state, "heartbeat", []), None)
            return

    def _attempt(self, state: State, bundle: dict[str, object], last_number: int | None) -> bool:
        """POST one notification; record success (the delivered number) or the failure."""
        spec = state.spec
        assert spec.endpoint is not None
        headers = {"Content-Type": FHIR_JSON, **dict(spec.headers)}
        if last_number is not None:
            headers["X-Fhirhub-Event-Number"] = str(last_number)
        timeout = spec.timeout_s or self.settings.request_timeout_s
        if state.id in self._leases and self._leases[state.id] < time.time() + timeout + 5:
            until = time.time() + LEASE_S + timeout  # renew the claim for this send
            with self.service.db.begin() as conn:
                conn.execute(
                    update(model.state)
                    .where(model.state.c.id == state.id)
                    .values(lease_until=until)
                )
            self._leases[state.id] = until
        try:
            code = self._client().post(spec.endpoint, orjson.dumps(bundle), headers, timeout)
            ok = 200 <= code < 300
            problem = None if ok else f"{spec.endpoint} answered {code}"
        except PostFailed as exc:
            ok, problem = False, f"{spec.endpoint}: {exc}"
        now = time.time()
        s = model.state.c
        if ok:
            if last_number is not None and not (state.failures or state.last_error):
                with self._sent_lock:
                    self._sent[state.id] = (last_number, now)
                state.last_sent_at = now
                return True
            values: dict[str, object] = {
                "failures": 0,
                "first_failure_at": None,
                "next_attempt_at": 0.0,
                "last_sent_at": now,
                "last_error": None,
            }
            if last_number is not None:
                values["delivered"] = self._storable(state.id, last_number)
                if values["delivered"] != last_number:  # the rest once stored
                    with self._sent_lock:
                        self._sent[state.id] = (last_number, now)
            else:
                values["handshake_pending"] = False
            with self.service.db.begin() as conn:
                conn.execute(update(model.state).where(s.id == state.id).values(values))
            state.failures, state.first_failure_at, state.last_error = 0, None, None
            state.next_attempt_at, state.last_sent_at = 0.0, now
            if last_number is None:
                state.handshake_pending = False
            return True
        failures = state.failures + 1
        first = state.first_failure_at or now
        wait = min(
            self.settings.retry_initial_s * 2 ** (failures - 1), self.settings.retry_max_interval_s
        )
        give_up = now - first >= self.settings.give_up_after_s
        log.warning(
            "Subscription %s: notification failed (%s); %s",
            state.id,
            problem,
            "giving up: status error" if give_up else f"retry in {wait:.1f} s",
        )
        with self.service.db.begin() as conn:
            conn.execute(
                update(model.state)
                .where(s.id == state.id)
                .values(
                    failures=failures,
                    first_failure_at=first,
                    next_attempt_at=now + wait,
                    last_error=problem,
                    **({"status": "error"} if give_up else {}),
                )
            )
        if give_up:
            state.last_error = problem
            self.service.set_resource_status(state, "error", problem)
        else:
            self._schedule_wake(wait)
        return False

    def _client(self) -> Poster:
        client: Poster | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = Poster(
                self.settings.request_timeout_s, child=self.settings.sender_process
            )
            with self._clients_lock:
                self._clients.append(client)
        return client

    def sender_pids(self) -> list[int]:
        """The running child processes that make plain-http POSTs (one per worker that sent)."""
        with self._clients_lock:
            return [pid for client in self._clients if (pid := client.child_pid) is not None]

    def _schedule_wake(self, wait: float) -> None:
        timer = threading.Timer(wait, self.service.wake_delivery.set)
        timer.daemon = True
        timer.start()
