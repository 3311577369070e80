"""Structural validation against the FHIR R4 definitions, for plugins that check resources
before handing them to a write (an adapter validating its conversions in a worker process,
so the writer can skip the walk: ``Transaction.bundle(..., validated=True)``)."""

from __future__ import annotations

from fhirhub.fhir_store.errors import Issue
from fhirhub.fhir_store.validation.resource import resource_issues
from fhirhub.fhir_store.validation.schema import schema


def validation_issues(resource: object, *, expected_type: str | None = None) -> list[Issue]:
    """The problems of ``resource`` as OperationOutcome issues; empty when it is valid
    (elements, types, cardinality, required bindings of FHIR R4)."""
    return resource_issues(resource, expected_type=expected_type)


def prepare_validation() -> None:
    """Compile the validator's element tree now (~50 ms, once per process) rather than on
    the first resource: a worker process calls it before it says it is ready."""
    schema()
