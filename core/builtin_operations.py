"""Operations the core provides, registered through the same hook as any plugin's."""

from __future__ import annotations

from typing import Any

from fhirhub.core.hookspecs import hookimpl
from fhirhub.core.operations import Operation, OperationCall
from fhirhub.fhir_store.errors import invalid


def _everything(call: OperationCall) -> bytes:
    """``Patient/{id}/$everything`` (http://hl7.org/fhir/R4/patient-operation-everything.html)."""
    from fhirhub.core.access import current_access
    from fhirhub.core.interactions.read import read
    from fhirhub.fhir_store.search.query import everything

    if call.resource_id is None:
        raise invalid("Patient/$everything needs a patient id (Patient/{id}/$everything)")
    params = [(k, v) for k, values in call.parameters.items() for v in values]
    with call.hub.store.read() as conn:
        read(conn, "Patient", call.resource_id)  # 404 unless the caller may see the patient
        return everything(
            conn,
            call.hub.store.registry,
            call.resource_id,
            base_url=call.base_url,
            params=params,
            visibility=current_access().visibility("r"),
        )


def _reindex(call: OperationCall) -> dict[str, Any]:
    """``$reindex``: rebuild search indexes (after SearchParameters were added at run time)."""
    from fhirhub.core.access import current_access

    current_access().require_role("super_admin")
    types = call.parameters.get("type") or None
    with call.hub.store.unit_of_work() as uow:
        count = call.hub.store.indexer.reindex(uow.conn, types)
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "reindexed", "valueInteger": count}],
    }


def _in(name: str, kind: str, documentation: str, *, many: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "use": "in",
        "min": 0,
        "max": "*" if many else "1",
        "type": kind,
        "documentation": documentation,
    }


@hookimpl
def register_operations(hub: Any) -> list[Operation]:
    return [
        Operation(
            "everything",
            _everything,
            instance=True,
            resource_types=("Patient",),
            description="All resources in the patient's compartment and what they reference",
            definition_url="http://hl7.org/fhir/OperationDefinition/Patient-everything",
            parameters=(
                _in("start", "date", "Care dates from (resources without one are kept)"),
                _in("end", "date", "Care dates up to"),
                _in("_since", "instant", "Only resources updated at or after"),
                _in("_type", "code", "Only these resource types (comma-separated)", many=True),
                _in("_count", "integer", "Page size"),
                {"name": "return", "use": "out", "min": 1, "max": "1", "type": "Bundle"},
            ),
        ),
        Operation(
            "reindex",
            _reindex,
            system=True,
            affects_state=True,
            description="Rebuild search indexes for all or some resource types",
        ),
    ]
