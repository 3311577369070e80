"""Links as FHIR resources: the master ``Person``, ``Patient.link``, review ``Task``s and the
``Provenance`` of every decision.

* One ``Person`` per linked person (the master record): ``Person.link.target`` names each
  source Patient, ``assurance`` says how sure the link is (``level4``: the same identifier or a
  reviewer's confirmation; ``level3``: an automatic probabilistic link). Its name, sex and birth
  date are copied from the first record linked, for display only.
* Each linked Patient carries ``link`` entries of type ``seealso`` to the others, so a chart,
  a search (``Patient?link=Patient/x``) and ``$everything?_mdm=true`` can follow them. This is
  the only element the MPI ever writes on a source Patient (a merge is the exception, see
  ``merge.py``): demographics are never rewritten.
* A possible match opens a review ``Task`` (``code`` ``review-match``) whose inputs are both
  Patients, the score and the field-by-field agreement. The Patients are deliberately *not*
  in ``Task.for``/``Task.focus``: those put a Task in the Patient compartment, and a
  patient-facing app must never see another person's demographics through a review.
* Every link, unlink and decision gets a ``Provenance`` (activity from the MPI's CodeSystem)
  in the same transaction, naming who decided: the MPI itself, or the reviewer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fhirhub.plugins.mpi import vocabulary as vocab
from fhirhub.sdk import (
    SYSTEM,
    Access,
    FhirError,
    Transaction,
    WriteResult,
    acting_as,
    conflict,
    current_access,
    format_instant,
    with_tenant,
)

PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
MPI_AGENT = {"display": "fhirhub master patient index"}


def agent_of(access: Access | None) -> dict[str, Any]:
    """``Provenance.agent`` for a decision by ``access`` (None or the system: the MPI)."""
    if access is None or access.subject == "system":
        return {
            "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "assembler"}]},
            "who": dict(MPI_AGENT),
        }
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "verifier"}]},
        "who": {
            "identifier": {"system": "urn:fhirhub:subject", "value": access.subject},
            "display": access.subject,
        },
    }
    if access.tenant:
        agent["onBehalfOf"] = {"reference": f"Organization/{access.tenant}"}
    return agent


def provenance(
    tx: Transaction,
    activity: str,
    targets: Iterable[WriteResult | str],
    *,
    reason: str,
    by: Access | None,
) -> None:
    """Write the Provenance of one MPI decision (``targets``: what it wrote, or references)."""
    references = []
    for target in targets:
        if isinstance(target, str):
            references.append({"reference": target})
        else:
            v = target.version
            references.append(
                {"reference": f"{v.resource_type}/{v.resource_id}/_history/{v.version_id}"}
            )
    if not references:
        return
    write_provenance(
        tx,
        {
            "resourceType": "Provenance",
            "target": references,
            "recorded": format_instant(time.time_ns() // 1000),
            "activity": {"coding": [vocab.coding(activity)], "text": reason},
            "agent": [agent_of(by)],
        },
    )


def write_provenance(tx: Transaction, provenance: dict[str, Any]) -> None:
    """Create ``provenance`` labelled with the current tenant, as the system: its agent's
    ``onBehalfOf`` names the tenant's Organization, which only the system may reference (as
    the audit plugin does)."""
    tenant = current_access().tenant
    if tenant is not None:
        with_tenant(provenance, tenant)
    with acting_as(SYSTEM):
        tx.create(provenance)


def editable(resource: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored resource to write back: ``meta`` dropped (the server sets version
    and time) except its security labels (the tenant)."""
    out = {k: v for k, v in resource.items() if k != "meta"}
    security = (resource.get("meta") or {}).get("security")
    if security:
        out["meta"] = {"security": security}
    return out


# -- persons ---------------------------------------------------------------------------------


def person_of(tx: Transaction, patient_id: str) -> dict[str, Any] | None:
    """The active master Person linking ``Patient/patient_id``, if any."""
    found = tx.search("Person", {"patient": f"Patient/{patient_id}", "_count": "2"})
    return found[0] if found else None


def members(person: dict[str, Any]) -> list[str]:
    """The Patient ids a Person links, in link order."""
    out = []
    for link in person.get("link") or []:
        reference = str((link.get("target") or {}).get("reference") or "")
        if reference.startswith("Patient/"):
            out.append(reference.split("/")[1])
    return out


