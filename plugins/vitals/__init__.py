"""Vitals: NEWS2 and qSOFA on every vital-signs write, alerts escalated until acknowledged, and
a live ward dashboard (docs/vitals.md).

* scoring on every vital-signs Observation from any source: a consumer of the version log
  (``consumer.py``) writes the score ``Observation`` and ``RiskAssessment`` (``fhir_output.py``);
* alerts (``Flag``, ``Communication``, response ``Task``), escalation along a chain (a
  ``Schedule``) and acknowledgment (``alerts.py``), each step with a ``Provenance``;
* impossible values (SpO2 140 %, a negative rate) refused at write (``resource_before_write``);
* the ward dashboard at ``/plugins/vitals/`` with live updates (``routes.py``, ``static/``).

Scores support clinical judgement; they do not replace it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import APIRouter

from fhirhub.plugins.vitals import codes
from fhirhub.plugins.vitals.alerts import escalate_due
from fhirhub.plugins.vitals.consumer import (
    BATCH_SIZE,
    backfill_board,
    clear_readings,
    handle_versions,
    score_pending,
)
from fhirhub.plugins.vitals.readings import impossible_values, is_vital_input
from fhirhub.plugins.vitals.routes import router
from fhirhub.plugins.vitals.service import service_of, settings_of
from fhirhub.plugins.vitals.settings import PLUGIN_NAME
from fhirhub.sdk import Consumer, FhirError, Hub, Schedule, WriteContext, hookimpl

__version__ = "1.0.0"
__all__ = ["PLUGIN_NAME"]

MANIFEST = {
    "resource_types": [
        "Observation",
        "RiskAssessment",
        "Flag",
        "Communication",
        "Task",
        "Provenance",
    ],
    "scopes": [
        "system/Observation.crs",
        "system/RiskAssessment.crs",
        "system/Flag.cru",
        "system/Communication.c",
        "system/Task.cru",
    ],
}

log = logging.getLogger("fhirhub.vitals")
DASHBOARD = f"/plugins/{PLUGIN_NAME}/ward/"


@hookimpl
def register_consumers(hub: Hub) -> list[Consumer]:
    service = service_of(hub)
    return [
        Consumer(
            "vitals-scoring",
            lambda versions: handle_versions(service, versions),
            start="head",
            # Large batches under load: one transaction scores many patients at once. Only
            # the types scoring reads are loaded (a batch of BATCH_SIZE of them is full, as
            # the consumer assumes); the scores, alerts and other plugins' writes are not
            # read back, and commits with none of these types cost the consumer no write.
            types=frozenset({"Observation", "Task", "Condition", "Goal"}),
            batch_size=BATCH_SIZE,
            reset=lambda: clear_readings(service),
            # Under a steady feed, batches of many patients (``batch_pause_ms``).
            linger_s=service.linger_s,
            caught_up=lambda: score_pending(service),
            # Scoring is CPU work: beside a write load it runs on another core.
            worker_process=True,
        )
    ]


@hookimpl
def startup(hub: Hub) -> None:
    service = service_of(hub)
    threading.Thread(target=_backfill, args=(service,), name="vitals-backfill", daemon=True).start()


def _backfill(service: Any) -> None:
    try:
        backfill_board(service)
    except Exception:  # the board fills from new vitals anyway
        log.exception("vitals: scoring the newest vitals of each patient failed")


@hookimpl
def register_schedules(hub: Hub) -> list[Schedule]:
    service = service_of(hub)
    return [
        Schedule(
            "vitals-escalation",
            service.settings.escalation_check_seconds,
            lambda _hub: _escalate(service),
        )
    ]


@hookimpl
def resource_before_write(resource: dict[str, Any], context: WriteContext) -> None:
    """Refuse vital signs that cannot be real: they would be scored as a patient in danger (or
    hide one), and the source should correct them."""
    if resource.get("resourceType") != "Observation" or not is_vital_input(resource):
        return
    if not settings_of(context.hub).reject_impossible:
        return
    problems = impossible_values(resource)
    if problems:
        raise FhirError(
            422,
            "Impossible vital-signs value: " + "; ".join(problems),
            code="business-rule",
        )


@hookimpl
def register_code_systems(hub: Hub) -> list[dict[str, Any]]:
    return [codes.code_system()]


@hookimpl
def register_routes(hub: Hub) -> APIRouter:
    return router(service_of(hub))


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    # The page and its script hold no data; the /api routes need the signed-in user.
    return [DASHBOARD]


@hookimpl
def ui_patient_panels(hub: Hub) -> list[dict[str, Any]]:
    """Every patient chart lists its early warning scores (RiskAssessments, newest first); the
    ward dashboard has the full observation chart."""
    return [
        {
            "id": "vitals-scores",
            "title": "Early warning scores (NEWS2, qSOFA)",
            "order": 22,
            "resource_types": ["RiskAssessment"],
            "params": "_sort=-date",
        }
    ]


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    return [{"path": DASHBOARD, "title": "Ward vitals (NEWS2)", "order": 30}]


def _escalate(service: Any) -> None:
    escalate_due(service)
