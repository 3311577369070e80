"""A master patient index: one person across the hub's sources (docs/mpi.md).

* matching on every Patient write from any source, within the writer's tenant (a consumer of
  the version log, ``consumer.py``): deterministic identifier rules, then splink's
  probabilistic score (``model.py``, ``scoring.py``), then guards (``rules.py``);
* ``Patient/$match`` (graded candidates), ``Patient/$merge`` and ``Patient/$unmerge``
  (``merge.py``), ``Task/{id}/$mpi-decide`` (a reviewer's answer);
* linking as FHIR: a master ``Person`` and ``Patient.link`` ``seealso`` (``linking.py``);
* the review queue page (``/plugins/mpi/review/``), listed in the UI shell;
* ``fhirhub mpi-train``: estimate the model from the hub's own patients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from fhirhub.plugins.mpi import vocabulary
from fhirhub.plugins.mpi.consumer import handle_versions
from fhirhub.plugins.mpi.merge import complete_merges
from fhirhub.plugins.mpi.operations import operations
from fhirhub.plugins.mpi.service import PLUGIN_NAME, service_of
from fhirhub.sdk import (
    Consumer,
    Hub,
    Operation,
    Transaction,
    command_hub,
    current_access,
    hookimpl,
)

__version__ = "1.0.0"
__all__ = ["PLUGIN_NAME"]

MANIFEST = {
    "resource_types": ["Patient", "Person", "Task", "Provenance"],
    "scopes": ["system/Patient.cruds", "system/Person.cruds", "system/Task.cruds"],
}

STATIC = Path(__file__).resolve().parent / "static"
REVIEW_PAGE = f"/plugins/{PLUGIN_NAME}/review/"
#: What the whole-person chart panel lists: the records and their clinical content.
CHART_TYPES = ",".join(
    (
        "Patient",
        "Encounter",
        "Condition",
        "Observation",
        "DiagnosticReport",
        "ImagingStudy",
        "MedicationRequest",
        "AllergyIntolerance",
        "Immunization",
        "Procedure",
        "DocumentReference",
    )
)


@hookimpl
def register_consumers(hub: Hub) -> list[Consumer]:
    service = service_of(hub)
    if not service.settings.match_on_write:
        return []
    return [
        Consumer(
            "mpi-matching",
            lambda versions: handle_versions(service, versions),
            start="beginning",
            batch_size=100,
            types=frozenset({"Patient", "Task"}),
            reset=service.index.clear,
            # Matching is CPU work (features, blocking, scoring each candidate): beside an
            # admission feed it runs on another core.
            worker_process=True,
        )
    ]


@hookimpl
def register_operations(hub: Hub) -> list[Operation]:
    return operations()


@hookimpl
def register_code_systems(hub: Hub) -> list[dict[str, Any]]:
    return [vocabulary.code_system()]


@hookimpl
def before_commit(transaction: Transaction) -> None:
    complete_merges(transaction, current_access())


@hookimpl
def register_routes(hub: Hub) -> APIRouter:
    router = APIRouter()

    @router.get("/review/", response_class=HTMLResponse)
    def review_page() -> FileResponse:
        # The page holds no data: its script reads the review Tasks through the FHIR API
        # with the signed-in user's token, as the UI shell does.
        return FileResponse(STATIC / "review.html", media_type="text/html")

    @router.get("/review/review.js")
    def review_script() -> FileResponse:
        return FileResponse(STATIC / "review.js", media_type="text/javascript")

    return router


@hookimpl
def public_paths(hub: Hub) -> list[str]:
    return [REVIEW_PAGE]


@hookimpl
def ui_pages(hub: Hub) -> list[dict[str, Any]]:
    return [{"path": REVIEW_PAGE, "title": "Duplicate review", "order": 40}]


@hookimpl
def ui_patient_panels(hub: Hub) -> list[dict[str, Any]]:
    """One chart for the whole person: everything of this record and of the records linked to
    it (``$everything?_mdm=true``), whichever source each came from."""
    return [
        {
            "id": "mpi-whole-person",
            "title": "Whole person: all linked records",
            "order": 15,
            "url": "/fhir/Patient/{patient_id}/$everything?_mdm=true&_count=200&_type="
            + CHART_TYPES,
        }
    ]


@hookimpl
def register_commands(cli: Any) -> None:
    @cli.command("mpi-train")  # type: ignore[untyped-decorator]
    def train_command(
        db: str | None = None, out: str = "mpi-model.json", limit: int = 200000
    ) -> None:
        """Estimate the MPI's model from this hub's Patients (EM, unsupervised) into OUT;
        point ``FHIRHUB_MPI_MODEL_PATH`` at it to use it."""
        import json

        from fhirhub.plugins.mpi.model import train

        with command_hub(db=db) as hub:
            records = service_of(hub).index.sample_records(limit)
        if len(records) < 100:
            raise SystemExit(f"Only {len(records)} patients indexed: too few to train on")
        Path(out).write_text(json.dumps(train(records), indent=1))
        print(f"Model trained on {len(records)} patients: {out}")
