"""The subscriptions service of one hub: follows the version log (a consumer), turns matching
versions into numbered events in each subscription's durable queue, and answers what the
operations, the delivery thread and the live channels ask of that queue.

Ordering and durability come from the log: the consumer sees committed versions in ``seq``
order, a Subscription takes effect at its own position in the log, and each subscription's
``last_seq`` is saved in the same database transaction as the events it produced, so a batch
delivered twice (a crash before the cursor moved) adds nothing twice.

Speed: a batch's events are numbered in memory and handed to the delivery and the live
channels at once; a writer thread stores them, batch after batch in order, and the
dispatcher saves the consumer's cursor only up to the last batch stored (``durable``). On
SQLite a loading client's transaction holds the only write lock most of the time; waiting
for it before notifying, and before taking the next batch, put notifications seconds behind
the log. A crash loses nothing: the batches not stored are delivered again and numbered the
same (see ``delivery.py`` for what is sent twice).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, insert, select, update

from fhirhub.plugins.subscriptions import model
from fhirhub.plugins.subscriptions.notifications import Event, notification_bundle
from fhirhub.plugins.subscriptions.owners import access_from_json
from fhirhub.plugins.subscriptions.settings import SubscriptionSettings
from fhirhub.plugins.subscriptions.spec import SubscriptionSpec, Trigger, parse_subscription
from fhirhub.plugins.subscriptions.topics import known_topics
from fhirhub.sdk import (
    Access,
    CriteriaMatcher,
    FhirError,
    Hub,
    HubLocal,
    IndexRows,
    PluginDatabase,
    StoredVersion,
    acting_as,
    criteria_matcher,
    format_instant,
    index_rows,
    matching,
    plugin_settings,
    publish_live,
    system_for,
    transaction,
    visible_to_tenant,
)

log = logging.getLogger("fhirhub.subscriptions")

PLUGIN_NAME = "subscriptions"

#: Set while the plugin writes a Subscription itself (its status): such a write keeps the
#: owner and the status it sets.
internal_write: ContextVar[bool] = ContextVar("subscriptions_internal_write", default=False)


def live_channel(subscription_id: str) -> str:
    return f"subscription:{subscription_id}"


@dataclass
class State:
    """A row of ``subscriptions_state`` with its spec parsed."""

    id: str
    tenant: str | None
    spec: SubscriptionSpec
    status: str
    created_seq: int
    last_seq: int
    event_count: int
    delivered: int
    handshake_pending: bool
    failures: int
    first_failure_at: float | None
    next_attempt_at: float
    last_sent_at: float
    last_error: str | None

    @classmethod
    def from_row(cls, row: Any) -> State:
        m = row._mapping
        return cls(
            id=m["id"],
            tenant=m["tenant"],
            spec=parsed_spec(m["spec"]),
            status=m["status"],
            created_seq=m["created_seq"],
            last_seq=m["last_seq"],
            event_count=m["event_count"],
            delivered=m["delivered"],
            handshake_pending=bool(m["handshake_pending"]),
            failures=m["failures"],
            first_failure_at=m["first_failure_at"],
            next_attempt_at=m["next_attempt_at"],
            last_sent_at=m["last_sent_at"],
            last_error=m["last_error"],
        )


class SubscriptionService:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings: SubscriptionSettings = plugin_settings(
            hub, PLUGIN_NAME, SubscriptionSettings
        )
        self.db = PluginDatabase(hub, model.metadata)
        #: Woken when rest-hook events are queued (the delivery thread waits on it).
        self.wake_delivery = threading.Event()
        self.on_events: list[Callable[[], None]] = []
        #: Told of each batch's rest-hook events as soon as they are numbered, before they are
        #: stored (the delivery thread: it sends them without reading them back).
        self.on_numbered: list[Callable[[State, list[Event]], None]] = []
        #: Per subscription whose events were handed over before being stored: the highest
        #: event number stored (a delivered count is never written past it).
        self.stored: dict[str, int] = {}
        #: The last live message of each websocket subscription: a client binding while a
        #: batch is handed over but not yet stored finds its events here.
        self.recent: dict[str, dict[str, Any]] = {}
        # Per subscription, (last_seq, event_count) as numbered, ahead of the stored ones
        # while batches wait for the writer.
        self._progress: dict[str, tuple[int, int]] = {}
        self._stores: deque[_Store] = deque()  # batches to store, in log order
        self._stores_changed = threading.Condition()
        self._durable = 0  # the log position up to which everything is stored
        #: Whether the last batch had subscriptions to evaluate (``linger_s``).
        self._evaluating = True
        self._writer: threading.Thread | None = None
        self._closing = False
        self._owners: dict[str, Access] = {}  # subscription id -> owner, until it is rewritten
        #: This process serves the consumer (set by its companion): owners may be cached.
        self.serves_consumer = False

    # -- reading state ---------------------------------------------------------------------
    def states(self) -> list[State]:
        """Every subscription's state, numbered events not yet stored included."""
        with self.db.read() as conn:
            states = [State.from_row(r) for r in conn.execute(select(model.state))]
        for state in states:
            if (progress := self._progress.get(state.id)) is not None:
                state.last_seq = max(state.last_seq, progress[0])
                state.event_count = max(state.event_count, progress[1])
        return states

    def state(self, subscription_id: str) -> State | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(model.state).where(model.state.c.id == subscription_id)
            ).first()
        return State.from_row(row) if row is not None else None

    def owner(self, subscription_id: str, tenant: str | None) -> Access:
        """The subscription's owner, cached only in the process serving the consumer, which
        drops it when the Subscription is rewritten; another process (the API process beside
        a worker process) reads it each time."""
        cached = self._owners.get(subscription_id)
        if cached is not None:
            return cached
        with self.db.read() as conn:
            text = conn.execute(
                select(model.owner.c.access).where(model.owner.c.id == subscription_id)
            ).scalar()
        owner = access_from_json(text, tenant)
        if self.serves_consumer:
            self._owners[subscription_id] = owner
        return owner

    def serve_consumer(self, serving: bool) -> None:
        """Whether this process serves the consumer (its companion says so): only then are
        owners cached, as only then is a rewritten Subscription seen to drop its entry."""
        self.serves_consumer = serving
        self._owners.clear()

    def events(
        self, subscription_id: str, since: int = 0, until: int | None = None, limit: int = 1000
    ) -> list[Event]:
        """Events numbered > ``since`` (and <= ``until``), oldest first."""
        condition = (model.event.c.subscription_id == subscription_id) & (
            model.event.c.event_number > since
        )
        if until is not None:
            condition &= model.event.c.event_number <= until
        with self.db.read() as conn:
            rows = conn.execute(
                select(model.event)
                .where(condition)
                .order_by(model.event.c.event_number)
                .limit(limit)
            ).all()
        return [
            Event(
                r.event_number,
                r.resource_type,
                r.resource_id,
                r.version_id,
                r.interaction,
                r.timestamp,
                r.content,
            )
            for r in rows
        ]

    def bundle(
        self, state: State, notification_type: str, events: list[Event], *, raw: bool = False
    ) -> dict[str, Any]:
        """The notification Bundle of ``events`` (``raw``: see ``notification_bundle``)."""
        return notification_bundle(
            state.spec,
            state.status,
            notification_type,
            state.event_count,
            events,
            base_url=self.hub.base_url,
            error=state.last_error if state.status == "error" else None,
            raw=raw,
        )

    # -- following the log -----------------------------------------------------------------
    def linger_s(self) -> float:
        """The consumer's ``linger_s``: none while subscriptions are evaluated (a notification
        is due within milliseconds of its commit); :data:`IDLE_LINGER_S` while there is none
        to evaluate, when each batch only applies Subscription versions and moves the
        cursor: a hub without subscriptions then reads the log twice a second under a load,
        not once per commit. A subscription created meanwhile is applied at most that much
        later, at its own log position (it misses nothing written after it)."""
        return 0.0 if self._evaluating else IDLE_LINGER_S

    def handle_versions(self, versions: Sequence[StoredVersion]) -> None:
        """The consumer: apply Subscription versions at their position, then queue the
        events of every subscription evaluating the batch (see the module docstring)."""
        for version in versions:
            if version.resource_type == "Subscription":
                self._apply_subscription(version)
        position = versions[-1].seq
        states = [s for s in self.states() if s.status in ("active", "error")]
        self._evaluating = bool(states)
        if not states:
            self._store(_Store(position))
            return
        produced: dict[str, list[tuple[StoredVersion, str]]] = {}
        answers: dict[tuple[Access, str, str, tuple[str, ...]], set[str]] = {}
        searched: set[str] = set()  # subscriptions whose criteria needed a search
        memos = BatchMemo(self.hub, versions)
        memos.prepare(t for s in states for t in s.spec.triggers)
        for state in states:
            if state.last_seq >= position:
                continue
            if found := self._evaluate(state, versions, answers, memos, searched):
                produced[state.id] = found
        if not produced:
            # A batch without events writes nothing (a re-delivery finds none again).
            self._store(_Store(position))
            return
        published: list[tuple[State, list[Event]]] = []
        stamps: dict[int, str] = {}  # seq -> lastUpdated as text, once per version
        rows: list[tuple[Any, ...]] = []
        moved: list[dict[str, Any]] = []  # last_seq and event_count of each subscription
        pushed: list[dict[str, Any]] = []  # the same, and delivered, for live websockets
        for state in states:
            if state.id not in produced:
                continue
            # This thread is the only writer of last_seq and event_count: the snapshot read
            # at the start of the batch is current.
            number = state.event_count
            events: list[Event] = []
            for version, interaction in produced[state.id]:
                if version.seq <= state.last_seq:
                    continue
                number += 1
                content = version.content if state.spec.payload == "full-resource" else None
                stamp = stamps.get(version.seq)
                if stamp is None:
                    stamp = stamps[version.seq] = format_instant(version.last_updated)
                event = Event(
                    number,
                    version.resource_type,
                    version.resource_id,
                    str(version.version_id),
                    interaction,
                    stamp,
                    content,
                )
                events.append(event)
                rows.append(  # in the order of EVENT_COLUMNS
                    (
                        state.id,
                        number,
                        version.seq,
                        event.resource_type,
                        event.resource_id,
                        event.version_id,
                        interaction,
                        event.timestamp,
                        content,
                    )
                )
            values = {"sid": state.id, "last_seq": position, "event_count": number}
            self._progress[state.id] = (position, number)
            if state.spec.channel == "websocket" and state.status == "active":
                pushed.append({**values, "delivered": number})  # $events: the durable path
            else:
                moved.append(values)
            if events:
                published.append((state, events))
        # Handed over before they are stored (see the module docstring). Numbers continue
        # from this thread's own progress, so a batch stored later cannot change them; a
        # crash before it is stored numbers the same versions the same again, which holds
        # only for criteria decided by the version alone: events of criteria that needed a
        # search (chains, _has, a patient context) wait until they are stored, because a
        # search after a crash may answer differently and an event number once sent must
        # never name another resource.
        handed = self._hand_over([(st, ev) for st, ev in published if st.id not in searched])
        self._store(_Store(position, rows, moved, pushed, published, handed))

    # -- storing numbered batches, in order, on the writer thread ---------------------------
    def durable(self) -> int:
        """The log position up to which every batch is stored (``Consumer.durable``)."""
        return self._durable

    def _store(self, batch: _Store) -> None:
        with self._stores_changed:
            if not batch.rows and not batch.moved and not batch.pushed and not self._stores:
                self._durable = batch.position  # nothing to write, nothing before it
                return
            while len(self._stores) >= MAX_UNSTORED_BATCHES and not self._closing:
                self._stores_changed.wait(1.0)  # the writer is behind: wait for it
            self._stores.append(batch)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="fhirhub-subscriptions-store", daemon=True
                )
                self._writer.start()
            self._stores_changed.notify_all()

    def wait_stored(self, timeout: float = 30.0) -> bool:
        """Block until every numbered batch is stored."""
        with self._stores_changed:
            return self._stores_changed.wait_for(lambda: not self._stores, timeout)

    def close(self) -> None:
        """Store what is numbered (for a while), then stop the writer."""
        self.wait_stored(timeout=10.0)
        with self._stores_changed:
            self._closing = True
            self._stores_changed.notify_all()

    def _write_loop(self) -> None:
        failures = 0
        while True:
            with self._stores_changed:
                self._stores_changed.wait_for(lambda: self._stores or self._closing)
                if self._closing and not self._stores:
                    return
                batches = list(self._stores)
            try:
                self._write(batches)
            except Exception:  # the database restarting: try the same batches again
                failures += 1
                log.exception("Storing subscription events failed; retrying")
                with self._stores_changed:
                    if self._closing:
                        return
                    self._stores_changed.wait(min(5.0, 0.1 * 2**failures))
                continue
            failures = 0
            with self._stores_changed:
                for _ in batches:
                    self._stores.popleft()
                self._durable = batches[-1].position
                self._stores_changed.notify_all()
            for batch in batches:
                for state, events in batch.published:
                    if state.id in self.stored:
                        self.stored[state.id] = events[-1].number
                if batch.published:
                    self._after_events(batch.published, batch.handed)

    def _write(self, batches: Sequence[_Store]) -> None:
        """Every batch waiting, in order, in one transaction: on SQLite the write lock is
        what the store waits for (a loading client's transaction Bundles hold it), so the
        batches numbered meanwhile are stored together when it is had."""
        by_id = update(model.state).where(model.state.c.id == bindparam("sid"))
        with self.db.begin() as conn:
            for batch in batches:
                if batch.rows:
                    # The driver's executemany of positional rows: SQLAlchemy's insert of
                    # dictionaries cost about as much CPU again, per event, as SQLite's work.
                    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
                    conn.exec_driver_sql(
                        f"INSERT INTO {model.event.name} ({', '.join(EVENT_COLUMNS)}) "
                        f"VALUES ({', '.join([mark] * len(EVENT_COLUMNS))})",
                        batch.rows,
                    )
                if batch.moved:
                    conn.execute(
                        by_id.values(
                            last_seq=bindparam("last_seq"), event_count=bindparam("event_count")
                        ),
                        batch.moved,
                    )
                if batch.pushed:
                    conn.execute(
                        by_id.values(
                            last_seq=bindparam("last_seq"),
                            event_count=bindparam("event_count"),
                            delivered=bindparam("delivered"),
                        ),
                        batch.pushed,
                    )

    def _hand_over(self, published: list[tuple[State, list[Event]]]) -> frozenset[str]:
        """Give just-numbered events to the live channels of websocket subscriptions and to
        the rest-hook delivery, before the batch is stored (see ``handle_versions``); the
        subscriptions whose events went out."""
        handed: set[str] = set()
        for state, events in published:
            if state.status != "active":
                continue
            if state.spec.channel == "websocket":
                self._push_websocket(state, events)
                handed.add(state.id)
            elif state.spec.channel == "rest-hook" and self.on_numbered:
                self.stored.setdefault(state.id, state.event_count)
                for callback in self.on_numbered:
                    callback(state, events)
                handed.add(state.id)
        if handed:
            # Once for the batch: the delivery thread then picks every subscription handed
            # over in one pass, instead of starting a pass while this thread hands over more.
            self.wake_delivery.set()
        return frozenset(handed)

    def _push_websocket(self, state: State, events: list[Event]) -> None:
        """A websocket subscription's events to its bound clients (kept as its latest message
        for a client that binds meanwhile)."""
        message = self.recent[state.id] = self.live_message(state, events)
        publish_live(self.hub, live_channel(state.id), message)

    def live_message(self, state: State, events: list[Event]) -> dict[str, Any]:
        """The live message of a websocket subscription's events: their notification Bundle
        serialised once (``text``), however many clients are bound."""
        counted = replace(state, event_count=max(state.event_count, events[-1].number))
        bundle = self.bundle(counted, "event-notification", events, raw=True)
        return {
            "subscription": state.id,
            "numbers": [e.number for e in events],
            "text": orjson.dumps(bundle).decode(),
        }

    def _evaluate(
        self,
        state: State,
        versions: Sequence[StoredVersion],
        answers: dict[tuple[Access, str, str, tuple[str, ...]], set[str]],
        memos: BatchMemo,
        searched: set[str],
    ) -> list[tuple[StoredVersion, str]]:
        """The versions of the batch that are events of ``state``, in log order, with their
        interaction. Simple criteria are tested in memory against each version's own index
        rows (extracted once per batch: ``memos``); the others are run with the owner's access
        by the REST search code, once per batch for subscriptions sharing criteria and eyes
        (``answers``)."""
        after = max(state.created_seq, state.last_seq)
        hits: dict[int, str] = {}
        for trigger in state.spec.triggers:
            typed = memos.of_type(trigger.resource_type)
            if not typed or typed[-1].seq <= after:
                continue
            owner = self.owner(state.id, state.tenant)
            # seq -> interaction of the batch's versions the trigger fires on (shared by the
            # subscriptions of the batch; those that took effect inside it see a part).
            live = memos.live(trigger.resource_type, trigger.interactions)
            if after >= typed[0].seq:
                live = {seq: i for seq, i in live.items() if seq > after}
            if live and (matched := memos.matched(owner, trigger)) is not None:
                for seq in matched:
                    if (interaction := live.get(seq)) is not None:
                        hits[seq] = interaction
            elif live:
                searched.add(state.id)
                # Only the versions that pass the criteria's in-memory part are searched for
                # (none: no search at all).
                if (passing := memos.passing(trigger.resource_type, trigger.criteria)) is not None:
                    live = {seq: i for seq, i in live.items() if seq in passing}
                    if not live:
                        continue
                by_seq = memos.by_seq
                wanted = tuple(sorted({by_seq[seq].resource_id for seq in live}))
                key = (owner, trigger.resource_type, trigger.criteria, wanted)
                ids = answers.get(key)
                if ids is None:
                    try:
                        with acting_as(owner):
                            ids = matching(
                                self.hub, trigger.resource_type, trigger.criteria, wanted
                            )
                    except FhirError as error:  # e.g. a search parameter removed since
                        log.error("Subscription %s: criteria failed: %s", state.id, error)
                        ids = set()
                    answers[key] = ids
                for seq, interaction in live.items():
                    if by_seq[seq].resource_id in ids:
                        hits[seq] = interaction
            if "delete" in trigger.interactions and not trigger.criteria:
                for version in typed:
                    if version.seq <= after or not version.deleted:
                        continue
                    if owner.owns(version.tenant, version.resource_type):
                        if owner.patient is None:
                            hits[version.seq] = "delete"
        return [(memos.by_seq[seq], hits[seq]) for seq in sorted(hits)]

    def _apply_subscription(self, version: StoredVersion) -> None:
        """Take a Subscription version into effect at its log position."""
        # Stored first: the batches numbered before it write this subscription's rows.
        while not self.wait_stored():
            log.warning(
                "Subscription %s waits for earlier events to be stored", version.resource_id
            )
        self._owners.pop(version.resource_id, None)
        self.recent.pop(version.resource_id, None)
        self.stored.pop(version.resource_id, None)
        self._progress.pop(version.resource_id, None)
        if version.deleted:
            with self.db.begin() as conn:
                conn.execute(delete(model.state).where(model.state.c.id == version.resource_id))
                conn.execute(
                    delete(model.event).where(model.event.c.subscription_id == version.resource_id)
                )
                conn.execute(delete(model.owner).where(model.owner.c.id == version.resource_id))
            return
        resource = orjson.loads(version.content or b"{}")
        error: str | None = None
        try:
            spec = parse_subscription(resource, known_topics(self.hub))
        except FhirError as exc:  # stored before the plugin ran, or its topic was removed
            error = exc.message
            spec = SubscriptionSpec(version.resource_id, "error", None, (), "rest-hook", None)
        status = "error" if error else spec.status
        spec_json = orjson.dumps(spec.to_json()).decode()
        with self.db.begin() as conn:
            existing = conn.execute(
                select(model.state).where(model.state.c.id == version.resource_id)
            ).first()
            if existing is None:
                conn.execute(
                    insert(model.state).values(
                        id=version.resource_id,
                        tenant=version.tenant,
                        spec=spec_json,
                        status=status,
                        created_seq=version.seq,
                        last_seq=version.seq,
                        event_count=0,
                        delivered=0,
                        handshake_pending=status == "active" and spec.channel == "rest-hook",
                        failures=0,
                        next_attempt_at=0.0,
                        last_sent_at=0.0,
                        last_error=error,
                        lease_until=0.0,
                    )
                )
            else:
                values: dict[str, Any] = {"spec": spec_json, "status": status}
                if status == "active" and existing.status != "active":
                    # Re-activated by its owner: resume where delivery stopped, at once.
                    values.update(failures=0, first_failure_at=None, next_attempt_at=0.0)
                    values["last_error"] = None
                    if spec.channel == "websocket":
                        values["delivered"] = existing.event_count
                if error:
                    values["last_error"] = error
                conn.execute(
                    update(model.state)
                    .where(model.state.c.id == version.resource_id)
                    .values(values)
                )
        self.wake_delivery.set()

    def _after_events(
        self, published: list[tuple[State, list[Event]]], handed: frozenset[str] = frozenset()
    ) -> None:
        """Tell live listeners (websocket, SSE) and the rest-hook delivery thread. Only a
        websocket subscription's message carries the notification Bundle; for the others
        (whose live listeners are the rare SSE clients) the numbers say what to read from the
        durable queue, so a busy hub does not build a Bundle per event nobody awaits."""
        for state, events in published:
            if state.status == "active" and state.spec.channel == "websocket":
                if state.id not in handed:  # (else its message went out before storing)
                    self._push_websocket(state, events)
            elif state.status == "active":
                message = {"subscription": state.id, "numbers": [e.number for e in events]}
                publish_live(self.hub, live_channel(state.id), message)
            if state.spec.channel == "rest-hook" and state.id not in handed:
                self.wake_delivery.set()  # (handed over: woken then, nothing new now)
        for callback in self.on_events:
            callback()

    # -- status written back to the Subscription -------------------------------------------
    def set_resource_status(self, state: State, status: str, error: str | None) -> None:
        """Write ``status`` (and ``error``) into the Subscription resource, as the system for
        its tenant; the consumer then applies that version like any other."""
        token = internal_write.set(True)
        try:
            with acting_as(system_for(state.tenant)), transaction(self.hub) as tx:
                try:
                    resource = tx.read("Subscription", state.id)
                except FhirError:
                    return
                resource["status"] = status
                if error:
                    resource["error"] = error[:1000]
                else:
                    resource.pop("error", None)
                tx.update(resource)
        finally:
            internal_write.reset(token)


