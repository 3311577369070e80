"""Validation of incoming FHIR R4 (4.0.1) resources.

Public API:

* :data:`R4_RESOURCE_TYPES`: the 146 R4 resource types.
* :func:`validate_resource`: raise a 400 ``FhirError`` (one issue per problem) unless valid.
* :func:`validate_many`: the same for many resources, optionally in worker processes.
* :func:`resource_issues`: the issues without raising.

The element tree, primitive formats and required-binding codes come from the R4
StructureDefinitions and ValueSets (``fhir_store/definitions``, derived by
``tools/derive_validation_data.py``); see :mod:`.structure` for what is checked. Because the R4
definitions drive every type, the R4-only resource types (EffectEvidenceSynthesis,
MedicinalProduct*, Substance*...) and R4-only elements (``Extension.valueMeta``) are checked
like any other, and R4B-only types and elements (SubscriptionTopic, ``valueCodeableReference``)
are rejected.

Why not fhir.resources at run time: its R4B models are R4B, accept what R4 JSON forbids
(``"active": "yes"``, ``"value": "72"`` for a decimal, numbers for dates, nulls, empty objects),
crash on unknown contained types, skip bindings, and cost ~210 µs per Synthea resource against
~21 µs for this walker. They stay in the test suite as an oracle: every mutation of a Synthea
resource they reject, this validator rejects too (tests/fhir_store/validation).
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
