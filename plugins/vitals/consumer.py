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
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select

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
    system_for,
    transaction,
)

log = logging.getLogger("fhirhub.vitals")

TYPES = frozenset({"Observation", "Condition", "Goal", "Task"})
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
    encounter: str | None = None


def handle_versions(service: VitalsService, versions: Sequence[StoredVersion]) -> None:
    """The consumer's ``handle`` (module docstring)."""
    triggers: dict[tuple[str | None, str, datetime], str | None] = {}
    tasks: list[tuple[str | None, dict[str, Any]]] = []
    for version in versions:
        if version.deleted or version.content is None:
            continue
        if version.resource_type == "Task":
            task = orjson.loads(version.content)
            if alerts.is_alert_task(task):
                tasks.append((version.tenant, task))
            continue
        resource = orjson.loads(version.content)
        patient_id = _patient_of(resource)
        if patient_id is None:
            continue
        if version.resource_type in ("Condition", "Goal"):
            service.scale2.drop((version.tenant or "", patient_id))
            continue
        if not is_vital_input(resource):
            continue
        when = effective_time(resource)
        if when is not None:
            encounter = (resource.get("encounter") or {}).get("reference")
            triggers[(version.tenant, patient_id, when)] = encounter
    if triggers:
        _score_all(service, triggers)
    for tenant, task in tasks:
        alerts.task_updated(service, tenant, task)


def _patient_of(resource: dict[str, Any]) -> str | None:
    for element in ("subject", "patient"):
        ref = (resource.get(element) or {}).get("reference")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
    return None


def _score_all(
    service: VitalsService, triggers: dict[tuple[str | None, str, datetime], str | None]
) -> None:
    by_tenant: dict[str | None, list[Scored]] = defaultdict(list)
    for (tenant, patient_id, at), encounter in sorted(
        triggers.items(), key=lambda item: (item[0][0] or "", item[0][1], item[0][2])
    ):
        with acting_as(system_for(tenant)):
            readings = _readings(service, patient_id, at)
            if not readings:
                continue
            latest = latest_readings(readings)
            scale2 = _scale2(service, tenant, patient_id)
        # A score none of whose parameters was measured says nothing: it is not written.
        scores = [s for s in (news2(latest, scale2=scale2), qsofa(latest)) if s.inputs]
        by_tenant[tenant].append(Scored(tenant, patient_id, at, scores, encounter=encounter))
    for tenant, scored in by_tenant.items():
        events: list[dict[str, Any]] = []
        after: list[alerts.TableWrite] = []
        with acting_as(system_for(tenant)):
            with transaction(service.hub) as tx:
                for item in scored:
                    _write_scores(tx, item)
                    events += alerts.evaluate(service, tx, item, after)
            _remember_latest(service, tenant, scored, after)
        feed = feed_of(service.hub)
        for item in scored:
            feed.publish(tenant, {"type": "score", "patient": item.patient_id})
        for event in events:
            feed.publish(tenant, event)


def _readings(service: VitalsService, patient_id: str, at: datetime) -> list[Reading]:
    start = at - timedelta(minutes=service.settings.window_minutes)
    found = search(
        service.hub,
        "Observation",
        [
            ("subject", f"Patient/{patient_id}"),
            ("code", _INPUT_CODE_LIST),
            ("date", f"ge{start.isoformat()}"),
            ("date", f"le{at.isoformat()}"),
            ("_count", "500"),
        ],
    )
    readings: list[Reading] = []
    for observation in found:
        version = str((observation.get("meta") or {}).get("versionId") or "")
        readings += [r for r in readings_of(observation, version) if start <= r.time <= at]
    return readings


def _scale2(service: VitalsService, tenant: str | None, patient_id: str) -> bool:
    """SpO2 scale 2: an active hypercapnic respiratory failure Condition (ICD-10-CM
    J96.02/.12/.22/.92) or an active Goal targeting SpO2 88-92 %."""
    key = (tenant or "", patient_id)
    cached = service.scale2.get(key)
    if cached is not None:
        return bool(cached)
    subject = f"Patient/{patient_id}"
    conditions = search(
        service.hub,
        "Condition",
        [
            ("subject", subject),
            ("code", ",".join(sorted(codes.HYPERCAPNIC_CODES))),
            ("_count", "20"),
        ],
    )
    result = any(_active_condition(c) for c in conditions)
    if not result:
        goals = search(service.hub, "Goal", [("subject", subject), ("_count", "50")])
        result = any(_spo2_goal(g) for g in goals)
    service.scale2.put(key, result)
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


