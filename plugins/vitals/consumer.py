"""Scores on every vital-signs write, from any source: a consumer of the version log.

Why a consumer and not a hook in the writer's transaction: it sees every committed
Observation whatever wrote it (REST, an HL7 ORU, an OSCAR sync, the entry form, a bulk load),
in log order, at least once, resumes after a crash where it stopped, and keeps scoring off the
writer's path, so a feed is not slowed by it and a scoring failure never refuses a source's
write. The dispatcher wakes it on every commit, so a score follows its inputs within a
fraction of a second.

Per batch of versions: the vital-signs Observations are grouped by (tenant, patient, time
measured); for each group the patient's inputs in the window ending at that time are read,
NEWS2 and qSOFA computed, and their Observation and RiskAssessment created conditionally on
the digest of their inputs (the same inputs never make a second score, a replay rebuilds the
same ones). Alerts follow (``alerts.py``). Conditions and Goals drop the patient's cached
SpO2 scale; Tasks carry acknowledgments made by a Task update.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, select

from fhirhub.plugins.vitals import alerts, codes, state
from fhirhub.plugins.vitals.delivery import feed_of
from fhirhub.plugins.vitals.fhir_output import risk_assessment, score_key, score_observation
from fhirhub.plugins.vitals.readings import (
    Reading,
    effective_time,
    is_vital_input,
    readings_of,
)
from fhirhub.plugins.vitals.scores import Score, latest_readings, news2, qsofa
from fhirhub.plugins.vitals.service import VitalsService
from fhirhub.sdk import (
    FhirError,
    StoredVersion,
    Transaction,
    acting_as,
    search,
    search_all,
    system_for,
    transaction,
)

log = logging.getLogger("fhirhub.vitals")

_INPUT_CODE_LIST = ",".join(f"{codes.LOINC}|{c}" for c in sorted(codes.INPUT_CODES))
_ACTIVE_CONDITION = {"active", "recurrence", "relapse"}


@dataclass
class Scored:
    """One patient's scores at one time, and what was written for them."""

    tenant: str | None
    patient_id: str
    at: datetime
    scores: list[Score]
    keys: list[str] = field(default_factory=list)
    observation_ids: list[str] = field(default_factory=list)
    assessment_ids: list[str] = field(default_factory=list)
    #: Per score: whether this delivery created it (else it was already there).
    created: list[bool] = field(default_factory=list)
    encounter: str | None = None
    #: A set whose inputs were all removed, which this earlier one replaces (``Trigger``).
    replaces: datetime | None = None


@dataclass
class Trigger:
    """The newest log position and Encounter of one patient's inputs measured at one time."""

    seq: int
    encounter: str | None
    #: A rescore that moves the patient back to this earlier set: the time of the set whose
    #: inputs were all removed (the board may go back from it).
    replaces: datetime | None = None


#: Versions per delivery. A full batch may end inside a transaction: its last set is deferred.
BATCH_SIZE = 1000
#: Sets scored in one batch from which the feed counts as steady (the batch pause applies).
STEADY_SETS = 2


def handle_versions(
    service: VitalsService, versions: Sequence[StoredVersion], *, full: bool | None = None
) -> None:
    """The consumer's ``handle`` (module docstring). ``full``: the batch may have been cut
    short by the batch size (default: it holds :data:`BATCH_SIZE` versions); then the set of
    its last vital sign waits for the next batch, where the rest of its transaction is.

    A batch that scored several sets (a steady feed) makes the next delivery linger
    ``batch_pause_ms`` (:meth:`VitalsService.linger_s`): the next batch then holds many
    patients, whose scores share one transaction and one lookup of each kind."""
    if full is None:
        full = len(versions) >= BATCH_SIZE
    service.steady = _handle(service, versions, full) >= STEADY_SETS


def score_pending(service: VitalsService) -> None:
    """The consumer's ``caught_up``: the log has nothing more of its types, so a set that a
    full batch deferred (its transaction could have gone on in the next batch) is complete:
    score it now rather than at the next vital-signs write, which may be long in coming."""
    if service.has_pending is not False:
        _handle(service, [], full=False)


