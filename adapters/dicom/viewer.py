"""The imaging views of the UI: study thumbnails in the patient chart, and a series viewer.

Both pages are thin shells; their scripts read only public APIs — ``/fhir/ImagingStudy`` for
the patient's studies and DICOMweb (QIDO-RS for instances, WADO-RS ``rendered`` for frames,
with the CT window presets of :mod:`.render`) — so they also prove those APIs usable by a
browser viewer. The series viewer also draws the graphic annotations of the study's
presentation states (GSPS) over each image, from :mod:`.annotations`. Plugged into the shell through ``ui_patient_panels`` and ``ui_pages``.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from fhirhub.adapters.dicom.render import CT_PRESETS

STATIC = Path(__file__).parent / "static"
PREFIX = "/plugins/dicom"


def _page(title: str, body: str, script: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        f"<link rel='stylesheet' href='{PREFIX}/ui/static/viewer.css'></head><body>"
        f"{body}<script type='module' src='{PREFIX}/ui/static/{script}'></script></body></html>"
    )


def make_viewer_router() -> APIRouter:
    router = APIRouter(prefix="/ui")

    @router.get("/patient/{patient_id}", response_class=HTMLResponse)
    def patient_studies(patient_id: str) -> str:
        body = (
            f"<main id='studies' data-patient='{html.escape(patient_id, quote=True)}'"
            f" data-prefix='{PREFIX}'><p class='muted'>Loading imaging studies…</p></main>"
        )
        return _page("Imaging studies", body, "thumbnails.js")

    @router.get("/viewer", response_class=HTMLResponse)
    def viewer() -> str:
        presets = "".join(
            f"<button type='button' data-window='{name}'>{name}</button>" for name in CT_PRESETS
        )
        body = (
            f"<main id='viewer' data-prefix='{PREFIX}'>"
            "<header><h1 id='title'>Series viewer</h1><span id='position'></span></header>"
            f"<nav id='presets' hidden>{presets}<button type='button' data-window=''>default</button></nav>"
            "<figure><div id='stage'><img id='frame' alt='DICOM frame'>"
            "<svg id='overlay' xmlns='http://www.w3.org/2000/svg' aria-label='Annotations'"
            " preserveAspectRatio='none'></svg></div></figure>"
            "<input id='slider' type='range' min='0' max='0' value='0' aria-label='Instance'>"
            "<p class='muted'>Scroll with the slider, the mouse wheel or the arrow keys.</p>"
            "<section id='annotations' hidden><label><input id='show-annotations' type='checkbox'"
            " checked> Show annotations</label><ul id='annotation-list'></ul></section></main>"
        )
        return _page("Series viewer", body, "viewer.js")

    @router.get("/static/{name}")
    def static(name: str) -> FileResponse:
        path = (STATIC / name).resolve()
        if path.parent != STATIC.resolve() or not path.is_file():
            from fastapi import HTTPException

            raise HTTPException(404)
        return FileResponse(path)

    return router
