"""A small plugin for the UI shell tests: one page (with its route) and one patient panel.

The in-process tests register it as a built-in; the browser tests install it as a real
entry-point plugin (a ``.dist-info`` folder on ``PYTHONPATH``), the way third parties do.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from fhirhub.core.hookspecs import hookimpl

NAME = "ui-sample"
PAGE_PATH = f"/plugins/{NAME}/"
PANEL_ID = "sample-active-conditions"

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def page() -> str:
    return (
        "<!doctype html><title>Sample</title>"
        "<h1 id='sample-heading'>Sample plugin page</h1><p>Served by the ui-sample plugin.</p>"
    )


@hookimpl
def register_routes(hub: Any) -> APIRouter:
    return router


@hookimpl
def ui_pages(hub: Any) -> list[dict[str, Any]]:
    return [{"path": PAGE_PATH, "title": "Sample page", "icon": "★", "order": 50}]


@hookimpl
def ui_patient_panels(hub: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": PANEL_ID,
            "title": "Sample: active conditions",
            "order": 45,
            "url": "/fhir/Condition?patient={patient_id}&clinical-status=active",
        }
    ]