def _handle(service: VitalsService, versions: Sequence[StoredVersion], full: bool) -> int:
    """Score the batch; returns the number of sets (patient, time) scored."""
    upserts: dict[tuple[str, str], tuple[str | None, list[Reading], int]] = {}
    triggers: dict[tuple[str | None, str, datetime], Trigger] = {}
    tasks: list[tuple[str | None, dict[str, Any]]] = []
    # Sources whose earlier readings (in this batch, or stored) may have been scored: their
    # sets are rescored without them (a deletion, a correction that moved them).
    replaced: list[Replaced] = []
    for version in versions:
        tenant = version.tenant or state.NO_TENANT
        if version.resource_type == "Observation":
            source = f"Observation/{version.resource_id}"
            if version.deleted or str(version.version_id) != "1":
                replaced.append(
                    Replaced(tenant, source, version.seq, upserts.get((tenant, source)))
                )
            if version.deleted or version.content is None:
                upserts[(tenant, source)] = (None, [], version.seq)
                continue
            observation = orjson.loads(version.content)
            patient_id = _patient_of(observation)
            if patient_id is None or not is_vital_input(observation):
                if str(version.version_id) != "1":  # an earlier version may have been a vital sign
                    upserts[(tenant, source)] = (None, [], version.seq)
                continue
            readings = readings_of(observation, str(version.version_id))
            upserts[(tenant, source)] = (patient_id, readings, version.seq)
            when = effective_time(observation)
            if when is not None:
                encounter = (observation.get("encounter") or {}).get("reference")
                triggers[(version.tenant, patient_id, when)] = Trigger(version.seq, encounter)
        elif version.resource_type == "Task":
            if version.content is not None and not version.deleted:
                task = orjson.loads(version.content)
                if alerts.is_alert_task(task):
                    tasks.append((version.tenant, task))
        elif version.resource_type in ("Condition", "Goal") and version.content is not None:
            # The SpO2 scale may change.
            patient_id = _patient_of(orjson.loads(version.content))
            if patient_id is not None:
                service.scale2.drop((tenant, patient_id))
    outcome = Outcome()
    if replaced:
        _add_rescores(service, replaced, upserts, triggers)
    if upserts:
        outcome.writes.append(_reading_writes(upserts))
    triggers = _with_pending(service, triggers, full)
    if triggers:
        _score_all(service, triggers, upserts, outcome)
    outcome.finish(service)
    for tenant_id, task in tasks:
        alerts.task_updated(service, tenant_id, task)
    return len(triggers)


@dataclass
class Replaced:
    """A source replaced by a later version (or deleted) at log position ``seq``; ``earlier``:
    its readings from earlier in the same batch, if any (else the stored ones count)."""

    tenant: str
    source: str
    seq: int
    earlier: tuple[str | None, list[Reading], int] | None


