"""``POST /fhir/CodeSystem/$load``: an administrator loads a code system in the background.

The operation answers at once with a Task (``status = in-progress``) and runs the load as a
background task (``hub.tasks``: in-process, or on a Celery worker); the Task becomes
``completed`` with the loaded version in its ``output``, or ``failed`` with the reason. Only
sources the server can read without an upload are offered: ICD-10-CM from the installed package,
or a file path on the server (``path``) for the CMS CSV, LOINC and SNOMED CT.
"""

from __future__ import annotations

from typing import Any

from fhirhub.sdk import (
    SYSTEM,
    Operation,
    OperationCall,
    acting_as,
    current_access,
    invalid,
    transaction,
)

ADMIN_ROLES = ("super_admin", "app_admin")
TASK_CODE_SYSTEM = "https://fhirhub.dev/fhir/CodeSystem/terminology-task"


def _text(call: OperationCall, name: str) -> str | None:
    values = call.parameters.get(name) or []
    return values[-1] if values else None


def load_operation() -> Operation:
    return Operation(
        "load",
        _load,
        type_level=True,
        resource_types=("CodeSystem",),
        affects_state=True,
        writes=("Task",),
        description="Load a code system version in the background (administrators); returns a Task",
        parameters=(
            {"name": "source", "use": "in", "min": 1, "max": "1", "type": "code"},
            {"name": "path", "use": "in", "min": 0, "max": "1", "type": "string"},
            {"name": "version", "use": "in", "min": 0, "max": "1", "type": "string"},
        ),
    )


def _load(call: OperationCall) -> dict[str, Any]:
    access = current_access()
    access.require_role(*ADMIN_ROLES)
    if access.tenant is not None:
        from fhirhub.sdk import forbidden

        raise forbidden(
            "Loaded terminology is shared by every tenant: only a hub administrator loads it "
            "(a tenant writes its own CodeSystem resources)"
        )
    from fhirhub.plugins.terminology.loading import SOURCES

    source = _text(call, "source")
    if source not in SOURCES:
        raise invalid(f"source must be one of {', '.join(SOURCES)}")
    path, version = _text(call, "path"), _text(call, "version")
    task = {
        "resourceType": "Task",
        "status": "in-progress",
        "intent": "order",
        "code": {
            "coding": [
                {"system": TASK_CODE_SYSTEM, "code": "load", "display": "Load a code system"}
            ]
        },
        "input": [
            {"type": {"text": name}, "valueString": value}
            for name, value in (("source", source), ("path", path), ("version", version))
            if value
        ],
    }
    with acting_as(SYSTEM), transaction(call.hub) as tx:
        written = tx.create(task)
    task_id = written.version.resource_id
    assert call.hub.tasks is not None
    call.hub.tasks.submit("terminology.load", source, path, version, task_id)
    return {**task, "id": task_id}


def run_load_task(
    hub: Any, source: str, path: str | None, version: str | None, task_id: str
) -> dict[str, Any]:
    """The background task: load, then record the outcome on the Task."""
    from fhirhub.plugins.terminology.loading import load

    def finish(status: str, output: list[dict[str, Any]]) -> None:
        with acting_as(SYSTEM), transaction(hub) as tx:
            task = tx.read("Task", task_id)
            task["status"] = status
            task["output"] = output
            tx.update(task)

    def progress(step: str, done: int, total: int) -> None:
        return None

    try:
        result = load(hub, source, path=path, version=version, progress=progress)
    except Exception as exc:
        finish("failed", [{"type": {"text": "error"}, "valueString": str(exc)[:1000]}])
        return {"status": "failed", "error": str(exc)}
    summary = result.summary()
    finish(
        "completed",
        [
            {"type": {"text": key}, "valueString": str(value)}
            for key, value in summary.items()
            if value is not None
        ],
    )
    return {"status": "completed", **summary}