#: The columns of a stored event row, in the order ``_Store.rows`` holds them.
EVENT_COLUMNS = (
    "subscription_id",
    "event_number",
    "seq",
    "resource_type",
    "resource_id",
    "version_id",
    "interaction",
    "timestamp",
    "content",
)
assert set(EVENT_COLUMNS) == {column.name for column in model.event.columns}

#: Numbered batches that may wait for the writer before the consumer waits for it (each of at
#: most the consumer's batch size; the writer stores all that wait in one transaction).
MAX_UNSTORED_BATCHES = 20
#: How long the consumer lingers between batches while no subscription is evaluated.
IDLE_LINGER_S = 0.5


@dataclass
class _Store:
    """A numbered batch for the writer: its events and each subscription's new position."""

    position: int
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # in the order of EVENT_COLUMNS
    moved: list[dict[str, Any]] = field(default_factory=list)
    pushed: list[dict[str, Any]] = field(default_factory=list)
    published: list[tuple[State, list[Event]]] = field(default_factory=list)
    #: The subscriptions whose events were handed over before being stored.
    handed: frozenset[str] = frozenset()


@functools.lru_cache(maxsize=4096)
def parsed_spec(text: str) -> SubscriptionSpec:
    """Specs parsed once per distinct JSON (each batch reads every subscription's state)."""
    return SubscriptionSpec.from_json(orjson.loads(text))