def _add_rescores(
    service: VitalsService,
    replaced: list[Replaced],
    upserts: dict[tuple[str, str], tuple[str | None, list[Reading], int]],
    triggers: dict[tuple[str | None, str, datetime], Trigger],
) -> None:
    """Rescore the sets a deleted or replaced Observation's readings counted in: the set at
    each reading's time (or, if none of its inputs is left, the patient's newest remaining
    set before it, whatever its age: the patient's state without the removed one) and the
    patient's later sets within the window, which carried its value forward. The triggers' log
    position is the removal's, so the readings counted are those still there at that point of
    the log whatever the batch sizes: a replay rescores the same sets from the same inputs.
    Sets whose inputs did not change give the same digest (nothing new is written); their
    alerts are evaluated again, a no-op for an unchanged score."""
    span = timedelta(minutes=service.settings.window_minutes).total_seconds()
    # (tenant, patient) -> {(time of a removed reading, log position of its removal)}
    removed: dict[tuple[str, str], set[tuple[float, int]]] = defaultdict(set)
    lookup: dict[str, dict[str, int]] = defaultdict(dict)
    for item in replaced:
        if item.earlier is None:
            lookup[item.tenant][item.source] = item.seq
            continue
        owner, readings, _seq = item.earlier
        if owner is not None:
            removed[(item.tenant, owner)].update((r.time.timestamp(), item.seq) for r in readings)
    # This batch's readings per patient (the final state of each source): (time, seq).
    batch: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
    for (tenant, _source), (owner, readings, seq) in upserts.items():
        if owner is not None:
            batch[(tenant, owner)] += [(r.time.timestamp(), seq) for r in readings]
    with service.db.read() as conn:
        for tenant, sources in lookup.items():
            for chunk in _chunks(sorted(sources), 500):
                for row in conn.execute(
                    select(
                        state.reading.c.source, state.reading.c.patient_id, state.reading.c.time
                    ).where(state.reading.c.tenant == tenant, state.reading.c.source.in_(chunk))
                ):
                    removed[(tenant, row.patient_id)].add((row.time, sources[row.source]))

        def remaining(
            tenant: str, patient_id: str, low: float, high: float, limit: int | None = None
        ) -> list[tuple[float, int]]:
            """The stored readings' (time, seq) of the patient in [low, high], newest first
            (``limit``: of the newest rows), but those of sources replaced in this batch."""
            query = (
                select(state.reading.c.source, state.reading.c.time, state.reading.c.seq)
                .where(
                    state.reading.c.tenant == tenant,
                    state.reading.c.patient_id == patient_id,
                    state.reading.c.time >= low,
                    state.reading.c.time <= high,
                )
                .order_by(state.reading.c.time.desc())
            )
            rows = conn.execute(query if limit is None else query.limit(limit))
            return [(r.time, r.seq) for r in rows if (tenant, r.source) not in upserts]

        for (tenant, patient_id), found in removed.items():
            first = min(at for at, _ in found)
            last = max(at for at, _ in found)
            known = remaining(tenant, patient_id, first, last + span)
            known += batch.get((tenant, patient_id), [])
            for at, seq in sorted(found):
                counted = [t for t, written in known if written <= seq]
                sets = {t for t in counted if at <= t <= at + span}
                if at not in sets:
                    # None of the set's inputs is left: the patient's newest earlier set.
                    before = [
                        t
                        for t, written in batch.get((tenant, patient_id), [])
                        if t < at and written <= seq
                    ]
                    before += [
                        t
                        for t, written in remaining(tenant, patient_id, 0.0, at, limit=500)
                        if written <= seq and t < at
                    ][:1]
                    if before:
                        _rescore(triggers, tenant, patient_id, max(before), seq, replaces=at)
                for when in sets:
                    _rescore(triggers, tenant, patient_id, when, seq)


def _rescore(
    triggers: dict[tuple[str | None, str, datetime], Trigger],
    tenant: str,
    patient_id: str,
    when: float,
    seq: int,
    replaces: float | None = None,
) -> None:
    key = (tenant or None, patient_id, datetime.fromtimestamp(when, UTC))
    trigger = triggers.setdefault(key, Trigger(seq, None))
    trigger.seq = max(trigger.seq, seq)
    if replaces is not None:
        moved = datetime.fromtimestamp(replaces, UTC)
        trigger.replaces = max(trigger.replaces or moved, moved)


@dataclass
class Outcome:
    """What a batch leaves for after its FHIR transactions: the plugin tables' writes (run
    together in one transaction: on SQLite every write transaction makes the sources' writers
    wait) and then the live feed's events (once the board they announce is committed)."""

    writes: list[alerts.TableWrite] = field(default_factory=list)
    events: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)

    def finish(self, service: VitalsService) -> None:
        if self.writes:
            with service.db.begin() as conn:
                for write in self.writes:
                    write(conn)
        feed = feed_of(service.hub)
        for tenant, event in self.events:
            feed.publish(tenant, event)


