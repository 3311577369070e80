"""Validation of incoming FHIR R4 (4.0.1) resources.

Public API:

* :data:`R4_RESOURCE_TYPES`: the 146 R4 resource types.
* :func:`validate_resource`: raise a 400 ``FhirError`` (one issue per problem) unless valid.
* :func:`validate_many`: the same for many resources, optionally in worker processes.
* :func:`resource_issues`: the issues without raising.

The element tree, primitive formats and required-binding codes come from the R4
StructureDefinitions and ValueSets (``fhir_store/definitions``, derived by
``tools/derive_validation_data.py``); see :mod:`.structure` for what is checked.
"""

from __future__ import annotations

from .pool import shutdown_pool, validate_many
from .resource import R4_RESOURCE_TYPES, resource_issues, validate_resource

__all__ = [
    "R4_RESOURCE_TYPES",
    "resource_issues",
    "shutdown_pool",
    "validate_many",
    "validate_resource",
]
