"""The MPI's FHIR operations: ``Patient/$match``, ``Patient/$merge``, ``Patient/$unmerge``."""

from __future__ import annotations

from typing import Any

from fhirhub.plugins.mpi import merge as merging
from fhirhub.plugins.mpi import vocabulary as vocab
from fhirhub.plugins.mpi.features import features_of
from fhirhub.plugins.mpi.index import NO_TENANT
from fhirhub.plugins.mpi.service import service_of
from fhirhub.sdk import (
    FhirError,
    Operation,
    OperationCall,
    acting_as,
    current_access,
    forbidden,
    invalid,
    search,
    system_for,
    tenant_of,
    transaction,
    validation_issues,
)

#: Roles that may merge, unmerge and decide reviews (each moves clinical data between charts).
DECIDING_ROLES = ("super_admin", "clinician")


def _parameter(call: OperationCall, name: str) -> dict[str, Any] | None:
    body = call.body or {}
    if body.get("resourceType") != "Parameters":
        return None
    for parameter in body.get("parameter") or []:
        if parameter.get("name") == name:
            return dict(parameter)
    return None


def _boolean(call: OperationCall, name: str) -> bool:
    values = call.parameters.get(name) or []
    if not values:
        return False
    value = values[-1].strip().lower()
    if value not in ("true", "false"):
        raise invalid(f"{name} must be true or false, not {values[-1]!r}")
    return value == "true"


def _require_user_level() -> None:
    """``$match`` reveals who else is in the index: not for patient-facing apps."""
    access = current_access()
    if access.patient is not None:
        raise forbidden("Patient/$match needs a user-level or system-level scope")
    if access.scopes is not None and not any(
        scope.context in ("user", "system") and scope.grants("r", "Patient")
        for scope in access.scopes
    ):
        raise forbidden("Patient/$match needs a user/Patient.r (or system/Patient.r) scope")


def match_operation(call: OperationCall) -> dict[str, Any]:
    """``Patient/$match`` (http://hl7.org/fhir/R4/patient-operation-match.html)."""
    _require_user_level()
    resource = call.body if (call.body or {}).get("resourceType") == "Patient" else None
    if resource is None:
        parameter = _parameter(call, "resource")
        resource = parameter.get("resource") if parameter else None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        raise invalid("Patient/$match needs a Patient in the 'resource' parameter")
    # "does not have to be complete ... but it does have to be a valid instance" (R4 $match)
    problems = [i for i in validation_issues(resource) if i.severity in ("error", "fatal")]
    if problems:
        raise FhirError(400, "The Patient to match is not a valid instance", issues=problems)
    count_values = call.parameters.get("count") or []
    count = 10
    if count_values:
        try:
            count = int(count_values[-1])
        except ValueError:
            raise invalid("count must be an integer") from None
        if count < 1:
            raise invalid("count must be at least 1")
    only_certain = _boolean(call, "onlyCertainMatches")
    access = current_access()
    tenant = access.tenant or tenant_of(resource) or NO_TENANT
    service = service_of(call.hub)
    features = features_of({**resource, "id": ""})
    verdicts = [v for v in service.matcher.match(tenant, features) if v.grade != "certainly-not"]
    if only_certain:
        verdicts = [v for v in verdicts if v.grade == "certain"]
        if len(verdicts) > 1:
            verdicts = []  # several "certain" records: none of them is the answer
    verdicts = verdicts[:count]
    found: dict[str, dict[str, Any]] = {}
    if verdicts:
        ids = ",".join(v.candidate_id for v in verdicts)
        found = {p["id"]: p for p in search(call.hub, "Patient", {"_id": ids, "_count": "1000"})}
    entries = []
    for verdict in verdicts:
        patient = found.get(verdict.candidate_id)
        if patient is None:
            continue  # not visible to this caller
        entries.append(
            {
                "fullUrl": f"{call.base_url}/Patient/{patient['id']}",
                "resource": patient,
                "search": {
                    "extension": [{"url": vocab.MATCH_GRADE, "valueCode": verdict.grade}],
                    "mode": "match",
                    "score": round(verdict.score, 4),
                },
            }
        )
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


def _patient_id(call: OperationCall, role: str) -> str:
    """The id named by ``<role>-patient`` (a Reference) or ``<role>-patient-identifier``."""
    parameter = _parameter(call, f"{role}-patient")
    if parameter and isinstance(parameter.get("valueReference"), dict):
        reference = str(parameter["valueReference"].get("reference") or "")
        if reference.startswith("Patient/") and reference.count("/") == 1:
            return reference.split("/")[1]
        raise invalid(f"{role}-patient must be a reference Patient/id")
    identifier = _parameter(call, f"{role}-patient-identifier")
    if identifier and isinstance(identifier.get("valueIdentifier"), dict):
        value = identifier["valueIdentifier"]
        criteria = f"identifier={value.get('system', '')}|{value.get('value', '')}"
        from fhirhub.sdk import match

        ids = match(call.hub, "Patient", criteria)
        if len(ids) != 1:
            raise invalid(f"{role}-patient-identifier matches {len(ids)} patients, not one")
        return ids[0]
    raise invalid(f"$merge needs {role}-patient or {role}-patient-identifier")