def _with_pending(
    service: VitalsService,
    triggers: dict[tuple[str | None, str, datetime], Trigger],
    full: bool,
) -> dict[tuple[str | None, str, datetime], Trigger]:
    """Add the sets deferred by the previous batch; defer this batch's last set if the batch
    was full (its transaction may go on in the next one). Durable: a crash loses none."""
    deferred: tuple[str | None, str, datetime] | None = None
    # A rescore that moves a patient back to an earlier set is never deferred (the table does
    # not keep what it replaces): nothing of the removed set is left to wait for.
    candidates = [k for k, t in triggers.items() if t.replaces is None]
    if full and candidates:
        deferred = max(candidates, key=lambda k: triggers[k].seq)
    if deferred is None and service.has_pending is False:
        return triggers  # the common case: no write transaction
    with service.db.begin() as conn:
        for row in conn.execute(select(state.pending)):
            key = (row.tenant or None, row.patient_id, datetime.fromtimestamp(row.time, UTC))
            known = triggers.get(key)
            if known is None or known.seq < row.seq:
                triggers[key] = Trigger(row.seq, row.encounter)
        conn.execute(state.pending.delete())
        if deferred is not None:
            trigger = triggers.pop(deferred)
            conn.execute(
                state.pending.insert().values(
                    tenant=deferred[0] or state.NO_TENANT,
                    patient_id=deferred[1],
                    time=deferred[2].timestamp(),
                    seq=trigger.seq,
                    encounter=trigger.encounter,
                )
            )
    service.has_pending = deferred is not None
    return triggers


def _patient_of(resource: dict[str, Any]) -> str | None:
    for element in ("subject", "patient"):
        ref = (resource.get(element) or {}).get("reference")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
    return None


def _reading_writes(
    upserts: dict[tuple[str, str], tuple[str | None, list[Reading], int]],
) -> alerts.TableWrite:
    """Replace each source's readings in the projection (none: deleted or no longer scored)."""
    rows = []
    for (tenant, source), (patient_id, readings, seq) in upserts.items():
        for r in readings:
            number = None if isinstance(r.value, bool | str) else float(r.value)
            text = (
                ("O2" if r.value else "air")
                if isinstance(r.value, bool)
                else (r.value if isinstance(r.value, str) else None)
            )
            rows.append(
                {
                    "tenant": tenant,
                    "source": source,
                    "parameter": r.parameter,
                    "patient_id": patient_id,
                    "version": r.version,
                    "seq": seq,
                    "time": r.time.timestamp(),
                    "value_number": number,
                    "value_text": text,
                    "unit": r.unit,
                }
            )
    # First versions included: a delivery repeated after a crash finds its own rows.
    replaced: dict[str, list[str]] = defaultdict(list)
    for tenant, source in upserts:
        replaced[tenant].append(source)

    def write(conn: Connection) -> None:
        for tenant, sources in replaced.items():
            for chunk in _chunks(sources, 500):
                conn.execute(
                    state.reading.delete().where(
                        state.reading.c.tenant == tenant, state.reading.c.source.in_(chunk)
                    )
                )
        if rows:
            conn.execute(state.reading.insert(), rows)

    return write


def _store_readings(
    service: VitalsService,
    upserts: dict[tuple[str, str], tuple[str | None, list[Reading], int]],
) -> None:
    with service.db.begin() as conn:
        _reading_writes(upserts)(conn)


def _reading_of(row: Any) -> Reading:
    value: float | str | bool
    if row.parameter == codes.OXYGEN:
        value = row.value_text == "O2"
    elif row.parameter == codes.CONSCIOUSNESS:
        value = str(row.value_text)
    else:
        value = float(row.value_number)
    return Reading(
        row.parameter,
        value,
        datetime.fromtimestamp(row.time, UTC),
        row.source,
        row.version,
        row.unit,
    )


