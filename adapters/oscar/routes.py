"""The OSCAR admin page (``/plugins/oscar/``), its JSON (``/plugins/oscar/status``) and
"run now" (``POST /plugins/oscar/sync``). Administrators only: ``super_admin`` and
``app_admin`` see any clinic; an ``org_admin`` only the clinic of their own tenant."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from fhirhub.adapters.oscar.runtime import OscarRuntime, runtime
from fhirhub.sdk import Hub, current_access, forbidden

ADMIN_ROLES = ("super_admin", "app_admin", "org_admin")


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
    def run_now(full: bool = False) -> Response:
        current = runtime(hub)
        _authorised(current)
        if current is None:
            return JSONResponse({"configured": False}, status_code=409)
        started = current.sync_in_background(full=full)
        return RedirectResponse(
            "/plugins/oscar/?started=" + ("1" if started else "0"), status_code=303
        )

    @api.get("/", response_class=HTMLResponse)
    def page(started: str | None = None) -> HTMLResponse:
        current = runtime(hub)
        _authorised(current)
        return HTMLResponse(_page(current, started))

    return api


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5rem;color:#1d2733}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #d5dbe3;padding:.25rem .6rem;text-align:left}
th{background:#eef2f7}.error{color:#a4161a}.ok{color:#1b7a3a}.muted{color:#6b7785}
button{font:inherit;padding:.35rem .9rem;border-radius:4px;border:1px solid #2f5f98;background:#2f6fb3;color:#fff;cursor:pointer}
"""


def _table(headers: list[str], rows: list[list[Any]], empty: str, test_id: str) -> str:
    if not rows:
        return f'<p class="muted" data-testid="{test_id}">{html.escape(empty)}</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(c if c is not None else ''))}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f'<table data-testid="{test_id}"><tr>{head}</tr>{body}</table>'


def _page(current: OscarRuntime | None, started: str | None) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>OSCAR</title><style>{_STYLE}</style></head><body>",
        "<h1>OSCAR EMR</h1>",
    ]
    if current is None:
        parts.append(
            '<p data-testid="not-configured">No OSCAR source is configured. Set <code>[plugin.oscar]</code> '
            "<code>database</code> (a read-only replica) or <code>url</code> with OAuth credentials; see docs/oscar.md.</p>"
        )
        return "".join(parts) + "</body></html>"
    info = current.status()
    label = " (demo data: a synthetic clinic, not a live OSCAR)" if info["source"] == "demo" else ""
    parts.append(
        f'<p data-testid="summary">Instance <b>{html.escape(info["instance"])}</b>, source '
        f"<b>{html.escape(str(info['source']))}</b>{html.escape(label)}; tenant "
        f"{html.escape(info['tenant'] or 'none')}; periodic sync every {info['interval_s']:g} s.</p>"
    )
    if started == "1":
        parts.append('<p class="ok" data-testid="started">Sync started.</p>')
    elif started == "0":
        parts.append('<p class="muted" data-testid="started">A sync is already running.</p>')
    if info["last_error"]:
        parts.append(
            f'<p class="error" data-testid="last-error">Last error: {html.escape(info["last_error"])}</p>'
        )
    parts.append(
        '<form method="post" action="/plugins/oscar/sync"><button type="submit" data-testid="run-now">Run now</button></form>'
    )
    parts.append("<h2>Cursors</h2>")
    parts.append(
        _table(
            ["stream", "last update", "last key", "records", "synced at"],
            [
                [n, c["updated"], c["key"], c["records"], c["synced_at"]]
                for n, c in sorted(info["cursors"].items())
            ],
            "No sync has run yet.",
            "cursors",
        )
    )
    parts.append("<h2>Recent runs</h2>")
    parts.append(
        _table(
            [
                "#",
                "mode",
                "status",
                "started",
                "finished",
                "records",
                "written",
                "dead letters",
                "error",
            ],
            [
                [
                    r["id"],
                    r["mode"],
                    r["status"],
                    r["started"],
                    r["finished"],
                    r["records"],
                    r["resources"],
                    r["dead_letters"],
                    r["error"],
                ]
                for r in info["runs"]
            ],
            "No runs yet.",
            "runs",
        )
    )
    parts.append(f"<h2>Dead letters ({info['dead_letter_count']} open)</h2>")
    parts.append(
        _table(
            ["stream", "key", "reason", "task", "at"],
            [
                [d["stream"], d["key"], d["reason"], "Task/" + d["task_id"], d["at"]]
                for d in info["dead_letters"]
            ],
            "None.",
            "dead-letters",
        )
    )
    parts.append("<h2>Write-back to OSCAR</h2>")
    parts.append(
        _table(
            ["resource", "version", "status", "attempts", "OSCAR key", "last error", "updated"],
            [
                [
                    f"{w['resource_type']}/{w['resource_id']}",
                    w["version_id"],
                    w["status"],
                    w["attempts"],
                    w["oscar_key"],
                    w["last_error"],
                    w["updated"],
                ]
                for w in info["writeback"]
            ],
            "Nothing sent.",
            "writeback",
        )
    )
    return "".join(parts) + "</body></html>"
