"""The OSCAR admin page and its API, under ``/plugins/oscar``.

* ``GET /ui/`` (with ``/ui/static/admin.js``): the page, a shell with no data in it. The UI
  shell shows it in a frame, which cannot send the signed-in user's bearer token, so the page
  is public (``public_paths``) and its script reads everything through the API below with
  the user's token, like the UI shell's own pages.
* ``GET /status``: cursors, runs, dead letters and write-backs (JSON).
* ``POST /sync`` (``?full=true``): "run now", in the background; 202 ``{"started": bool}``.

Administrators only: ``super_admin`` and ``app_admin`` see any clinic; an ``org_admin`` only
the clinic of their own tenant. Everyone else gets 403.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from fhirhub.adapters.oscar.runtime import OscarRuntime, runtime
from fhirhub.sdk import Hub, current_access, forbidden

ADMIN_ROLES = ("super_admin", "app_admin", "org_admin")
PREFIX = "/plugins/oscar"
#: The page's path: public, the data behind it is not.
PAGE_PATH = f"{PREFIX}/ui/"
STATIC = Path(__file__).parent / "static"


def _authorised(current: OscarRuntime | None) -> None:
    access = current_access()
    access.require_role(*ADMIN_ROLES)
    if access.is_system or access.roles & {"super_admin", "app_admin"}:
        return
    tenant = current.settings.tenant if current else None
    if tenant is None or access.tenant != tenant:
        raise forbidden("This OSCAR clinic belongs to another tenant")


def router(hub: Hub) -> APIRouter:
    api = APIRouter()

    @api.get("/status")
    def status() -> JSONResponse:
        current = runtime(hub)
        _authorised(current)
        if current is None:
            return JSONResponse({"configured": False})
        return JSONResponse(_jsonable(current.status()))

    @api.post("/sync")
    def run_now(full: bool = False) -> JSONResponse:
        current = runtime(hub)
        _authorised(current)
        if current is None:
            return JSONResponse({"configured": False, "started": False}, status_code=409)
        started = current.sync_in_background(full=full)
        return JSONResponse({"configured": True, "started": started}, status_code=202)

    @api.get("/ui/", response_class=HTMLResponse)
    def page() -> str:
        return _SHELL

    @api.get("/ui/static/{name}")
    def static(name: str) -> FileResponse:
        path = (STATIC / name).resolve()
        if path.parent != STATIC.resolve() or not path.is_file():
            raise HTTPException(404)
        return FileResponse(path)

    return api


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


_SHELL = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>OSCAR</title>"
    f"<link rel='stylesheet' href='{PREFIX}/ui/static/admin.css'></head><body>"
    "<h1>OSCAR EMR</h1>"
    f"<main id='oscar' data-prefix='{html.escape(PREFIX, quote=True)}'>"
    "<p class='muted' data-testid='loading'>Loading…</p></main>"
    f"<script type='module' src='{PREFIX}/ui/static/admin.js'></script></body></html>"
)