def _score_all(
    service: VitalsService,
    triggers: dict[tuple[str | None, str, datetime], Trigger],
    upserts: dict[tuple[str, str], tuple[str | None, list[Reading], int]],
    outcome: Outcome,
) -> None:
    """Score every trigger from the stored readings and this batch's own (not yet stored:
    they are written with the batch's other table writes)."""
    window = timedelta(minutes=service.settings.window_minutes)
    by_tenant: dict[str | None, list[tuple[str, datetime, Trigger]]] = defaultdict(list)
    for (tenant, patient_id, at), trigger in triggers.items():
        by_tenant[tenant].append((patient_id, at, trigger))
    for tenant, wanted in by_tenant.items():
        wanted.sort(key=lambda w: (w[0], w[1]))
        patients = sorted({w[0] for w in wanted})
        earliest = (min(w[1] for w in wanted) - window).timestamp()
        latest_time = max(w[1] for w in wanted).timestamp()
        stored: dict[str, list[tuple[int, Reading]]] = defaultdict(list)
        with service.db.read() as conn:
            for chunk in _chunks(patients, 500):
                for row in conn.execute(
                    select(state.reading).where(
                        state.reading.c.tenant == (tenant or state.NO_TENANT),
                        state.reading.c.patient_id.in_(chunk),
                        state.reading.c.time >= earliest,
                        state.reading.c.time <= latest_time,
                    )
                ):
                    if (row.tenant, row.source) not in upserts:  # replaced in this batch
                        stored[row.patient_id].append((row.seq, _reading_of(row)))
        wanted_patients = set(patients)
        for (reading_tenant, _source), (owner, readings, seq) in upserts.items():
            if reading_tenant == (tenant or state.NO_TENANT) and owner in wanted_patients:
                stored[str(owner)] += [(seq, r) for r in readings]
        with acting_as(system_for(tenant)):
            scale2 = _scale2_many(service, tenant, patients)
        scored: list[Scored] = []
        for patient_id, at, trigger in wanted:
            readings = [
                r
                for seq, r in sorted(stored[patient_id], key=lambda pair: pair[0])
                if seq <= trigger.seq and at - window <= r.time <= at
            ]
            if not any(r.time == at for r in readings):
                # None of the set's own inputs counts (entered in error, deleted, an unknown
                # unit): there is no set at this time, only the earlier ones.
                continue
            latest = latest_readings(readings)
            # A score none of whose parameters was measured says nothing: it is not written.
            scores = [
                s for s in (news2(latest, scale2=scale2[patient_id]), qsofa(latest)) if s.inputs
            ]
            scored.append(
                Scored(
                    tenant,
                    patient_id,
                    at,
                    scores,
                    encounter=trigger.encounter,
                    replaces=trigger.replaces,
                )
            )
        if scored:
            _write_tenant(service, tenant, scored, outcome)


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _write_tenant(
    service: VitalsService, tenant: str | None, scored: list[Scored], outcome: Outcome
) -> None:
    """The tenant's scores and alerts in one transaction; the board's and alerts' table writes
    and the feed's events go to ``outcome``. If the batch is refused (a patient deleted
    meanwhile), each patient is written on its own and the refused ones are logged and
    skipped: one bad record never stops scoring."""
    try:
        written = _write_items(service, tenant, scored, outcome)
    except FhirError as error:
        log.warning(
            "vitals: batch of %d scores refused (%s); writing one by one", len(scored), error
        )
        written = []
        for item in scored:
            item.keys.clear()
            item.observation_ids.clear()
            item.assessment_ids.clear()
            item.created.clear()
            try:
                written += _write_items(service, tenant, [item], outcome)
            except FhirError as refused:
                log.warning(
                    "vitals: scores of Patient/%s not written: %s", item.patient_id, refused
                )
    for item in written:
        outcome.events.append((tenant, {"type": "score", "patient": item.patient_id}))


