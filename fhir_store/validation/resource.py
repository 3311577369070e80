"""Validation of one incoming resource: the entry point the write path calls.

Everything a client can get wrong in the body is a 400 with one OperationOutcome issue per
problem (R4 http.html#2.21.0.17: "400 Bad Request - resource could not be parsed or failed
basic FHIR validation rules"). ``id`` is optional (the server assigns it on create) and
``meta.versionId`` / ``meta.lastUpdated`` are accepted as sent because the server overwrites
them.
"""

from __future__ import annotations

from fhirhub.fhir_store.errors import FhirError, Issue

from .primitives import json_kind
from .schema import resource_type_names, schema
from .structure import Walker, unknown_type_message

#: The 146 resource types of FHIR R4 4.0.1 (from its StructureDefinitions).
R4_RESOURCE_TYPES: frozenset[str] = resource_type_names()[0]


def resource_issues(resource: object, *, expected_type: str | None = None) -> list[Issue]:
    """The problems of ``resource`` as OperationOutcome issues (empty when valid)."""
    if type(resource) is not dict:
        return [
            Issue(
                "error",
                "structure",
                f"A resource must be a JSON object, got {json_kind(resource)}",
            )
        ]
    compiled = schema()
    resource_type = resource.get("resourceType")
    node = compiled.resources.get(resource_type) if type(resource_type) is str else None
    if node is None:
        return [Issue("error", "structure", unknown_type_message(resource_type, compiled))]
    if expected_type is not None and resource_type != expected_type:
        return [
            Issue(
                "error",
                "invalid",
                f"resourceType {resource_type!r} does not match the type in the URL "
                f"({expected_type!r})",
                ("resourceType",),
            )
        ]
    walker = Walker(compiled)
    try:
        walker.node(resource, node, node.name)
    except RecursionError:
        # Only a hostile document nests elements hundreds deep (Extension.extension...).
        return [Issue("error", "too-costly", "The resource is nested too deeply to validate")]
    return walker.issues


def validate_resource(resource: object, *, expected_type: str | None = None) -> None:
    """Raise a 400 :class:`FhirError` listing every problem unless ``resource`` is valid R4."""
    issues = resource_issues(resource, expected_type=expected_type)
    if issues:
        raise FhirError(400, issues=issues)
