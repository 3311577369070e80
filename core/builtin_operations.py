"""Operations the core provides, registered through the same hook as any plugin's."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhirhub.core.hookspecs import hookimpl
from fhirhub.core.interactions.validate import validate_operation
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
    follow = [v.strip().lower() for v in call.parameters.get("_mdm", [])]
    if any(v not in ("true", "false") for v in follow):
        raise invalid("_mdm must be true or false")
    visibility = current_access().visibility("r")
    with call.hub.store.read() as conn:
        read(conn, "Patient", call.resource_id)  # 404 unless the caller may see the patient
        linked: list[str] = []
        if follow and follow[-1] == "true":
            linked = linked_patients(conn, call.resource_id)
            # A patient-facing caller may see its own linked records (they reference it
            # through Patient.link, so they are in its compartment) and what is theirs.
            linked = [i for i in linked if _visible(conn, i)]
            if linked and visibility.patient is not None:
                visibility = replace(visibility, patient=None)
        return everything(
            conn,
            call.hub.store.registry,
            call.resource_id,
            base_url=call.base_url,
            params=params,
            visibility=visibility,
            linked=linked,
        )


#: At most this many records of one person are followed through ``Patient.link``.
MAX_LINKED = 50


def linked_patients(conn: Any, patient_id: str) -> list[str]:
    """The Patients reachable from ``patient_id`` through ``Patient.link`` (any link type:
    seealso, refer, replaces, replaced-by; both directions), itself excluded: the records of
    the same person a master patient index linked, or a merge retired."""
    from sqlalchemy import or_, select

    from fhirhub.fhir_store.search.index_tables import index_reference as ref

    seen = {patient_id}
    frontier = [patient_id]
    while frontier and len(seen) < MAX_LINKED:
        rows = conn.execute(
            select(ref.c.resource_id, ref.c.target_id).where(
                ref.c.resource_type == "Patient",
                ref.c.param == "link",
                ref.c.target_type == "Patient",
                or_(ref.c.resource_id.in_(frontier), ref.c.target_id.in_(frontier)),
            )
        ).all()
        found = {str(i) for row in rows for i in row} - seen
        seen |= found
        frontier = sorted(found)
    return sorted(seen - {patient_id})[:MAX_LINKED]


def _visible(conn: Any, patient_id: str) -> bool:
    from fhirhub.core.interactions.read import read
    from fhirhub.fhir_store.errors import FhirError

    try:
        read(conn, "Patient", patient_id)
    except FhirError:
        return False
    return True


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
            description="All resources in the patient's compartment and what they reference; "
            "with _mdm=true also those of the records linked to it through Patient.link",
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
            "validate",
            validate_operation,
            type_level=True,
            instance=True,
            description="Validate a resource: structure and required bindings (errors), "
            "extensible and preferred bindings (warnings, with a terminology plugin)",
            definition_url="http://hl7.org/fhir/OperationDefinition/Resource-validate",
            parameters=(
                {"name": "resource", "use": "in", "min": 0, "max": "1", "type": "Resource"},
                _in("mode", "code", "create | update | delete"),
                _in("profile", "uri", "Only the base R4 definition is checked"),
                {"name": "return", "use": "out", "min": 1, "max": "1", "type": "OperationOutcome"},
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
