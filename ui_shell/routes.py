"""The UI shell's routes: server-rendered layout, navigation and panel placeholders only.

Every patient datum reaches the browser through the public FHIR API (``/fhir/...``), fetched
by ``static/*.js``; these handlers never read the store. That keeps the shell honest (it can
do nothing a FHIR client could not) and lets authorisation live in one place, the FHIR API.
Pages send a Content-Security-Policy that allows only same-origin scripts, so even a bug that
inserted patient data as HTML could not run script.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from fhirhub import __version__
from fhirhub.sdk import has_operation
from fhirhub.ui_shell.navigation import find_plugin_page, navigation
from fhirhub.ui_shell.panels import patient_panels
from fhirhub.ui_shell.topbar import topbar_items

if TYPE_CHECKING:
    from fhirhub.sdk import Hub

HERE = Path(__file__).parent
#: http://hl7.org/fhir/R4/datatypes.html#id
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
templates = Jinja2Templates(directory=HERE / "templates")

#: Same-origin scripts, styles and frames only; no inline script, nothing from elsewhere.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; frame-ancestors 'self'; object-src 'none'; base-uri 'self'"
)


def router(hub: Hub) -> APIRouter:
    """The shell at ``/`` and ``/ui/...`` and its static files at ``/ui/static/`` (mounted at
    the root: these paths are the shell's, not under ``/plugins/``)."""
    router = APIRouter(include_in_schema=False)
    router.mount_at_root = True  # type: ignore[attr-defined]
    static = StaticFiles(directory=HERE / "static")

    @router.get("/ui/static/{name:path}")
    async def static_file(request: Request, name: str) -> Response:
        # StaticFiles resolves inside its folder only (no ``..``) and answers 404 otherwise.
        return await static.get_response(name, request.scope)

    def render(request: Request, template: str, active: str, **context: Any) -> Response:
        root = request.scope.get("root_path", "").rstrip("/")
        response = templates.TemplateResponse(
            request,
            template,
            {
                "root": root,
                "fhir_base": f"{root}/fhir",
                "nav": navigation(hub, root),
                "topbar": topbar_items(hub),
                "active": active,
                "version": __version__,
                **context,
            },
        )
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def not_found(request: Request, message: str) -> Response:
        response = render(request, "missing.html", "", title="Not found", message=message)
        response.status_code = 404
        return response

    @router.get("/", response_class=HTMLResponse)
    def dashboard(request: Request) -> Response:
        return render(request, "dashboard.html", "/", title="Dashboard")

    @router.get("/ui")
    @router.get("/ui/")
    def ui_root(request: Request) -> Response:
        root = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(f"{root}/", status_code=307)

    @router.get("/ui/patients", response_class=HTMLResponse)
    def patient_list(request: Request) -> Response:
        return render(request, "patients.html", "/ui/patients", title="Patients")

    @router.get("/ui/patients/{patient_id}", response_class=HTMLResponse)
    def patient_chart(request: Request, patient_id: str) -> Response:
        if not FHIR_ID.match(patient_id):
            return not_found(request, f"{patient_id!r} is not a FHIR resource id.")
        return render(
            request,
            "patient.html",
            "/ui/patients",
            title="Patient chart",
            patient_id=patient_id,
            panels=patient_panels(hub),
            # The add-condition form codes diagnoses with ValueSet/$expand where it is served.
            code_lookup=has_operation(hub, "expand", "ValueSet"),
        )

    @router.get("/ui/page", response_class=HTMLResponse)
    def plugin_page(request: Request, path: str = "") -> Response:
        """A plugin's page framed inside the shell; only registered ``ui_pages`` qualify."""
        page = find_plugin_page(hub, path)
        if page is None:
            message = f"No enabled plugin provides a page at {path!r}; its plugin may be disabled."
            return not_found(request, message)
        return render(request, "plugin_page.html", page.path, title=page.title, page=page)

    return router
