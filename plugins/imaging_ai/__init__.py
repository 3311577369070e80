"""Imaging AI: a model's findings beside the images, and a report the radiologist controls
(docs/imaging_ai.md).

* every ImagingStudy the DICOM adapter records (C-STORE, STOW-RS, ``$pacs-retrieve``) is noted
  by a consumer and, once no new instance arrived for ``quiet_seconds``, analysed by the
  models its routes give it (``service.py``, ``analysis.py``), in-process or on Celery;
* models are ONNX files with a JSON card (``models.py``); the shipped one is a demonstration
  model trained on synthetic phantoms (``tools/train_imaging_model.py``);
* a study that gets new instances after its analysis is analysed again; an unsigned earlier
  report is superseded, a signed one never changed (``analysis.py``, ``fhir_output.py``);
* routes by modality, body part, tenant and the C-STORE calling/called AE titles; models by
  path or by URL with a SHA-256, fetched once into a cache (``models.py``);
* findings as preliminary Observations in a preliminary DiagnosticReport, with a Device and a
  Provenance (``fhir_output.py``); SEG, SR and GSPS stored back in the archive
  (``overlays.py``); approval, decline and signing (HTML and PDF) as plain FHIR updates
  checked by ``resource_before_write``/``before_commit`` (``workflow.py``);
* ``GET /plugins/imaging_ai/models``, ``GET /plugins/imaging_ai/runs``, and the report page
  ``/plugins/imaging_ai/ui/`` listed in the UI shell (``routes.py``).
"""

from __future__ import annotations

import threading
from typing import Any

from fhirhub.plugins.imaging_ai import workflow
from fhirhub.plugins.imaging_ai.service import TASK, service_of
from fhirhub.plugins.imaging_ai.settings import PLUGIN_NAME
from fhirhub.sdk import (
    Consumer,
    Hub,
    Schedule,
    Transaction,
    WriteContext,
    hookimpl,
)

__version__ = "0.1.0"
__all__ = ["PLUGIN_NAME"]

MANIFEST = {
    "resource_types": ["ImagingStudy", "Observation", "DiagnosticReport", "Device", "Provenance"],
    "scopes": [
        "system/ImagingStudy.r",
        "system/Observation.cruds",
        "system/DiagnosticReport.cruds",
        "system/Device.cruds",
        "system/Provenance.c",
    ],
}

UI_PAGE = f"/plugins/{PLUGIN_NAME}/ui/"


@hookimpl
def register_consumers(hub: Hub) -> list[Consumer]:
    service = service_of(hub)
    if not service.settings.analyse:
        return []
    return [
        Consumer(
            "imaging-ai-studies",
            service.note_versions,
            types=frozenset({"ImagingStudy"}),
            batch_size=200,
        )
    ]


@hookimpl
def register_schedules(hub: Hub) -> list[Schedule]:
    service = service_of(hub)
    if not service.settings.analyse:
        return []
    return [
        Schedule("imaging-ai-quiet-studies", service.settings.poll_seconds, service.dispatch_quiet)
    ]


@hookimpl
def register_tasks(hub: Hub) -> dict[str, Any]:
    return {TASK: lambda tenant, study_id: service_of(hub).analyse(tenant, study_id)}


@hookimpl
def resource_before_write(resource: dict[str, Any], context: WriteContext) -> None:
    workflow.before_write(resource, context)


@hookimpl
def before_commit(transaction: Transaction) -> None:
    workflow.before_commit(transaction)


@hookimpl(trylast=True)
def startup(hub: Hub) -> None:
    """Seed the demo study (when the demo patients are there) off the startup path: in a
    thread, after the other plugins' startup writes, retried while SQLite is busy."""
    threading.Thread(target=_seed_demo, args=(hub,), name="imaging-ai-demo", daemon=True).start()


def _seed_demo(hub: Hub) -> None:
    import logging
    import time

    from fhirhub.plugins.imaging_ai.analysis import study_uid_of
    from fhirhub.plugins.imaging_ai.demo import seed_demo_study
    from fhirhub.sdk import SYSTEM, acting_as, read, tenant_of

    for attempt in range(10):
        time.sleep(2 + 2 * attempt)
        try:
            service = service_of(hub)
            if not service.settings.demo:
                return
            study_id = seed_demo_study(hub)
            if study_id is not None:
                with acting_as(SYSTEM):
                    study = read(hub, "ImagingStudy", study_id)
                uid = study_uid_of(study) or ""
                service.runs.study_changed(tenant_of(study) or "", study_id, uid, 0)
            return
        except Exception as exc:  # a busy database at start: try again a little later
            logging.getLogger("fhirhub.imaging_ai").warning("Demo study not seeded yet: %s", exc)


@hookimpl
def register_routes(hub: Hub) -> Any:
    from fhirhub.plugins.imaging_ai.routes import make_router

    return make_router(hub)


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    """The report page is a shell without data; its script reads FHIR with the user's token."""
    return [UI_PAGE]


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    return [{"path": UI_PAGE, "title": "Imaging AI reports", "order": 60}]
