"""The OHIF Viewer (v3, MIT) as the hub's study viewer, on the hub's own DICOMweb
(docs/imaging_ai.md, "The OHIF Viewer").

* ``install.py`` puts the pinned ``@ohif/app`` build into ``plugins/ohif/dist/`` when npm is
  available (``make run``/``make test`` call it; nothing is fetched at run time);
* ``GET /plugins/ohif/viewer/...`` serves it (``routes.py``), with a generated
  ``app-config.js``: one DICOMweb data source, the DICOM adapter's
  ``/plugins/dicom/dicomweb`` (QIDO-RS, WADO-RS, STOW-RS), whose requests carry the signed-in
  user's bearer token, so the study list and the images are the user's tenant's only;
* ``GET /plugins/ohif/status`` says whether it is installed (the patient chart's imaging
  panel links to it then, and to the DICOM adapter's built-in viewer otherwise);
* the viewer's pages get their own Content-Security-Policy (docs/security.md).
"""

from __future__ import annotations

from typing import Any

from fhirhub.plugins.ohif.install import MOUNT, installed
from fhirhub.plugins.ohif.settings import PLUGIN_NAME, settings_of
from fhirhub.sdk import Hub, hookimpl

__version__ = "1.0.0"
__all__ = ["PLUGIN_NAME"]

MANIFEST: dict[str, list[str]] = {"resource_types": [], "scopes": []}


@hookimpl
def register_routes(hub: Hub) -> Any:
    from fhirhub.plugins.ohif.routes import make_router

    return make_router(hub)


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    """The viewer's files and its configuration hold no data (the token stays in the
    browser); every study, series and image is fetched from DICOMweb with the user's token."""
    return [f"/plugins/{PLUGIN_NAME}/"]


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    if installed(settings_of(hub).dist_path()) is None:
        return []
    return [{"path": MOUNT, "title": "Study viewer (OHIF)", "order": 55}]
