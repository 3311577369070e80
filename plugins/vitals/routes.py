"""The plugin's HTTP routes under ``/plugins/vitals``: the dashboard page (no data in it), the
board and alert lists (JSON), the live event stream (Server-Sent Events), acknowledgment,
silencing and the CSV export.

Every data route decides with the caller's access: its tenant's rows only (the system sees
all), a patient-context token only its own patient, read scope on RiskAssessment to see
scores, update scope on Task to acknowledge or silence.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from sqlalchemy import select

from fhirhub.plugins.vitals import alerts, state
from fhirhub.plugins.vitals.chart import observation_chart, workbook
from fhirhub.plugins.vitals.delivery import CHANNEL, tenant_event
from fhirhub.plugins.vitals.i18n import LANGUAGES, messages
from fhirhub.plugins.vitals.service import VitalsService
from fhirhub.sdk import Access, FhirError, current_access, invalid, live_queue, search

STATIC = Path(__file__).resolve().parent / "static"
KEEPALIVE_S = 15.0


def _reader() -> Access:
    access = current_access()
    access.require("r", "RiskAssessment")
    return access


def _scope(access: Access, table: Any) -> list[Any]:
    conditions = []
    if not access.is_system:
        conditions.append(table.c.tenant == (access.tenant or state.NO_TENANT))
    if access.patient is not None:
        conditions.append(table.c.patient_id == access.patient)
    return conditions


def _visible(access: Access, tenant: str | None, patient: str | None) -> bool:
    if not access.is_system and (tenant or state.NO_TENANT) != (access.tenant or state.NO_TENANT):
        return False
    return access.patient is None or access.patient == patient


def router(service: VitalsService) -> APIRouter:
    api = APIRouter()

    @api.get("/ward/", response_class=HTMLResponse)
    def dashboard_page() -> FileResponse:
        return FileResponse(STATIC / "dashboard.html", media_type="text/html")

    @api.get("/ward/static/{name}")
    def static_file(name: str) -> FileResponse:
        path = (STATIC / name).resolve()
        if path.parent != STATIC or not path.is_file():
            raise FhirError(404, "No such file", code="not-found")
        media = "text/javascript" if name.endswith(".js") else "text/css"
        return FileResponse(path, media_type=media)

    @api.get("/ward/i18n/{language}.json")
    def translations(language: str) -> dict[str, str]:
        if language not in LANGUAGES:
            raise FhirError(404, f"No translation for {language}", code="not-found")
        return messages(language)

    @api.get("/api/preferences")
    def get_preferences() -> dict[str, Any]:
        subject = current_access().subject
        with service.db.read() as conn:
            row = conn.execute(
                select(state.preference.c.language).where(state.preference.c.subject == subject)
            ).first()
        return {"language": row.language if row else "en", "languages": LANGUAGES}

    @api.put("/api/preferences")
    def put_preferences(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        subject = current_access().subject
        language = body.get("language")
        if language not in LANGUAGES:
            raise invalid(f"language must be one of {', '.join(LANGUAGES)}")
        with service.db.begin() as conn:
            conn.execute(state.preference.delete().where(state.preference.c.subject == subject))
            conn.execute(state.preference.insert().values(subject=subject, language=language))
        return {"language": language}

    @api.get("/api/patients/{patient_id}/chart")
    def chart(patient_id: str) -> dict[str, Any]:
        _reader()
        _require_patient(patient_id)
        return observation_chart(service, patient_id)

    @api.get("/api/patients/{patient_id}/export.xlsx")
    def export_xlsx(patient_id: str) -> Response:
        _reader()
        _require_patient(patient_id)
        return Response(
            workbook(_history(service, patient_id)),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="vitals-{patient_id}.xlsx"'},
        )

    @api.get("/api/board")
    def board(location: str | None = None) -> dict[str, Any]:
        access = _reader()
        query = select(state.latest).where(*_scope(access, state.latest))
        if location:
            query = query.where(state.latest.c.location == location)
        with service.db.read() as conn:
            rows = conn.execute(
                query.order_by(state.latest.c.location, state.latest.c.patient_name)
            ).all()
            open_alerts = conn.execute(
                select(state.alert).where(
                    state.alert.c.status != "resolved", *_scope(access, state.alert)
                )
            ).all()
        return {
            "patients": [_patient_row(r) for r in rows],
            "alerts": [_alert_row(a) for a in open_alerts],
        }

    @api.get("/api/stream")
    async def stream() -> StreamingResponse:
        access = _reader()
        tenant = None if access.is_system else (access.tenant or state.NO_TENANT)

        async def events() -> AsyncIterator[bytes]:
            # Listening before "connected" is sent: a client that waits for it misses nothing.
            with live_queue(service.hub, CHANNEL) as queue:
                yield b": connected\n\n"
                while True:
                    message = await queue.get(KEEPALIVE_S)
                    if message is None:
                        yield b": keep-alive\n\n"
                        continue
                    event = tenant_event(message, tenant)
                    if event is None:
                        continue
                    if access.patient is not None and event.get("patient") != access.patient:
                        continue
                    yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @api.post("/api/alerts/{flag_id}/acknowledge")
    def acknowledge(flag_id: str) -> dict[str, Any]:
        access = current_access()
        access.require("u", "Task")
        if access.patient is not None:
            raise FhirError(403, "A patient cannot acknowledge clinical alerts", code="forbidden")
        return alerts.acknowledge(service, flag_id, access)

    @api.post("/api/patients/{patient_id}/silence")
    def silence(patient_id: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        access = current_access()
        access.require("u", "Task")
        if access.patient is not None:
            raise FhirError(403, "A patient cannot silence clinical alerts", code="forbidden")
        reason = str(body.get("reason") or "").strip()
        minutes = body.get("minutes")
        if not reason:
            raise invalid("A reason is required to silence alerts")
        if not isinstance(minutes, int | float) or not 0 < minutes <= 24 * 60:
            raise invalid("minutes must be a number between 1 and 1440")
        _require_patient(patient_id)
        until = alerts.silence_patient(service, patient_id, float(minutes), reason, access)
        return {"patient": patient_id, "until": until, "reason": reason}

    @api.get("/api/patients/{patient_id}/export.csv")
    def export_csv(patient_id: str) -> Response:
        _reader()
        _require_patient(patient_id)
        rows = _history(service, patient_id)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["time", "kind", "code", "value", "unit", "points", "status"])
        writer.writerows(rows)
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="vitals-{patient_id}.csv"'},
        )

    @api.get("/api/patients/{patient_id}/scores")
    def scores(patient_id: str) -> dict[str, Any]:
        _reader()
        _require_patient(patient_id)
        found = search(
            service.hub,
            "Observation",
            {
                "subject": f"Patient/{patient_id}",
                "code": "http://fhirhub.org/CodeSystem/vitals|NEWS2",
                "_sort": "-date",
                "_count": "200",
            },
        )
        return {
            "scores": [
                {
                    "time": o.get("effectiveDateTime"),
                    "total": o.get("valueInteger"),
                    "risk": ((o.get("interpretation") or [{}])[0].get("coding") or [{}])[0].get(
                        "code"
                    ),
                    "partial": o.get("status") == "preliminary",
                    "points": {
                        c["code"]["coding"][0]["code"].removeprefix("news2-"): c.get("valueInteger")
                        for c in o.get("component") or []
                    },
                }
                for o in found
            ]
        }

    def _require_patient(patient_id: str) -> None:
        from fhirhub.sdk import read

        read(service.hub, "Patient", patient_id)  # 404 unless visible to the caller

    return api


def _history(service: VitalsService, patient_id: str) -> list[list[Any]]:
    from fhirhub.plugins.vitals.readings import readings_of

    rows: list[list[Any]] = []
    for observation in search(
        service.hub,
        "Observation",
        {"subject": f"Patient/{patient_id}", "_sort": "date", "_count": "1000"},
    ):
        code = (observation.get("code") or {}).get("text")
        if code in ("NEWS2", "qSOFA"):
            rows.append(
                [
                    observation.get("effectiveDateTime"),
                    "score",
                    code,
                    observation.get("valueInteger"),
                    "",
                    "",
                    observation.get("status"),
                ]
            )
            continue
        for reading in readings_of(observation):
            rows.append(
                [
                    reading.time.isoformat(),
                    "vital",
                    reading.parameter,
                    reading.value,
                    reading.unit,
                    "",
                    observation.get("status"),
                ]
            )
    return rows


def _patient_row(row: Any) -> dict[str, Any]:
    previous, total = row.news2_previous, row.news2_total
    trend = (
        ""
        if previous is None or total is None
        else ("up" if total > previous else "down" if total < previous else "same")
    )
    return {
        "patient": row.patient_id,
        "name": row.patient_name,
        "location": row.location,
        "news2": total,
        "risk": row.news2_risk,
        "partial": bool(row.news2_partial),
        "previous": previous,
        "trend": trend,
        "qsofa": row.qsofa_total,
        "qsofa_risk": row.qsofa_risk,
        "time": row.effective,
    }


def _alert_row(row: Any) -> dict[str, Any]:
    return {
        "flag": row.flag_id,
        "patient": row.patient_id,
        "kind": row.kind,
        "risk": row.risk,
        "total": row.total,
        "task": row.task_id,
        "status": row.status,
        "level": row.level,
        "raised_at": row.raised_at,
        "acknowledged_by": row.acknowledged_by,
        "acknowledged_at": row.acknowledged_at,
    }


__all__ = ["_visible", "router"]