def _write_items(
    service: VitalsService, tenant: str | None, scored: list[Scored], outcome: Outcome
) -> list[Scored]:
    events: list[dict[str, Any]] = []
    after: list[alerts.TableWrite] = []
    with acting_as(system_for(tenant)):
        context = alerts.Context.load(service, tenant, [s.patient_id for s in scored])
        with transaction(service.hub) as tx:
            _write_scores(tx, scored)
            for item in scored:
                events += alerts.evaluate(service, tx, item, after, context)
        _remember_latest(service, tenant, scored, after)
    outcome.writes += after
    outcome.events += [(tenant, event) for event in events]
    return scored


def _scale2_many(
    service: VitalsService, tenant: str | None, patients: list[str]
) -> dict[str, bool]:
    """SpO2 scale 2 per patient: an active hypercapnic respiratory failure Condition (ICD-10-CM
    J96.02/.12/.22/.92) or an active Goal targeting SpO2 88-92 %. Patients not cached are
    looked up together: one Condition and one Goal search per 100 patients."""
    result: dict[str, bool] = {}
    unknown = []
    for patient_id in patients:
        cached = service.scale2.get((tenant or state.NO_TENANT, patient_id))
        if cached is None:
            unknown.append(patient_id)
        else:
            result[patient_id] = bool(cached)
    for chunk in _chunks(unknown, 100):
        subjects = ",".join(f"Patient/{p}" for p in chunk)
        found = {p: False for p in chunk}
        for condition in search_all(
            service.hub,
            "Condition",
            [("subject", subjects), ("code", ",".join(sorted(codes.HYPERCAPNIC_CODES)))],
        ):
            subject_id = _patient_of(condition)
            if subject_id in found and _active_condition(condition):
                found[subject_id] = True
        for goal in search_all(service.hub, "Goal", [("subject", subjects)]):
            subject_id = _patient_of(goal)
            if subject_id in found and _spo2_goal(goal):
                found[subject_id] = True
        for patient_id, value in found.items():
            service.scale2.put((tenant or state.NO_TENANT, patient_id), value)
            result[patient_id] = value
    return result


def _active_condition(condition: dict[str, Any]) -> bool:
    from fhirhub.plugins.vitals.readings import codes_of

    if not codes_of(condition.get("code")) & codes.HYPERCAPNIC_CODES:
        return False
    clinical = codes_of(condition.get("clinicalStatus"))
    verification = codes_of(condition.get("verificationStatus"))
    if verification & {"entered-in-error", "refuted"}:
        return False
    return not clinical or bool(clinical & _ACTIVE_CONDITION)


def _spo2_goal(goal: dict[str, Any]) -> bool:
    from fhirhub.plugins.vitals.readings import codes_of

    if goal.get("lifecycleStatus") not in ("active", "accepted", "planned", "on-hold"):
        return False
    for target in goal.get("target") or []:
        if not codes_of(target.get("measure")) & set(codes.SPO2_CODES):
            continue
        span = target.get("detailRange") or {}
        low = (span.get("low") or {}).get("value")
        high = (span.get("high") or {}).get("value")
        if low == 88 and high == 92:
            return True
    return False


def _write_scores(tx: Transaction, scored: list[Scored]) -> None:
    """Every score Observation and RiskAssessment of the batch in one transaction Bundle, each
    created only if its identifier (the digest of its inputs) is not there yet: the matches
    of all entries are looked up together, and the same inputs never make a second score."""
    entries: list[dict[str, Any]] = []
    for item in scored:
        for score in item.scores:
            key = score_key(score, item.patient_id)
            item.keys.append(key)
            observation_url = f"urn:uuid:{uuid.uuid4()}"
            entries.append(
                {
                    "fullUrl": observation_url,
                    "resource": score_observation(score, item.patient_id, key),
                    "request": {
                        "method": "POST",
                        "url": "Observation",
                        "ifNoneExist": f"identifier={codes.SCORE_IDENTIFIER}|obs-{key}",
                    },
                }
            )
            assessment = risk_assessment(score, item.patient_id, key, "placeholder")
            assessment["basis"][0] = {"reference": observation_url}
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": assessment,
                    "request": {
                        "method": "POST",
                        "url": "RiskAssessment",
                        "ifNoneExist": f"identifier={codes.SCORE_IDENTIFIER}|ra-{key}",
                    },
                }
            )
    # Built here from validated parts (tests/plugins/vitals check them against R4): the
    # structural walk is not repeated for every score.
    response = tx.bundle(
        {"resourceType": "Bundle", "type": "transaction", "entry": entries}, validated=True
    )
    answers = iter(response["entry"])
    for item in scored:
        for _score in item.scores:
            observation, assessment = next(answers)["response"], next(answers)["response"]
            item.observation_ids.append(str(observation["location"]).split("/")[1])
            item.assessment_ids.append(str(assessment["location"]).split("/")[1])
            item.created.append(str(observation["status"]).startswith("201"))


