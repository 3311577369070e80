"""Optional second validation stage: the fhir.resources R4B models.

The definitions-driven walker (:mod:`.structure`) is the run-time validator: it is stricter
for R4 JSON and about ten times cheaper (see the package docstring). Some deployments want the
widely used fhir.resources models in the write path as well, as an independent second
opinion; ``FHIRHUB_VALIDATE_MODELS=1`` turns this stage on (about +210 µs per resource, which
takes SQLite ingest below 1,500 resources/s on two cores). R4-only resource types have no R4B
model and are left to the walker.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import ValidationError

from fhirhub.fhir_store.errors import FhirError, Issue


@cache
def _model(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError):
        return None


def _path(resource_type: str, location: tuple[int | str, ...]) -> str:
    path = resource_type
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def model_error(resource: dict[str, Any]) -> FhirError | None:
    """The R4B model's verdict on an already structurally valid resource, as a 400 error."""
    resource_type = str(resource.get("resourceType", ""))
    model = _model(resource_type)
    if model is None:
        return None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        issues = [
            Issue(
                "error",
                "structure",
                f"{error['msg']} (fhir.resources R4B model)",
                (_path(resource_type, tuple(error["loc"])),),
            )
            for error in exc.errors()[:100]
        ]
        return FhirError(400, issues=issues)
    return None