def _write_scores(tx: Transaction, item: Scored) -> None:
    for score in item.scores:
        key = score_key(score, item.patient_id)
        observation = score_observation(score, item.patient_id, key)
        made = tx.create(
            observation, if_none_exist=f"identifier={codes.SCORE_IDENTIFIER}|obs-{key}"
        )
        observation_id = made.version.resource_id
        assessment = risk_assessment(score, item.patient_id, key, observation_id)
        ra = tx.create(assessment, if_none_exist=f"identifier={codes.SCORE_IDENTIFIER}|ra-{key}")
        item.keys.append(key)
        item.observation_ids.append(observation_id)
        item.assessment_ids.append(ra.version.resource_id)


def _remember_latest(
    service: VitalsService,
    tenant: str | None,
    scored: list[Scored],
    after: list[alerts.TableWrite],
) -> None:
    """Update the ward board's row of each patient (the newest set wins), and run the alert
    table's writes, in one transaction of the plugin's tables."""
    rows = {}
    for item in scored:
        rows[item.patient_id] = item  # sorted by time: the last is the newest
    now = time.time()
    names = {p: _name(service, tenant, p) for p in rows}
    places = {p: _place(service, tenant, p, item.encounter) for p, item in rows.items()}
    with service.db.begin() as conn:
        for write in after:
            write(conn)
        for item in scored:  # per patient in time order: each set moves the trend on
            patient_id = item.patient_id
            by_method = {
                s.method: (s, ra) for s, ra in zip(item.scores, item.assessment_ids, strict=True)
            }
            key = (tenant or state.NO_TENANT, patient_id)
            current = conn.execute(
                select(state.latest).where(
                    state.latest.c.tenant == key[0], state.latest.c.patient_id == patient_id
                )
            ).first()
            values: dict[str, Any] = {"effective": item.at.astimezone(UTC).isoformat()}
            if "NEWS2" in by_method:
                news, ra_id = by_method["NEWS2"]
                values.update(
                    news2_total=news.total,
                    news2_risk=news.risk,
                    news2_partial=1 if news.partial else 0,
                    news2_time=now,
                    risk_assessment_id=ra_id,
                )
            if "qSOFA" in by_method:
                q, _ = by_method["qSOFA"]
                values.update(qsofa_total=q.total, qsofa_risk=q.risk)
            place = places[patient_id]
            if place:
                values["location"] = place
            if current is None:
                conn.execute(
                    state.latest.insert().values(
                        tenant=key[0],
                        patient_id=patient_id,
                        patient_name=names[patient_id],
                        location=place or "",
                        **{k: v for k, v in values.items() if k != "location"},
                    )
                )
            elif current.effective <= values["effective"]:
                if (
                    current.news2_total is not None
                    and "news2_total" in values
                    and current.effective != values["effective"]
                ):
                    values["news2_previous"] = current.news2_total
                conn.execute(
                    state.latest.update()
                    .where(state.latest.c.tenant == key[0], state.latest.c.patient_id == patient_id)
                    .values(**values)
                )


def _name(service: VitalsService, tenant: str | None, patient_id: str) -> str:
    from fhirhub.sdk import read

    cached = service.names.get((tenant or "", patient_id))
    if cached is not None:
        return str(cached)
    try:
        with acting_as(system_for(tenant)):
            patient = read(service.hub, "Patient", patient_id)
    except FhirError:
        return ""
    text = ""
    for name in patient.get("name") or []:
        given = " ".join(name.get("given") or [])
        text = str(name.get("text") or f"{given} {name.get('family') or ''}".strip())
        break
    service.names.put((tenant or "", patient_id), text)
    return text


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
    triggers: dict[tuple[str | None, str, datetime], str | None] = {}
    newest: set[tuple[str | None, str]] = set()
    for observation in found:
        patient_id = _patient_of(observation)
        when = effective_time(observation)
        if patient_id is None or when is None:
            continue
        tenant = tenant_of(observation)
        if (tenant, patient_id) in newest:
            continue
        newest.add((tenant, patient_id))
        triggers[(tenant, patient_id, when)] = (observation.get("encounter") or {}).get("reference")
    if triggers:
        _score_all(service, triggers)
    return len(triggers)