def _remember_latest(
    service: VitalsService,
    tenant: str | None,
    scored: list[Scored],
    after: list[alerts.TableWrite],
) -> None:
    """The ward board's row of each patient (sets in time order: the newest wins, each moves
    the trend on), as a write appended to ``after``."""
    key = tenant or state.NO_TENANT
    patients = sorted({item.patient_id for item in scored})
    encounters = {item.patient_id: item.encounter for item in scored}
    now = time.time()
    with service.db.read() as conn:
        current: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(patients, 500):
            for stored in conn.execute(
                select(state.latest).where(
                    state.latest.c.tenant == key, state.latest.c.patient_id.in_(chunk)
                )
            ):
                current[stored.patient_id] = dict(stored._mapping)
    names = _names(service, tenant, [p for p in patients if p not in current])
    places = {p: _place(service, tenant, p, encounters[p]) for p in patients}
    inserts: dict[str, dict[str, Any]] = {}
    updates: dict[str, dict[str, Any]] = {}
    for item in sorted(scored, key=lambda i: (i.patient_id, i.at)):
        patient_id = item.patient_id
        values: dict[str, Any] = {"effective": item.at.astimezone(UTC).isoformat()}
        for score, ra_id in zip(item.scores, item.assessment_ids, strict=True):
            if score.method == "NEWS2":
                values.update(
                    news2_total=score.total,
                    news2_risk=score.risk,
                    news2_partial=1 if score.partial else 0,
                    news2_time=now,
                    risk_assessment_id=ra_id,
                )
            else:
                values.update(qsofa_total=score.total, qsofa_risk=score.risk)
        if places[patient_id]:
            values["location"] = places[patient_id]
        row = current.get(patient_id)
        if row is None:
            row = {
                "tenant": key,
                "patient_id": patient_id,
                "patient_name": names.get(patient_id, ""),
                "location": "",
                "news2_previous": None,
                "news2_total": None,
                "effective": "",
            }
            inserts[patient_id] = row
        elif row["effective"] > (item.replaces or item.at).astimezone(UTC).isoformat():
            # An older set arriving late: the board keeps the newer one (but a set whose
            # inputs were all removed gives way to the earlier one that replaces it).
            continue
        else:
            updates.setdefault(patient_id, row)
        if (
            row.get("news2_total") is not None
            and "news2_total" in values
            and row["effective"] < values["effective"]
        ):
            values["news2_previous"] = row["news2_total"]
        row.update(values)
        current[patient_id] = row

    def write(conn: Connection) -> None:
        # A row another writer (the startup backfill) added meanwhile: the newer set wins.
        for chunk in _chunks(sorted(inserts), 500):
            for taken in conn.execute(
                select(state.latest.c.patient_id, state.latest.c.effective).where(
                    state.latest.c.tenant == key, state.latest.c.patient_id.in_(chunk)
                )
            ):
                row = inserts.pop(taken.patient_id)
                if taken.effective <= row["effective"]:
                    updates[taken.patient_id] = row
        if inserts:
            conn.execute(state.latest.insert(), list(inserts.values()))
        for patient_id, row in updates.items():
            if patient_id in inserts:
                continue
            conn.execute(
                state.latest.update()
                .where(state.latest.c.tenant == key, state.latest.c.patient_id == patient_id)
                .values({k: v for k, v in row.items() if k not in ("tenant", "patient_id")})
            )

    after.append(write)