def linked_ids(tx: Transaction, patient_id: str) -> list[str]:
    """``patient_id`` and every Patient linked to it through its Person."""
    person = person_of(tx, patient_id)
    return members(person) if person else [patient_id]


def _link_entry(patient_id: str, assurance: str) -> dict[str, Any]:
    return {"target": {"reference": f"Patient/{patient_id}"}, "assurance": assurance}


def _new_person(patient: dict[str, Any]) -> dict[str, Any]:
    person: dict[str, Any] = {"resourceType": "Person", "active": True}
    for element in ("name", "gender", "birthDate"):
        if patient.get(element):
            person[element] = patient[element]
    person["name"] = [
        {k: v for k, v in name.items() if k in ("use", "text", "family", "given")}
        for name in person.get("name", [])[:1]
    ]
    if not person["name"]:
        del person["name"]
    return person


def link(
    tx: Transaction,
    a: str,
    b: str,
    *,
    assurance: str,
    reason: str,
    by: Access | None,
) -> dict[str, Any]:
    """Make ``Patient/a`` and ``Patient/b`` one person (module docstring); returns the Person.

    Two existing Persons are combined into the first (the second is deleted, its history
    kept). Linking two records already of one Person writes nothing."""
    person_a, person_b = person_of(tx, a), person_of(tx, b)
    if person_a and person_b and person_a["id"] == person_b["id"]:
        return person_a
    written: list[WriteResult] = []
    if person_a is None and person_b is None:
        person = _new_person(tx.read("Patient", a))
        person["link"] = [_link_entry(a, assurance), _link_entry(b, assurance)]
        result = tx.create(person)
        person["id"] = result.version.resource_id
        written.append(result)
    else:
        keep = person_a or person_b
        other = person_b if keep is person_a else person_a
        assert keep is not None
        person = editable(keep)
        present = set(members(person))
        adding = [a, b] if other is None else members(other)
        for patient_id in adding:
            if patient_id not in present:
                person.setdefault("link", []).append(_link_entry(patient_id, assurance))
                present.add(patient_id)
        written.append(tx.update(person))
        if other is not None:
            deleted = tx.delete("Person", other["id"])
            if deleted is not None:
                written.append(deleted)
    written.extend(sync_patient_links(tx, members(person)))
    provenance(tx, "link", written, reason=reason, by=by)
    return person


def unlink(tx: Transaction, patient_id: str, *, reason: str, by: Access | None) -> bool:
    """Take ``Patient/patient_id`` out of its Person (a Person left with one record is
    deleted); False when it was not linked."""
    person = person_of(tx, patient_id)
    if person is None:
        return False
    remaining = [m for m in members(person) if m != patient_id]
    written: list[WriteResult] = []
    if len(remaining) < 2:
        deleted = tx.delete("Person", person["id"])
        if deleted is not None:
            written.append(deleted)
    else:
        kept = editable(person)
        kept["link"] = [
            link
            for link in person.get("link") or []
            if (link.get("target") or {}).get("reference") != f"Patient/{patient_id}"
        ]
        written.append(tx.update(kept))
    written.extend(sync_patient_links(tx, remaining if len(remaining) >= 2 else []))
    written.extend(_set_seealso(tx, patient_id, []))
    for alone in remaining if len(remaining) < 2 else []:
        written.extend(_set_seealso(tx, alone, []))
    provenance(tx, "unlink", written, reason=reason, by=by)
    return True


def sync_patient_links(tx: Transaction, patient_ids: list[str]) -> list[WriteResult]:
    """Give each of ``patient_ids`` ``seealso`` links to the others (and to no one else)."""
    written: list[WriteResult] = []
    for patient_id in patient_ids:
        written.extend(_set_seealso(tx, patient_id, [p for p in patient_ids if p != patient_id]))
    return written


def _set_seealso(tx: Transaction, patient_id: str, others: list[str]) -> list[WriteResult]:
    try:
        patient = tx.read("Patient", patient_id)
    except FhirError:
        return []  # deleted since: nothing to link
    kept = [link for link in patient.get("link") or [] if link.get("type") != "seealso"]
    wanted = kept + [
        {"other": {"reference": f"Patient/{other}"}, "type": "seealso"} for other in others
    ]
    if wanted == (patient.get("link") or []):
        return []
    updated = editable(patient)
    if wanted:
        updated["link"] = wanted
    else:
        updated.pop("link", None)
    return [tx.update(updated)]


