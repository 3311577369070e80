"""What every interaction checks first: a known R4 resource type, a valid id
(http://hl7.org/fhir/R4/datatypes.html#id)."""

from __future__ import annotations

import re

from fhirhub.fhir_store.errors import FhirError, invalid
from fhirhub.fhir_store.validation import R4_RESOURCE_TYPES

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-\.]{1,64}$")


def require_type(resource_type: str) -> None:
    if resource_type not in R4_RESOURCE_TYPES:
        raise FhirError(404, f"Unknown resource type {resource_type!r}", code="not-supported")


def require_id(resource_id: str) -> None:
    if not ID_PATTERN.match(resource_id):
        raise invalid(f"Invalid resource id {resource_id!r}: 1-64 of A-Z a-z 0-9 - .")