def _names(service: VitalsService, tenant: str | None, patients: list[str]) -> dict[str, str]:
    """Display names of new board rows: one Patient search per 100 patients."""
    names: dict[str, str] = {}
    with acting_as(system_for(tenant)):
        for chunk in _chunks(patients, 100):
            for patient in search(
                service.hub, "Patient", [("_id", ",".join(chunk)), ("_count", "100")]
            ):
                text = ""
                for name in patient.get("name") or []:
                    given = " ".join(name.get("given") or [])
                    text = str(name.get("text") or f"{given} {name.get('family') or ''}".strip())
                    break
                names[str(patient.get("id"))] = text
    return names


def _place(
    service: VitalsService, tenant: str | None, patient_id: str, encounter: str | None
) -> str:
    """The ward of the patient: the first location of the Observation's Encounter."""
    from fhirhub.sdk import read

    if not encounter or not encounter.startswith("Encounter/"):
        return ""
    key = (tenant or "", encounter)
    cached = service.places.get(key)
    if cached is not None:
        return str(cached)
    place = ""
    try:
        with acting_as(system_for(tenant)):
            found = read(service.hub, "Encounter", encounter.split("/", 1)[1])
        for location in found.get("location") or []:
            ref = location.get("location") or {}
            place = str(ref.get("display") or ref.get("reference") or "")
            if place:
                break
    except FhirError:
        pass
    service.places.put(key, place)
    return place


def backfill_board(service: VitalsService, limit: int = 2000) -> int:
    """Score the newest vital-signs set of each patient once, when the board is empty (a hub
    that had vitals before the plugin was enabled, the demo): the consumer itself starts at
    the head of the log, so history is not rescored. Old sets raise no alert
    (``alert_max_age_minutes``). Returns the patients scored."""
    from fhirhub.sdk import SYSTEM, tenant_of

    with service.db.read() as conn:
        if conn.execute(select(state.latest.c.patient_id).limit(1)).first() is not None:
            return 0
    with acting_as(SYSTEM):
        found = search(
            service.hub,
            "Observation",
            [("code", _INPUT_CODE_LIST), ("_sort", "-date"), ("_count", str(limit))],
        )
    upserts: dict[tuple[str, str], tuple[str | None, list[Reading], int]] = {}
    triggers: dict[tuple[str | None, str, datetime], Trigger] = {}
    newest: dict[tuple[str | None, str], datetime] = {}
    for observation in found:
        patient_id = _patient_of(observation)
        when = effective_time(observation)
        if patient_id is None or when is None:
            continue
        tenant = tenant_of(observation)
        version = str((observation.get("meta") or {}).get("versionId") or "")
        source = f"Observation/{observation.get('id')}"
        # seq 0: before anything the consumer delivers, so its own scores always see these.
        upserts[(tenant or state.NO_TENANT, source)] = (
            patient_id,
            readings_of(observation, version),
            0,
        )
        if (tenant, patient_id) not in newest:
            newest[(tenant, patient_id)] = when
            encounter = (observation.get("encounter") or {}).get("reference")
            triggers[(tenant, patient_id, when)] = Trigger(0, encounter)
    if upserts:
        _store_readings(service, upserts)
    outcome = Outcome()
    if triggers:
        _score_all(service, triggers, {}, outcome)
    outcome.finish(service)
    return len(triggers)


def clear_readings(service: VitalsService) -> None:
    """``fhirhub replay``: the readings projection is rebuilt from the log. Scores, alerts and
    the board stay: the replayed scores match the stored ones by identifier, and old sets
    raise no alert."""
    with service.db.begin() as conn:
        conn.execute(state.reading.delete())
