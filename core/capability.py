"""The CapabilityStatement, generated from what is registered at run time
(http://hl7.org/fhir/R4/capabilitystatement.html): resource types the validator knows, the
search parameters in the registry (standard and plugin-provided), and the operations of the
operation registry. Nothing here is a hand-written list of features per resource.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fhirhub import FHIR_VERSION, __version__
from fhirhub.core.interactions.write import JSON_PATCH
from fhirhub.fhir_store.validation import R4_RESOURCE_TYPES

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub

TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")
_STARTED = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _operation_entry(operation: Any, base_url: str) -> dict[str, str]:
    return {
        "name": operation.name,
        "definition": operation.definition(base_url)["url"],
    }


def _referrers(registry: Any) -> dict[str, list[str]]:
    """Target type -> the ``Source:param`` reference parameters that can point at it: what
    ``_revinclude`` accepts for that type (a parameter without declared targets, such as
    ``Observation:focus``, can point at any)."""
    referrers: dict[str, set[str]] = {}
    for source in registry.resource_types():
        for code, param in registry.for_type(source).items():
            if param.type != "reference" or not param.supported:
                continue
            for target in param.target or R4_RESOURCE_TYPES:
                referrers.setdefault(target, set()).add(f"{source}:{code}")
    return {target: sorted(names) for target, names in referrers.items()}


def capability_statement(hub: Hub, base_url: str) -> dict[str, Any]:
    registry = hub.store.registry
    operations = list(hub.operations)
    referrers = _referrers(registry)
    resources = []
    for resource_type in sorted(R4_RESOURCE_TYPES):
        params = {
            code: param
            for code, param in registry.for_type(resource_type).items()
            if param.supported
        }
        entry: dict[str, Any] = {
            "type": resource_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
            "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical", "enforced", "local"],
            "searchInclude": sorted(
                f"{resource_type}:{code}" for code, p in params.items() if p.type == "reference"
            ),
            "searchRevInclude": referrers.get(resource_type, []),
            "searchParam": [
                {
                    "name": code,
                    "definition": param.url,
                    "type": param.type,
                }
                for code, param in sorted(params.items())
            ],
        }
        type_ops = [
            _operation_entry(op, base_url)
            for op in operations
            if (op.type_level or op.instance)
            and (not op.resource_types or resource_type in op.resource_types)
        ]
        if type_ops:
            entry["operation"] = type_ops
        resources.append(entry)
    rest: dict[str, Any] = {"mode": "server"}
    security = hub.hook.capability_security(hub=hub, base_url=base_url)
    if security:
        rest["security"] = security
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _STARTED,
        "publisher": "fhirhub",
        "kind": "instance",
        "software": {"name": "fhirhub", "version": __version__},
        "implementation": {"description": "fhirhub FHIR R4 server", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": [JSON_PATCH],
        "rest": [
            {
                **rest,
                "resource": resources,
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
                "searchParam": [
                    {
                        "name": "_type",
                        "type": "token",
                        "definition": "http://hl7.org/fhir/SearchParameter/Resource-type",
                    },
                ],
                "operation": [_operation_entry(op, base_url) for op in operations if op.system],
            }
        ],
    }
