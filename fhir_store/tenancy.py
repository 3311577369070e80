"""Which tenant (an Organization) a resource belongs to.

A tenant is an Organization: a hospital or clinic sharing the hub. Ownership is written on
the resource itself, as a security label in ``meta.security`` (FHIR R4 §8.8 Security Labels),
so it travels with exports and is visible to FHIR clients; the store copies it into the
``tenant`` columns of the log and the current projection so that searches, totals and history
can filter on it with an index instead of parsing JSON. A resource without the label belongs
to no tenant (shared data such as terminology, or data written before tenants were used).
"""

from __future__ import annotations

from typing import Any

#: The ``Coding.system`` of the tenant label; its ``code`` is the Organization id.
TENANT_SYSTEM = "https://fhirhub.dev/fhir/CodeSystem/tenant"


#: Resource types that hold no patient data: definitions every tenant shares (terminology,
#: profiles, search parameters). One without a tenant label is readable by any authenticated
#: caller whose scopes name the type, whatever its tenant, and writing it needs an
#: unrestricted caller; one labelled with a tenant (a tenant's own code system) is that
#: tenant's only (:func:`visible_to_tenant`).
SHARED_TYPES = frozenset(
    {
        "CapabilityStatement",
        "CodeSystem",
        "CompartmentDefinition",
        "ConceptMap",
        "GraphDefinition",
        "ImplementationGuide",
        "NamingSystem",
        "OperationDefinition",
        "SearchParameter",
        "StructureDefinition",
        "StructureMap",
        "TerminologyCapabilities",
        "ValueSet",
    }
)


#: Shared types a caller confined to a tenant may write for its own tenant: its local code
#: systems, value sets and concept maps, labelled with the tenant and seen by it alone.
TENANT_TERMINOLOGY_TYPES = frozenset({"CodeSystem", "ConceptMap", "ValueSet"})


def visible_to_tenant(resource_type: str, tenant: str | None, caller_tenant: str) -> bool:
    """Whether a resource stored with ``tenant`` (its label, None without one) is visible to
    a caller confined to ``caller_tenant``: its own tenant's, or shared (a type of
    :data:`SHARED_TYPES` without a tenant label)."""
    return tenant == caller_tenant or (tenant is None and resource_type in SHARED_TYPES)


def tenant_of(resource: dict[str, Any]) -> str | None:
    """The tenant label's code, or None when the resource carries none."""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return None
    for coding in meta.get("security") or ():
        if isinstance(coding, dict) and coding.get("system") == TENANT_SYSTEM:
            code = coding.get("code")
            return code if isinstance(code, str) and code else None
    return None


def with_tenant(resource: dict[str, Any], tenant: str) -> None:
    """Label ``resource`` (in place) as owned by ``tenant``, replacing any other tenant label:
    a client may not move data into, or out of, a tenant by editing the label."""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        meta = {}
        resource["meta"] = meta
    labels = [
        coding
        for coding in meta.get("security") or ()
        if not (isinstance(coding, dict) and coding.get("system") == TENANT_SYSTEM)
    ]
    labels.append({"system": TENANT_SYSTEM, "code": tenant})
    meta["security"] = labels
