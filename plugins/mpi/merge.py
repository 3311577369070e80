"""Merging two Patient records into one, and undoing it.

``Patient/$merge`` follows FHIR R5 (https://hl7.org/fhir/R5/patient-operation-merge.html),
offered on R4: in one transaction every resource that references the *source* Patient is
changed to reference the *target*; the source is marked ``active: false`` with a ``link`` of
type ``replaced-by`` (or deleted with ``delete-source``); the target gets ``link`` ``replaces``
and the source's identifiers (``use: old``), unless a ``result-patient`` says what the target
must become; a ``Provenance`` (activity ``merge``) names the target, the source and every
moved resource, which is what ``$unmerge`` reads to move them back.

What is not moved: the audit trail (``Provenance``, ``AuditEvent``), master records
(``Person``), ``Patient.link`` entries of other Patients, and the MPI's own review Tasks.

A merge that arrives as data rather than as an operation (an HL7 ADT^A40, which the HL7
adapter turns into a retired source Patient with ``replaced-by``) is completed by
:func:`complete_merges` from the ``before_commit`` hook, in the message's own transaction:
its references are moved and a Provenance written, so the adapter needs no MPI call.
"""

from __future__ import annotations

import contextvars
import time
from typing import Any

from fhirhub.plugins.mpi import linking
from fhirhub.plugins.mpi import vocabulary as vocab
from fhirhub.sdk import (
    Access,
    FhirError,
    Transaction,
    WriteResult,
    conflict,
    format_instant,
    invalid,
    tenant_of,
)

#: Types whose references to a merged Patient stay as they are (module docstring).
NOT_MOVED = frozenset({"Provenance", "AuditEvent", "Person", "Patient", "Linkage"})

#: Set while the MPI itself merges, so ``complete_merges`` leaves that unit alone.
_merging: contextvars.ContextVar[bool] = contextvars.ContextVar("mpi_merging", default=False)


def _rewrite(value: Any, old: str, new: str) -> Any:
    """A copy of ``value`` with every reference to ``old`` (``Patient/x``, also versioned)
    pointing at ``new``."""
    if isinstance(value, dict):
        out = {k: _rewrite(v, old, new) for k, v in value.items()}
        reference = value.get("reference")
        if isinstance(reference, str) and (
            reference == old or reference.startswith(f"{old}/_history/")
        ):
            out["reference"] = new
        return out
    if isinstance(value, list):
        return [_rewrite(item, old, new) for item in value]
    return value


def movable(tx: Transaction, patient_id: str) -> list[tuple[str, str]]:
    """The resources a merge of ``Patient/patient_id`` moves."""
    out = []
    for resource_type, resource_id in tx.referencing("Patient", patient_id):
        if resource_type in NOT_MOVED:
            continue
        if resource_type == "Task" and linking.is_review(tx.read("Task", resource_id)):
            continue
        out.append((resource_type, resource_id))
    return out


def move_references(
    tx: Transaction, resources: list[tuple[str, str]], old: str, new: str
) -> list[WriteResult]:
    written = []
    for resource_type, resource_id in resources:
        resource = tx.read(resource_type, resource_id)
        moved = _rewrite(linking.editable(resource), f"Patient/{old}", f"Patient/{new}")
        written.append(tx.update(moved))
    return written


def merge(
    tx: Transaction,
    source_id: str,
    target_id: str,
    *,
    result_patient: dict[str, Any] | None = None,
    delete_source: bool = False,
    preview: bool = False,
    by: Access | None,
) -> dict[str, Any]:
    """Merge ``Patient/source_id`` into ``Patient/target_id`` (module docstring); returns the
    target as it is (or, with ``preview``, would be) after the merge."""
    if source_id == target_id:
        raise invalid("The source and target patients are the same record")
    source = tx.read("Patient", source_id)
    target = tx.read("Patient", target_id)
    if tenant_of(source) != tenant_of(target):
        raise invalid("The source and target patients belong to different organisations")
    if any(link.get("type") == "replaced-by" for link in source.get("link") or []):
        raise conflict(f"Patient/{source_id} was already merged into another record")
    if result_patient is not None and result_patient.get("id") not in (None, target_id):
        raise invalid("result-patient must have the target patient's id")
    resources = movable(tx, source_id)
    merged_target = _merged_target(source, target, result_patient)
    if preview:
        return merged_target
    token = _merging.set(True)
    try:
        written = move_references(tx, resources, source_id, target_id)
        written.append(tx.update(merged_target))
        if delete_source:
            deleted = tx.delete("Patient", source_id)
            if deleted is not None:
                written.append(deleted)
        else:
            retired = linking.editable(source)
            retired["active"] = False
            retired["link"] = [
                link for link in source.get("link") or [] if link.get("type") != "replaced-by"
            ] + [{"other": {"reference": f"Patient/{target_id}"}, "type": "replaced-by"}]
            written.append(tx.update(retired))
        _merge_provenance(tx, "merge", written, source_id, target_id, by=by)
    finally:
        _merging.reset(token)
    return merged_target


def _merged_target(
    source: dict[str, Any], target: dict[str, Any], result_patient: dict[str, Any] | None
) -> dict[str, Any]:
    merged = linking.editable(result_patient if result_patient is not None else target)
    merged["id"] = target["id"]
    if "meta" not in merged and (target.get("meta") or {}).get("security"):
        merged["meta"] = {"security": target["meta"]["security"]}
    if result_patient is None:
        present = {(i.get("system"), i.get("value")) for i in merged.get("identifier") or []}
        for identifier in source.get("identifier") or []:
            if (identifier.get("system"), identifier.get("value")) not in present:
                merged.setdefault("identifier", []).append({**identifier, "use": "old"})
    replaces = {"other": {"reference": f"Patient/{source['id']}"}, "type": "replaces"}
    if replaces not in (merged.get("link") or []):
        merged.setdefault("link", []).append(replaces)
    return merged


