"""Alerts, escalation and acknowledgment (docs/vitals.md, "Alerts and escalation").

A score at or above the alert threshold opens an *episode* for its patient and kind (NEWS2 or
qSOFA): a ``Flag`` on the patient, a ``Communication`` to the first of the escalation chain
and a ``Task`` for the response the RCP chart asks for, with its deadline; each step gets a
``Provenance``. While the episode is open no second alert is raised (a higher band updates the
open one and tells the chain again); a complete score below the threshold resolves it (the
Flag is closed, an unacknowledged Task cancelled). A silenced patient raises none.

Unacknowledged, the episode escalates along the chain at the configured intervals
(:func:`escalate_due`, a Schedule). Acknowledgment, by the dashboard's button or by updating
the Task to ``accepted``/``in-progress``/``completed``, stops it and records who and when.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from fhirhub.plugins.vitals import codes, state
from fhirhub.plugins.vitals.delivery import feed_of
from fhirhub.sdk import (
    SYSTEM,
    Access,
    FhirError,
    Transaction,
    acting_as,
    current_access,
    format_instant,
    system_for,
    transaction,
    with_tenant,
)

if TYPE_CHECKING:
    from fhirhub.plugins.vitals.consumer import Scored
    from fhirhub.plugins.vitals.service import VitalsService

#: A write to the plugin's tables, run after the FHIR transaction commits.
TableWrite = Callable[[Connection], Any]

NEWS2_ORDER = ("low", "low-medium", "medium", "high")
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
ACKNOWLEDGED_STATUSES = frozenset({"accepted", "in-progress", "completed"})
PLUGIN_AGENT = {"display": "fhirhub vitals"}

#: The RCP chart's clinical response and monitoring frequency per band.
RESPONSE = {
    "low": ("Ward-based response", "Minimum 4-12 hourly monitoring"),
    "low-medium": (
        "Urgent ward-based response",
        "Minimum 1-hourly monitoring; registered nurse to inform the medical team caring for "
        "the patient, who will review and decide whether escalation of care is necessary",
    ),
    "medium": (
        "Key threshold for urgent response",
        "Minimum 1-hourly monitoring; registered nurse to inform the medical team immediately; "
        "urgent assessment by a clinician with competencies in the care of acutely ill patients",
    ),
    "high": (
        "Urgent or emergency response",
        "Continuous monitoring of vital signs; registered nurse to inform the medical team "
        "immediately (at least specialist registrar level); emergency assessment by a team "
        "with critical-care competencies, usually transfer to a higher level of care",
    ),
    "positive": (
        "Sepsis screen positive",
        "qSOFA 2 or more: assess for sepsis and organ dysfunction now; consider escalation",
    ),
}
PRIORITY = {"low-medium": "urgent", "medium": "asap", "high": "stat", "positive": "asap"}


def is_alert_task(task: dict[str, Any]) -> bool:
    return any(i.get("system") == codes.ALERT_IDENTIFIER for i in task.get("identifier") or [])


def _alerting(service: VitalsService, kind: str, risk: str) -> bool:
    if kind == "qsofa":
        return service.settings.qsofa_alerts and risk == "positive"
    return NEWS2_ORDER.index(risk) >= NEWS2_ORDER.index(service.settings.alert_from)


def _rank(kind: str, risk: str) -> int:
    return NEWS2_ORDER.index(risk) if kind == "news2" else int(risk == "positive")


def _recipient(entry: str) -> dict[str, str]:
    return {"reference": entry} if "/" in entry else {"display": entry}


def agent(access: Access | None) -> dict[str, Any]:
    if access is None or access.subject == "system":
        return {
            "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "assembler"}]},
            "who": dict(PLUGIN_AGENT),
        }
    return {
        "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "performer"}]},
        "who": {
            "identifier": {"system": "urn:fhirhub:subject", "value": access.subject},
            "display": access.subject,
        },
    }


def provenance(
    tx: Transaction, targets: list[str], activity: str, by: Access | None = None
) -> None:
    """Record one escalation step (``activity``: a text) as a Provenance, as the system."""
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": t} for t in targets],
        "recorded": format_instant(time.time_ns() // 1000),
        "activity": {"text": activity},
        "agent": [agent(by)],
    }
    tenant = current_access().tenant
    if tenant is not None:
        with_tenant(resource, tenant)
    with acting_as(system_for(tenant)):
        tx.create(resource)


def _editable(resource: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in resource.items() if k != "meta"}
    security = (resource.get("meta") or {}).get("security")
    if security:
        out["meta"] = {"security": security}
    return out


def _now_text(now: float) -> str:
    return format_instant(int(now * 1_000_000))


# -- raising and resolving -------------------------------------------------------------------


@dataclass
class Context:
    """The open episodes and silenced patients of one batch's patients, read in two queries;
    kept up to date as the batch raises and resolves episodes."""

    episodes: dict[tuple[str, str], Any]
    silenced: set[str]

    @classmethod
    def load(cls, service: VitalsService, tenant: str | None, patients: list[str]) -> Context:
        now = time.time()
        key = tenant or state.NO_TENANT
        episodes: dict[tuple[str, str], Any] = {}
        silenced: set[str] = set()
        unique = sorted(set(patients))
        with service.db.read() as conn:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                for row in conn.execute(
                    select(state.alert).where(
                        state.alert.c.tenant == key,
                        state.alert.c.patient_id.in_(chunk),
                        state.alert.c.status != "resolved",
                    )
                ):
                    episodes[(row.patient_id, row.kind)] = row
                silenced.update(
                    r.patient_id
                    for r in conn.execute(
                        select(state.silence.c.patient_id).where(
                            state.silence.c.tenant == key,
                            state.silence.c.patient_id.in_(chunk),
                            state.silence.c.until > now,
                        )
                    )
                )
        return cls(episodes, silenced)


def evaluate(
    service: VitalsService,
    tx: Transaction,
    item: Scored,
    after: list[TableWrite],
    context: Context,
) -> list[dict[str, Any]]:
    """Raise, upgrade or resolve the patient's alert episodes for freshly written scores;
    returns the events for the live feed. The episode table's writes go to ``after``, run
    once the FHIR transaction committed (SQLite has one writer: it is held until then)."""
    events = []
    now = time.time()
    too_old = item.at.timestamp() < now - service.settings.alert_max_age_minutes * 60
    for index, score in enumerate(item.scores):
        kind = "news2" if score.method == "NEWS2" else "qsofa"
        episode = context.episodes.get((item.patient_id, kind))
        ra_id = item.assessment_ids[index]
        key = item.keys[index]
        if _alerting(service, kind, score.risk):
            if too_old or item.patient_id in context.silenced:
                continue
            if episode is None:
                event = _raise(service, tx, item, key, kind, score.risk, score.total, ra_id, after)
                context.episodes[(item.patient_id, kind)] = SimpleNamespace(
                    flag_id=event["flag"],
                    task_id=event["task"],
                    patient_id=item.patient_id,
                    kind=kind,
                    risk=score.risk,
                    total=score.total,
                    level=0,
                    status="open",
                )
                events.append(event)
            elif _rank(kind, score.risk) > _rank(kind, episode.risk):
                events.append(_upgrade(service, tx, episode, score.risk, score.total, ra_id, after))
                context.episodes[(item.patient_id, kind)] = SimpleNamespace(
                    **{
                        **_fields(episode),
                        "risk": score.risk,
                        "total": score.total,
                        "status": "open",
                    }
                )
        elif episode is not None and not score.partial:
            events.append(_resolve(service, tx, episode, score.total, ra_id, after))
            context.episodes.pop((item.patient_id, kind), None)
    return events


def _fields(episode: Any) -> dict[str, Any]:
    names = ("flag_id", "task_id", "patient_id", "kind", "risk", "total", "level", "status")
    return {name: getattr(episode, name) for name in names}


def _title(kind: str, risk: str, total: int) -> str:
    return f"NEWS2 {total} ({risk} risk)" if kind == "news2" else f"qSOFA {total} (positive)"


def _raise(
    service: VitalsService,
    tx: Transaction,
    item: Scored,
    key: str,
    kind: str,
    risk: str,
    total: int,
    ra_id: str,
    after: list[TableWrite],
) -> dict[str, Any]:
    now = time.time()
    patient = f"Patient/{item.patient_id}"
    title = _title(kind, risk, total)
    # The Flag and Task of a score are only ever written in the transaction that wrote the
    # score: if this one created it, they cannot exist yet, and the conditional creates' two
    # searches are saved. A score found already written (a delivery repeated) checks them.
    fresh = item.created[item.keys.index(key)] if len(item.created) == len(item.keys) else False

    def conditional(value: str) -> str | None:
        return None if fresh else f"identifier={codes.ALERT_IDENTIFIER}|{value}"

    response, action = RESPONSE[risk]
    chain = service.settings.escalation_chain
    flag = tx.create(
        {
            "resourceType": "Flag",
            "identifier": [{"system": codes.ALERT_IDENTIFIER, "value": f"flag-{key}"}],
            "status": "active",
            "category": [{"coding": [{"system": FLAG_CATEGORY, "code": "clinical"}]}],
            "code": {
                "coding": [{"system": codes.LOCAL_SYSTEM, "code": f"{kind}-alert"}],
                "text": title,
            },
            "subject": {"reference": patient},
            "period": {"start": _now_text(now)},
        },
        if_none_exist=conditional(f"flag-{key}"),
    )
    flag_id = flag.version.resource_id
    deadline = now + service.settings.response_minutes.get(risk, 30.0) * 60
    task = tx.create(
        {
            "resourceType": "Task",
            "identifier": [{"system": codes.ALERT_IDENTIFIER, "value": f"task-{key}"}],
            "status": "requested",
            "intent": "order",
            "priority": PRIORITY.get(risk, "urgent"),
            "code": {
                "coding": [{"system": codes.LOCAL_SYSTEM, "code": f"{kind}-response"}],
                "text": response,
            },
            "description": f"{title}: {action}",
            "focus": {"reference": f"Flag/{flag_id}"},
            "for": {"reference": patient},
            "reasonReference": {"reference": f"RiskAssessment/{ra_id}"},
            "authoredOn": _now_text(now),
            "owner": _recipient(chain[0]) if chain else {"display": "ward"},
            "businessStatus": {"text": f"level 0: {chain[0] if chain else 'ward'}"},
            "restriction": {"period": {"end": _now_text(deadline)}},
        },
        if_none_exist=conditional(f"task-{key}"),
    )
    task_id = task.version.resource_id
    comm = _communicate(
        tx, patient, chain[0] if chain else "ward", title, action, flag_id, ra_id, risk
    )
    provenance(
        tx,
        [f"Flag/{flag_id}", f"Task/{task_id}", f"Communication/{comm}"],
        f"vitals alert raised: {title}",
    )
    intervals = service.settings.escalation_minutes
    next_at = now + intervals[0] * 60 if intervals and len(chain) > 1 else None

    def insert(conn: Connection) -> None:
        # A Flag created just now has no episode row yet; an older one may have.
        exists = (
            None
            if fresh
            else conn.execute(
                select(state.alert.c.flag_id).where(state.alert.c.flag_id == flag_id)
            ).first()
        )
        if exists is None:
            conn.execute(
                state.alert.insert().values(
                    flag_id=flag_id,
                    tenant=item.tenant or state.NO_TENANT,
                    patient_id=item.patient_id,
                    kind=kind,
                    risk=risk,
                    total=total,
                    task_id=task_id,
                    status="open",
                    level=0,
                    raised_at=now,
                    next_at=next_at,
                )
            )

    after.append(insert)
    return {
        "type": "alert",
        "patient": item.patient_id,
        "flag": flag_id,
        "task": task_id,
        "title": title,
        "risk": risk,
        "at": now,
    }


def _communicate(
    tx: Transaction,
    patient: str,
    to: str,
    title: str,
    action: str,
    flag_id: str,
    ra_id: str,
    risk: str,
) -> str:
    made = tx.create(
        {
            "resourceType": "Communication",
            "status": "completed",
            "category": [{"coding": [{"system": COMMUNICATION_CATEGORY, "code": "alert"}]}],
            "priority": PRIORITY.get(risk, "urgent"),
            "subject": {"reference": patient},
            "about": [{"reference": f"Flag/{flag_id}"}, {"reference": f"RiskAssessment/{ra_id}"}],
            "sent": _now_text(time.time()),
            "recipient": [_recipient(to)],
            "sender": dict(PLUGIN_AGENT),
            "payload": [{"contentString": f"{title}. {action}."}],
        }
    )
    return made.version.resource_id


def _upgrade(
    service: VitalsService,
    tx: Transaction,
    episode: Any,
    risk: str,
    total: int,
    ra_id: str,
    after: list[TableWrite],
) -> dict[str, Any]:
    """A higher band within an open episode: the Flag and Task say so, the chain is told."""
    kind = episode.kind
    title = _title(kind, risk, total)
    response, action = RESPONSE[risk]
    flag = _editable(tx.read("Flag", episode.flag_id))
    flag["code"]["text"] = title
    tx.update(flag)
    task = _editable(tx.read("Task", episode.task_id))
    task["priority"] = PRIORITY.get(risk, "urgent")
    task["code"]["text"] = response
    task["description"] = f"{title}: {action}"
    task["reasonReference"] = {"reference": f"RiskAssessment/{ra_id}"}
    now = time.time()
    deadline = now + service.settings.response_minutes.get(risk, 30.0) * 60
    task["restriction"] = {"period": {"end": _now_text(deadline)}}
    if episode.status == "acknowledged":
        task["status"] = "requested"  # a worse state needs a new acknowledgment
    tx.update(task)
    chain = service.settings.escalation_chain
    to = chain[min(episode.level, len(chain) - 1)] if chain else "ward"
    patient = f"Patient/{episode.patient_id}"
    comm = _communicate(tx, patient, to, title, action, episode.flag_id, ra_id, risk)
    provenance(
        tx,
        [f"Flag/{episode.flag_id}", f"Task/{episode.task_id}", f"Communication/{comm}"],
        f"vitals alert worsened: {title}",
    )
    intervals = service.settings.escalation_minutes
    level = episode.level
    next_at = (
        now + intervals[min(level, len(intervals) - 1)] * 60
        if intervals and level + 1 < len(chain)
        else None
    )
    after.append(
        lambda conn: conn.execute(
            state.alert.update()
            .where(state.alert.c.flag_id == episode.flag_id)
            .values(
                risk=risk,
                total=total,
                status="open",
                next_at=next_at,
                acknowledged_at=None,
                acknowledged_by=None,
            )
        )
    )
    return {
        "type": "alert",
        "patient": episode.patient_id,
        "flag": episode.flag_id,
        "title": title,
        "risk": risk,
        "at": now,
    }


def _resolve(
    service: VitalsService,
    tx: Transaction,
    episode: Any,
    total: int,
    ra_id: str,
    after: list[TableWrite],
) -> dict[str, Any]:
    """A complete score below the threshold: the Flag closes, an open Task is cancelled."""
    now = time.time()
    flag = _editable(tx.read("Flag", episode.flag_id))
    flag["status"] = "inactive"
    flag.setdefault("period", {})["end"] = _now_text(now)
    tx.update(flag)
    task = _editable(tx.read("Task", episode.task_id))
    if task.get("status") not in ("completed", "cancelled", "failed"):
        task["status"] = "completed" if episode.status == "acknowledged" else "cancelled"
        task["statusReason"] = {"text": f"score fell below the alert threshold ({total})"}
        tx.update(task)
    provenance(
        tx,
        [f"Flag/{episode.flag_id}", f"Task/{episode.task_id}", f"RiskAssessment/{ra_id}"],
        f"vitals alert resolved: score {total} below the threshold",
    )
    after.append(
        lambda conn: conn.execute(
            state.alert.update()
            .where(state.alert.c.flag_id == episode.flag_id)
            .values(status="resolved", resolved_at=now, next_at=None)
        )
    )
    return {"type": "resolved", "patient": episode.patient_id, "flag": episode.flag_id, "at": now}


# -- escalation and acknowledgment -----------------------------------------------------------


def escalate_due(service: VitalsService) -> int:
    """Move every unacknowledged episode that is due one step up the chain (a Schedule)."""
    now = time.time()
    with service.db.read() as conn:
        due = conn.execute(
            select(state.alert).where(
                state.alert.c.status == "open",
                state.alert.c.next_at.is_not(None),
                state.alert.c.next_at <= now,
            )
        ).all()
    chain = service.settings.escalation_chain
    intervals = service.settings.escalation_minutes
    for episode in due:
        tenant = episode.tenant or None
        level = episode.level + 1
        if level >= len(chain):
            continue
        to = chain[level]
        with acting_as(system_for(tenant)), transaction(service.hub) as tx:
            try:
                task = _editable(tx.read("Task", episode.task_id))
            except FhirError:
                continue
            if task.get("status") in ACKNOWLEDGED_STATUSES | {"cancelled", "failed"}:
                continue
            task["owner"] = _recipient(to)
            task["businessStatus"] = {"text": f"level {level}: {to}"}
            task["priority"] = "stat"
            tx.update(task)
            title = _title(episode.kind, episode.risk, episode.total)
            comm = _communicate(
                tx,
                f"Patient/{episode.patient_id}",
                to,
                f"ESCALATED to {to}: {title}",
                "Not acknowledged in time",
                episode.flag_id,
                str(task.get("reasonReference", {}).get("reference", "/")).split("/")[-1],
                episode.risk,
            )
            provenance(
                tx,
                [f"Task/{episode.task_id}", f"Communication/{comm}"],
                f"vitals alert escalated to {to} (level {level}), unacknowledged",
            )
        next_at = (
            now + intervals[min(level, len(intervals) - 1)] * 60
            if intervals and level + 1 < len(chain)
            else None
        )
        with service.db.begin() as conn:
            conn.execute(
                state.alert.update()
                .where(state.alert.c.flag_id == episode.flag_id, state.alert.c.status == "open")
                .values(level=level, next_at=next_at)
            )
        feed_of(service.hub).publish(
            tenant,
            {
                "type": "escalated",
                "patient": episode.patient_id,
                "flag": episode.flag_id,
                "level": level,
                "to": to,
                "at": now,
            },
        )
    return len(due)


def acknowledge(service: VitalsService, flag_id: str, by: Access) -> dict[str, Any]:
    """Acknowledge an episode as ``by`` (the dashboard's button): the Task is ``accepted``
    with the acknowledging user as owner, escalation stops, a Provenance records it."""
    tenant = by.tenant or state.NO_TENANT
    with service.db.read() as conn:
        episode = conn.execute(select(state.alert).where(state.alert.c.flag_id == flag_id)).first()
    if episode is None or (by.tenant is not None and episode.tenant != tenant):
        raise FhirError(404, f"No vitals alert {flag_id}", code="not-found")
    if episode.status == "resolved":
        raise FhirError(409, "The alert is already resolved", code="conflict")
    now = time.time()
    with transaction(service.hub) as tx:
        task = _editable(tx.read("Task", episode.task_id))
        task["status"] = "accepted"
        task["owner"] = {
            "identifier": {"system": "urn:fhirhub:subject", "value": by.subject},
            "display": by.subject,
        }
        task["businessStatus"] = {"text": f"acknowledged by {by.subject}"}
        task["lastModified"] = _now_text(now)
        tx.update(task)
        provenance(
            tx,
            [f"Task/{episode.task_id}", f"Flag/{flag_id}"],
            f"vitals alert acknowledged by {by.subject}",
            by,
        )
    _record_ack(service, flag_id, by.subject, now)
    return {"flag": flag_id, "acknowledged_by": by.subject, "acknowledged_at": now}


def _record_ack(service: VitalsService, flag_id: str, by: str, now: float) -> None:
    with service.db.begin() as conn:
        row = conn.execute(
            select(state.alert.c.tenant, state.alert.c.patient_id, state.alert.c.status).where(
                state.alert.c.flag_id == flag_id
            )
        ).first()
        if row is None or row.status != "open":
            return
        conn.execute(
            state.alert.update()
            .where(state.alert.c.flag_id == flag_id)
            .values(status="acknowledged", acknowledged_at=now, acknowledged_by=by, next_at=None)
        )
    feed_of(service.hub).publish(
        row.tenant or None,
        {"type": "acknowledged", "patient": row.patient_id, "flag": flag_id, "by": by, "at": now},
    )


def task_updated(service: VitalsService, tenant: str | None, task: dict[str, Any]) -> None:
    """A client updated an alert Task to accepted/in-progress/completed: that acknowledges it
    (who: the Task's owner as the client set it)."""
    if task.get("status") not in ACKNOWLEDGED_STATUSES:
        return
    focus = str((task.get("focus") or {}).get("reference") or "")
    if not focus.startswith("Flag/"):
        return
    owner = task.get("owner") or {}
    by = str(
        owner.get("display")
        or (owner.get("identifier") or {}).get("value")
        or owner.get("reference")
        or "unknown"
    )
    _record_ack(service, focus.split("/", 1)[1], by, time.time())


def silence_patient(
    service: VitalsService, patient_id: str, minutes: float, reason: str, by: Access
) -> float:
    """Silence a patient's new alerts for ``minutes`` (open ones go on) with a reason."""
    until = time.time() + minutes * 60
    tenant = by.tenant or state.NO_TENANT
    with service.db.begin() as conn:
        conn.execute(
            state.silence.delete().where(
                state.silence.c.tenant == tenant, state.silence.c.patient_id == patient_id
            )
        )
        conn.execute(
            state.silence.insert().values(
                tenant=tenant, patient_id=patient_id, until=until, reason=reason, by=by.subject
            )
        )
    with transaction(service.hub) as tx:
        provenance(
            tx,
            [f"Patient/{patient_id}"],
            f"vitals alerts silenced for {minutes:g} min by {by.subject}: {reason}",
            by,
        )
    return until


__all__ = ["SYSTEM", "acknowledge", "escalate_due", "evaluate", "silence_patient"]
