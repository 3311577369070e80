"""The chat page (``/plugins/ai/ui/?patient=ID``, also the chart panel ``/plugins/ai/ui/panel``).

Like the UI shell's, the page holds no data (so its path is public): the script asks the chat
endpoint with the signed-in user's token, streams the answer, shows each tool call as it runs
and lists the sources as links that open the cited resource.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

PAGE = "/plugins/ai/ui/"
STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"chat.js": "text/javascript", "chat.css": "text/css"}


def _page(compact: bool) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>AI assistant</title><link rel='icon' href='data:,'>"
        f"<link rel='stylesheet' href='{PAGE}static/chat.css'></head>"
        f"<body class='{'compact' if compact else 'full'}'>"
        "<header><h1>AI assistant <span id='patient-label'></span></h1>"
        "<p id='model-status' class='hint' role='status'>Checking the model…</p></header>"
        "<main><ol id='log' aria-live='polite'></ol>"
        "<form id='ask'><label for='question'>Question</label>"
        "<textarea id='question' rows='2' required maxlength='4000' "
        "placeholder='e.g. What is the latest potassium?'></textarea>"
        "<button type='submit'>Ask</button></form>"
        "<pre id='resource' hidden></pre></main>"
        "<footer class='hint'>Answers are AI-generated, checked by fixed rules against the "
        "record, and stored with their provenance. Verify before acting.</footer>"
        f"<script type='module' src='{PAGE}static/chat.js'></script></body></html>"
    )


def router() -> APIRouter:
    routes = APIRouter()

    @routes.get("/ui/", response_class=HTMLResponse)
    def chat_page() -> str:
        return _page(compact=False)

    @routes.get("/ui/panel", response_class=HTMLResponse)
    def chat_panel() -> str:
        return _page(compact=True)

    @routes.get("/ui/static/{name}")
    def static(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(404)
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name])

    return routes