def _merge_provenance(
    tx: Transaction,
    activity: str,
    written: list[WriteResult],
    source_id: str,
    target_id: str,
    *,
    by: Access | None,
) -> None:
    targets = [
        {
            "reference": f"{w.version.resource_type}/{w.version.resource_id}"
            f"/_history/{w.version.version_id}"
        }
        for w in written
    ]
    for patient_id in (source_id, target_id):
        if not any(t["reference"].startswith(f"Patient/{patient_id}/") for t in targets):
            targets.append({"reference": f"Patient/{patient_id}"})
    linking.write_provenance(
        tx,
        {
            "resourceType": "Provenance",
            "target": targets,
            "recorded": format_instant(time.time_ns() // 1000),
            "activity": {
                "coding": [vocab.coding(activity)],
                "text": f"Patient/{source_id} {activity}d into Patient/{target_id}"
                if activity == "merge"
                else f"Patient/{source_id} separated again from Patient/{target_id}",
            },
            "agent": [linking.agent_of(by)],
            "entity": [
                {"role": "removal", "what": {"reference": f"Patient/{source_id}"}},
                {"role": "revision", "what": {"reference": f"Patient/{target_id}"}},
            ],
        },
    )


def _last_merge(tx: Transaction, source_id: str) -> dict[str, Any] | None:
    """The Provenance of the merge of ``source_id`` still in force (None if it was undone)."""
    found = tx.search(
        "Provenance", {"target": f"Patient/{source_id}", "_sort": "-recorded", "_count": "100"}
    )
    for provenance in found:
        codes = {
            c.get("code")
            for c in (provenance.get("activity") or {}).get("coding") or []
            if c.get("system") == vocab.CODE_SYSTEM
        }
        removed = [e for e in provenance.get("entity") or [] if e.get("role") == "removal"]
        if not removed or removed[0]["what"]["reference"] != f"Patient/{source_id}":
            continue
        if "unmerge" in codes:
            return None
        if "merge" in codes:
            return provenance
    return None


def unmerge(tx: Transaction, source_id: str, *, by: Access | None) -> dict[str, Any]:
    """Undo the merge of ``Patient/source_id``: the resources it moved point at the source
    again, the source is active with no ``replaced-by``, the target loses ``replaces`` and
    the identifiers it took over. Resources written for the target since the merge stay.
    Returns the restored source."""
    record = _last_merge(tx, source_id)
    if record is None:
        raise conflict(f"Patient/{source_id} has no merge to undo")
    target_id = next(
        e["what"]["reference"].split("/")[1]
        for e in record["entity"]
        if e.get("role") == "revision"
    )
    try:
        source = tx.read("Patient", source_id)
    except FhirError as error:
        raise conflict(
            f"Patient/{source_id} was deleted by the merge; it cannot be restored"
        ) from error
    target = tx.read("Patient", target_id)
    moved = []
    for entry in record["target"]:
        resource_type, resource_id = entry["reference"].split("/")[:2]
        if resource_type != "Patient":
            moved.append((resource_type, resource_id))
    token = _merging.set(True)
    try:
        written = move_references(tx, moved, target_id, source_id)
        restored = linking.editable(source)
        restored["active"] = True
        restored["link"] = [
            link
            for link in source.get("link") or []
            if not (
                link.get("type") == "replaced-by"
                and link["other"].get("reference") == f"Patient/{target_id}"
            )
        ]
        if not restored["link"]:
            del restored["link"]
        written.append(tx.update(restored))
        taken = {(i.get("system"), i.get("value")) for i in source.get("identifier") or []}
        separated = linking.editable(target)
        separated["identifier"] = [
            i
            for i in target.get("identifier") or []
            if not (i.get("use") == "old" and (i.get("system"), i.get("value")) in taken)
        ]
        separated["link"] = [
            link
            for link in target.get("link") or []
            if not (
                link.get("type") == "replaces"
                and link["other"].get("reference") == f"Patient/{source_id}"
            )
        ]
        for element in ("identifier", "link"):
            if not separated[element]:
                del separated[element]
        written.append(tx.update(separated))
        _merge_provenance(tx, "unmerge", written, source_id, target_id, by=by)
    finally:
        _merging.reset(token)
    return restored


def complete_merges(tx: Transaction, by: Access | None) -> None:
    """``before_commit``: for each Patient this unit retired with ``replaced-by`` (an HL7
    ADT^A40, a client's update), move what still references it to its replacement."""
    if _merging.get():
        return
    retired: list[tuple[str, str]] = []
    for version in tx.written:
        if (
            version.resource_type != "Patient"
            or version.deleted
            or not version.content
            or b"replaced-by" not in version.content
        ):
            continue
        import orjson

        patient = orjson.loads(version.content)
        for link in patient.get("link") or []:
            reference = str((link.get("other") or {}).get("reference") or "")
            if link.get("type") == "replaced-by" and reference.startswith("Patient/"):
                retired.append((version.resource_id, reference.split("/")[1]))
    for source_id, target_id in retired:
        resources = movable(tx, source_id)
        if not resources:
            continue
        token = _merging.set(True)
        try:
            written = move_references(tx, resources, source_id, target_id)
            _merge_provenance(tx, "merge", written, source_id, target_id, by=by)
        finally:
            _merging.reset(token)