def seealso_ids(patient: dict[str, Any]) -> list[str]:
    """The Patient ids a Patient's ``seealso`` links name, sorted."""
    return sorted(
        str((link.get("other") or {}).get("reference", "")).removeprefix("Patient/")
        for link in patient.get("link") or []
        if link.get("type") == "seealso"
    )


def links_in_sync(tx: Transaction, patient: dict[str, Any]) -> bool:
    """Whether a stored Patient's ``seealso`` links are exactly its Person's other members
    (a source's update replaces the whole resource, links included)."""
    person = person_of(tx, str(patient["id"]))
    wanted = sorted(m for m in members(person) if m != patient["id"]) if person else []
    return wanted == seealso_ids(patient)


# -- review ----------------------------------------------------------------------------------


def review_key(a: str, b: str) -> str:
    first, second = sorted((a, b))
    return f"{first}:{second}"


def open_review(
    tx: Transaction,
    a: str,
    b: str,
    *,
    grade: str,
    score: float,
    reason: str,
    agreement: dict[str, str],
) -> WriteResult:
    """The review Task for the pair (created once: an open Task for it is returned)."""
    key = review_key(a, b)
    summary = "; ".join(f"{field}: {value}" for field, value in agreement.items())
    task = {
        "resourceType": "Task",
        "identifier": [{"system": vocab.REVIEW_IDENTIFIER, "value": key}],
        "status": "requested",
        "intent": "proposal",
        "priority": "routine",
        "code": {"coding": [vocab.coding(vocab.REVIEW_TASK)]},
        "description": f"Possible duplicate patient ({grade}, score {score:.3f}): {reason}",
        "authoredOn": format_instant(time.time_ns() // 1000),
        "input": [
            {"type": {"text": "candidate"}, "valueReference": {"reference": f"Patient/{a}"}},
            {"type": {"text": "candidate"}, "valueReference": {"reference": f"Patient/{b}"}},
            {"type": {"text": "score"}, "valueDecimal": round(score, 4)},
            {"type": {"text": "grade"}, "valueCode": grade},
            {"type": {"text": "agreement"}, "valueString": summary or "none"},
        ],
    }
    return tx.create(task, if_none_exist=f"identifier={vocab.REVIEW_IDENTIFIER}|{key}")


def review_candidates(task: dict[str, Any]) -> tuple[str, str]:
    refs = [
        str(item["valueReference"]["reference"]).split("/")[1]
        for item in task.get("input") or []
        if (item.get("type") or {}).get("text") == "candidate" and "valueReference" in item
    ]
    if len(refs) != 2 or not is_review(task):
        raise conflict("This Task is not an MPI review of two patients")
    return refs[0], refs[1]


def is_review(task: dict[str, Any]) -> bool:
    return any(
        c.get("system") == vocab.CODE_SYSTEM and c.get("code") == vocab.REVIEW_TASK
        for c in (task.get("code") or {}).get("coding") or []
    )


def decide(tx: Transaction, task_id: str, *, same: bool, by: Access | None) -> dict[str, Any]:
    """A reviewer's decision on a review Task: ``same`` links the pair, otherwise the pair is
    recorded as "not the same" (the Task ends ``rejected``; the MPI never proposes it again).
    Returns the updated Task. Deciding twice is a 409."""
    task = tx.read("Task", task_id)
    a, b = review_candidates(task)
    if task.get("status") not in ("requested", "ready", "received", "accepted"):
        raise conflict(f"Task/{task_id} was already decided ({task.get('status')})")
    updated = editable(task)
    updated["status"] = "completed" if same else "rejected"
    updated["output"] = [
        {"type": {"text": "decision"}, "valueCode": "same" if same else "not-same"}
    ]
    updated["lastModified"] = format_instant(time.time_ns() // 1000)
    result = tx.update(updated)
    if same:
        link(tx, a, b, assurance="level4", reason="confirmed by a reviewer", by=by)
    provenance(
        tx,
        "review-accepted" if same else "review-rejected",
        [result],
        reason="the same person" if same else "not the same person",
        by=by,
    )
    return updated
