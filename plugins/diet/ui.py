"""The optimiser's pages: the full page (``/plugins/diet/ui/?patient=ID``) and the patient-chart
panel (``/plugins/diet/ui/panel?patient=ID``).

Like the UI shell, the pages carry no patient data: the HTML is the same for everyone (which is
why its paths are public) and the browser fetches everything from the FHIR API with the
signed-in user's token (``static/diet.js``), so the access rules of the API are the only ones.
Scripts are same-origin files (the hub's Content-Security-Policy allows no inline script) and
patient data is inserted as text only.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from .foods import search_full_table
from .profiles import load_profiles
from .request import pattern_spec

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"diet.js": "text/javascript", "panel.js": "text/javascript", "diet.css": "text/css"}
PREFIX = "/plugins/diet"


def _page(title: str, body: str, script: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><link rel='icon' href='data:,'>"
        f"<link rel='stylesheet' href='{PREFIX}/ui/static/diet.css'></head>"
        f"<body>{body}<script type='module' src='{PREFIX}/ui/static/{script}'></script>"
        "</body></html>"
    )


def _choices() -> str:
    profiles = "".join(
        f"<label class='choice'><input type='checkbox' name='profile' value='{html.escape(p.id)}'>"
        f" {html.escape(p.title)}</label>"
        for p in load_profiles().values()
    )
    patterns = "".join(
        f"<label class='choice'><input type='checkbox' name='pattern' value='{html.escape(k)}'>"
        f" {html.escape(v['title'])}</label>"
        for k, v in pattern_spec().items()
    )
    return (
        "<form id='diet-form'>"
        f"<fieldset><legend>Profiles</legend>{profiles}"
        "<p class='hint'>None ticked: chosen from the patient's conditions.</p></fieldset>"
        f"<fieldset><legend>Eating pattern</legend>{patterns}</fieldset>"
        "<fieldset><legend>Options</legend>"
        "<label>Objective <select name='objective'><option value='cost'>lowest cost</option>"
        "<option value='preference'>closest to preferences</option></select></label>"
        "<label>Max servings per food <input name='maxServingsPerFood' type='number' min='1'"
        " max='10' step='1' value='3'></label>"
        "<label>Activity <select name='activity'><option value=''>default (light)</option>"
        "<option>sedentary</option><option>light</option><option>moderate</option>"
        "<option>active</option><option>very-active</option></select></label>"
        "<label><input type='checkbox' name='integer'> whole servings (MILP) in steps of "
        "<select name='servingStep'><option value='1'>1</option><option value='0.5'>½</option>"
        "</select></label>"
        "</fieldset>"
        "<p id='excluded' class='hint'></p>"
        "<button id='optimise' type='submit'>Optimise</button>"
        "</form>"
    )


def router() -> APIRouter:
    routes = APIRouter()

    @routes.get("/ui/", response_class=HTMLResponse)
    def optimiser_page() -> str:
        body = (
            "<header><a id='back' href='/ui/patients' target='_top'>← Patient chart</a>"
            "<h1>Diet optimiser <span id='patient-name'></span></h1>"
            "<p id='patient-facts' class='hint'></p></header>"
            "<main><section class='controls'>" + _choices() + "</section>"
            "<section class='results'><p id='status' role='status'>Choose profiles and "
            "press Optimise.</p><div id='explanation'></div><div id='meals'></div>"
            "<div id='bars'></div><div id='order'></div></section></main>"
        )
        return _page("Diet optimiser", body, "diet.js")

    @routes.get("/ui/panel", response_class=HTMLResponse)
    def chart_panel() -> str:
        body = (
            "<div class='panel'><p id='panel-status' class='hint'>Loading…</p>"
            "<a id='open-optimiser' target='_top' href='#'>Open the diet optimiser</a></div>"
        )
        return _page("Diet plan", body, "panel.js")

    @routes.get("/ui/static/{name}")
    def static(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(404)
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name])

    @routes.get("/foods")
    def foods(q: str = "") -> dict[str, object]:
        """Foods of the full SR28 table matching every word of ``q`` (for ``include``)."""
        found = search_full_table(q[:100])
        return {"foods": [{"id": i, "name": n, "group": g} for i, n, g in found]}

    return routes