def merge_operation(call: OperationCall) -> dict[str, Any]:
    """``Patient/$merge`` (FHIR R5 semantics, see ``merge.py``)."""
    access = current_access()
    access.require_role(*DECIDING_ROLES)
    source_id = _patient_id(call, "source")
    target_id = _patient_id(call, "target")
    result_parameter = _parameter(call, "result-patient")
    result_patient = result_parameter.get("resource") if result_parameter else None
    preview = _boolean(call, "preview")
    with transaction(call.hub) as tx:
        source = tx.read("Patient", source_id)  # as the caller: 404 unless visible
        tx.read("Patient", target_id)
    with acting_as(system_for(tenant_of(source))), transaction(call.hub) as tx:
        result = merging.merge(
            tx,
            source_id,
            target_id,
            result_patient=result_patient,
            delete_source=_boolean(call, "delete-source"),
            preview=preview,
            by=access,
        )
    text = "Preview only: nothing was changed" if preview else "Merge completed"
    return {
        "resourceType": "Parameters",
        "parameter": [
            *([{"name": "input", "resource": call.body}] if call.body else []),
            {
                "name": "outcome",
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {"severity": "information", "code": "informational", "diagnostics": text}
                    ],
                },
            },
            {"name": "result", "resource": result},
        ],
    }


def unmerge_operation(call: OperationCall) -> dict[str, Any]:
    """``Patient/$unmerge``: undo the merge of ``source-patient`` (see ``merge.py``)."""
    access = current_access()
    access.require_role(*DECIDING_ROLES)
    source_id = _patient_id(call, "source")
    with transaction(call.hub) as tx:
        source = tx.read("Patient", source_id)
    with acting_as(system_for(tenant_of(source))), transaction(call.hub) as tx:
        restored = merging.unmerge(tx, source_id, by=access)
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "outcome",
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "information",
                            "code": "informational",
                            "diagnostics": "Unmerge completed",
                        }
                    ],
                },
            },
            {"name": "result", "resource": restored},
        ],
    }


def decide_operation(call: OperationCall) -> dict[str, Any]:
    """``Task/{id}/$mpi-decide``: a reviewer's answer to a review Task, ``decision`` ``same``
    (link the two records) or ``not-same`` (never propose them again)."""
    from fhirhub.plugins.mpi import linking

    access = current_access()
    access.require_role(*DECIDING_ROLES)
    values = call.parameters.get("decision") or []
    if not values or values[-1] not in ("same", "not-same"):
        raise invalid("decision must be 'same' or 'not-same'")
    same = values[-1] == "same"
    assert call.resource_id is not None
    with transaction(call.hub) as tx:
        task = tx.read("Task", call.resource_id)  # as the caller: 404 unless visible
        a, b = linking.review_candidates(task)
        tx.read("Patient", a)
        tx.read("Patient", b)
    tenant = tenant_of(task)
    with acting_as(system_for(tenant)), transaction(call.hub) as tx:
        updated = linking.decide(tx, call.resource_id, same=same, by=access)
    if not same:
        service_of(call.hub).index.reject(tenant or NO_TENANT, a, b, call.resource_id)
    return updated


def operations() -> list[Operation]:
    return [
        Operation(
            "match",
            match_operation,
            type_level=True,
            resource_types=("Patient",),
            description="Find the records of the same person (splink model, graded)",
            definition_url="http://hl7.org/fhir/OperationDefinition/Patient-match",
            parameters=(
                {"name": "resource", "use": "in", "min": 1, "max": "1", "type": "Resource"},
                {
                    "name": "onlyCertainMatches",
                    "use": "in",
                    "min": 0,
                    "max": "1",
                    "type": "boolean",
                },
                {"name": "count", "use": "in", "min": 0, "max": "1", "type": "integer"},
                {"name": "return", "use": "out", "min": 1, "max": "1", "type": "Bundle"},
            ),
        ),
        Operation(
            "merge",
            merge_operation,
            type_level=True,
            resource_types=("Patient",),
            affects_state=True,
            description="Merge a source patient into a target patient (FHIR R5 semantics)",
            definition_url="http://hl7.org/fhir/OperationDefinition/Patient-merge",
            parameters=(
                {"name": "source-patient", "use": "in", "min": 0, "max": "1", "type": "Reference"},
                {
                    "name": "source-patient-identifier",
                    "use": "in",
                    "min": 0,
                    "max": "*",
                    "type": "Identifier",
                },
                {"name": "target-patient", "use": "in", "min": 0, "max": "1", "type": "Reference"},
                {
                    "name": "target-patient-identifier",
                    "use": "in",
                    "min": 0,
                    "max": "*",
                    "type": "Identifier",
                },
                {"name": "result-patient", "use": "in", "min": 0, "max": "1", "type": "Patient"},
                {"name": "preview", "use": "in", "min": 0, "max": "1", "type": "boolean"},
                {"name": "delete-source", "use": "in", "min": 0, "max": "1", "type": "boolean"},
                {"name": "outcome", "use": "out", "min": 1, "max": "1", "type": "OperationOutcome"},
                {"name": "result", "use": "out", "min": 0, "max": "1", "type": "Patient"},
            ),
        ),
        Operation(
            "mpi-decide",
            decide_operation,
            instance=True,
            resource_types=("Task",),
            affects_state=True,
            description="Answer an MPI review Task: the same person, or not",
            parameters=(
                {"name": "decision", "use": "in", "min": 1, "max": "1", "type": "code"},
                {"name": "return", "use": "out", "min": 1, "max": "1", "type": "Task"},
            ),
        ),
        Operation(
            "unmerge",
            unmerge_operation,
            type_level=True,
            resource_types=("Patient",),
            affects_state=True,
            description="Undo a merge: move the source patient's resources back",
            parameters=(
                {"name": "source-patient", "use": "in", "min": 1, "max": "1", "type": "Reference"},
                {"name": "result", "use": "out", "min": 1, "max": "1", "type": "Patient"},
            ),
        ),
    ]