class BatchMemo:
    """What one consumer batch computes once for all subscriptions: the versions by type,
    each version's index rows, each distinct criteria's in-memory matcher and, per distinct
    (criteria, owner's eyes), the versions it matches."""

    def __init__(self, hub: Hub, versions: Sequence[StoredVersion]) -> None:
        self.hub = hub
        self.by_seq = {version.seq: version for version in versions}
        self._by_type: dict[str, list[StoredVersion]] = {}
        for version in versions:
            self._by_type.setdefault(version.resource_type, []).append(version)
        self._rows: dict[int, IndexRows] = {}
        self._live: dict[tuple[str, frozenset[str]], dict[int, str]] = {}
        self._prefilters: dict[tuple[str, str], CriteriaMatcher | None] = {}
        self._passing: dict[tuple[str, str], frozenset[int]] = {}
        self._matchers: dict[tuple[str, str], CriteriaMatcher | None] = {}
        self._matched: dict[tuple[str, str, Any], frozenset[int]] = {}
        self._codes: dict[str, set[str]] = {}  # resource type -> parameters read in memory

    def of_type(self, resource_type: str) -> list[StoredVersion]:
        """The batch's versions of a type, in log order."""
        return self._by_type.get(resource_type, [])

    def live(self, resource_type: str, interactions: Iterable[str]) -> dict[int, str]:
        """``seq`` -> interaction of the batch's versions of a type that are not deletions
        and whose interaction is one of ``interactions``, in log order (do not modify)."""
        key = (resource_type, frozenset(interactions))
        found = self._live.get(key)
        if found is None:
            found = self._live[key] = {
                v.seq: interaction
                for v in self.of_type(resource_type)
                if not v.deleted and (interaction := _interaction(v)) in key[1]
            }
        return found

    def rows(self, version: StoredVersion) -> IndexRows:
        rows = self._rows.get(version.seq)
        if rows is None:
            resource = orjson.loads(version.content or b"{}")
            resource.setdefault("id", version.resource_id)
            codes = self._codes.get(version.resource_type, set())
            rows = self._rows[version.seq] = index_rows(self.hub, resource, codes)
        return rows

    def matcher(self, resource_type: str, criteria: str) -> CriteriaMatcher | None:
        key = (resource_type, criteria)
        if key not in self._matchers:
            matcher = self._matchers[key] = criteria_matcher(self.hub, resource_type, criteria)
            if matcher is not None:
                self._codes.setdefault(resource_type, set()).update(matcher.params)
        return self._matchers[key]

    def prefilter(self, resource_type: str, criteria: str) -> CriteriaMatcher | None:
        """What of ``criteria`` can be tested in memory: all of it (its matcher), or the
        parameters among them that can (a version failing them cannot match the whole, all
        parameters having to hold); None when none can."""
        matcher = self.matcher(resource_type, criteria)
        if matcher is not None:
            return matcher
        key = (resource_type, criteria)
        if key not in self._prefilters:
            simple = [
                part
                for part in criteria.split("&")
                if part and criteria_matcher(self.hub, resource_type, part) is not None
            ]
            found = self._prefilters[key] = (
                criteria_matcher(self.hub, resource_type, "&".join(simple)) if simple else None
            )
            if found is not None:
                self._codes.setdefault(resource_type, set()).update(found.params)
        return self._prefilters[key]

    def passing(self, resource_type: str, criteria: str) -> frozenset[int] | None:
        """The ``seq`` of the batch's live versions of the type that pass ``prefilter`` (no
        access checked: the search that follows checks it); None without a prefilter."""
        prefilter = self.prefilter(resource_type, criteria)
        if prefilter is None:
            return None
        key = (resource_type, criteria)
        found = self._passing.get(key)
        if found is None:
            found = self._passing[key] = frozenset(
                version.seq
                for version in self.of_type(resource_type)
                if not version.deleted
                and prefilter.matches(version.resource_id, self.rows(version))
            )
        return found

    def prepare(self, triggers: Iterable[Trigger]) -> None:
        """Compile every trigger's criteria (or their in-memory part) before any rows are
        extracted, so that each version's rows are extracted once, of the parameters some
        criteria read."""
        for trigger in triggers:
            if trigger.resource_type in self._by_type:
                self.prefilter(trigger.resource_type, trigger.criteria)

    def matched(self, owner: Access, trigger: Trigger) -> frozenset[int] | None:
        """The ``seq`` of the batch's live versions of the trigger's type that match its
        criteria and that the owner may see, tested in memory; None when the criteria need
        SQL or the owner has a patient context (the compartment is the store's to decide)."""
        if owner.patient is not None:
            return None
        matcher = self.matcher(trigger.resource_type, trigger.criteria)
        if matcher is None:
            return None
        visibility = owner.visibility("r")
        key = (trigger.resource_type, trigger.criteria, visibility)
        found = self._matched.get(key)
        if found is None:
            found = self._matched[key] = frozenset(
                version.seq
                for version in self.of_type(trigger.resource_type)
                if not version.deleted
                and _visible(visibility, version)
                and matcher.matches(version.resource_id, self.rows(version))
            )
        return found


def _visible(visibility: Any, version: StoredVersion) -> bool:
    """Whether a caller with this ``Access.visibility`` (no patient context) may read the
    version: its type and tenant, as the store's search decides."""
    if not visibility.shows_type(version.resource_type):
        return False
    return bool(
        visibility.tenant is None
        or visible_to_tenant(version.resource_type, version.tenant, visibility.tenant)
    )


def _interaction(version: StoredVersion) -> str:
    if version.deleted:
        return "delete"
    return "create" if version.version_id == 1 else "update"


_services: HubLocal[SubscriptionService] = HubLocal("subscriptions.service")


def service_of(hub: Hub) -> SubscriptionService:
    return _services.setdefault(hub, lambda: SubscriptionService(hub))
