"""The UI shell as a plugin (``core-ui``): its pages, its static files and its public paths,
registered through the same hooks as any plugin's routes.

Named ``core-...`` so that an allow-list in ``FHIRHUB_PLUGINS`` keeps it; ``-core-ui`` turns
it off (a headless deployment).
"""

from __future__ import annotations

from fastapi import APIRouter

from fhirhub.sdk import Hub, hookimpl
from fhirhub.ui_shell.routes import router

__version__ = "1.0.0"
PLUGIN_NAME = "core-ui"


@hookimpl
def register_routes(hub: Hub) -> APIRouter:
    return router(hub)


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    # The shell's pages and files carry no patient data: every datum is fetched by the
    # browser from the protected FHIR API with the user's own token.
    return ["/ui"]
