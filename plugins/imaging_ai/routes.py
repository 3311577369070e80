"""HTTP routes under ``/plugins/imaging_ai``: the model catalogue, the runs, the report page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from fhirhub.plugins.imaging_ai.service import service_of
from fhirhub.sdk import Hub, current_access, forbidden

STATIC = Path(__file__).resolve().parent / "static"


def make_router(hub: Hub) -> APIRouter:
    router = APIRouter()

    @router.get("/models")
    def models() -> dict[str, Any]:
        """The registered models with their cards: what runs on what (modalities, body
        parts, labels, version, licence, intended use, validation figures)."""
        service = service_of(hub)
        return {
            "models": [model.card.public() for model in service.models.values()],
            "routes": [route.model_dump() for route in service.settings.routes],
        }

    @router.get("/runs")
    def runs(study: str | None = None) -> dict[str, Any]:
        """Analysis runs of the caller's tenant (every tenant's for the system and a hub-wide
        admin), newest first; ``study`` = an ImagingStudy id. Needs read on
        DiagnosticReport; a patient-facing app is refused (a run names studies, not one
        patient's)."""
        access = current_access()
        access.require("r", "DiagnosticReport")
        if access.patient is not None:
            raise forbidden("Analysis runs are not listed for a patient context")
        study_id = study.rpartition("/")[2] if study else None
        listed = service_of(hub).runs.list(access.tenant, study_id=study_id)
        return {"runs": [run.public() for run in listed]}

    @router.get("/ui/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "reports.html", media_type="text/html")

    @router.get("/ui/reports.css")
    def styles() -> FileResponse:
        return FileResponse(STATIC / "reports.css", media_type="text/css")

    @router.get("/ui/reports.js")
    def script() -> FileResponse:
        return FileResponse(STATIC / "reports.js", media_type="text/javascript")

    return router
