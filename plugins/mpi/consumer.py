"""Matching on every Patient write, from any source: a consumer of the version log.

Why a consumer (asynchronous) rather than a hook inside the writer's transaction: a
consumer sees every committed Patient whatever wrote it (REST, an HL7 feed, a DICOM study, an
OSCAR sync, a bulk load, another plugin), in log order, at least once, and after a crash it
resumes where it stopped; and scoring (splink, a few milliseconds per record) stays off the
writer's path, so an HL7 feed or a bulk load is not slowed by it and a failure in matching can
never refuse a source's write. The price is a short delay (the dispatcher's latency) between a
Patient's write and its link; ``$match`` itself is synchronous.

For each Patient version: its features go into the candidate index (unless nothing matching
looks at changed, e.g. the MPI's own ``Patient.link`` update), then it is matched within its
own tenant; a ``certain`` candidate is linked, a ``probable`` or ``possible`` one opens a review
Task. A Patient whose links a source's update dropped gets them back. Review Tasks rejected by a
person feed the "not the same" table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from fhirhub.plugins.mpi import linking
from fhirhub.plugins.mpi.features import Features, features_of
from fhirhub.plugins.mpi.index import NO_TENANT
from fhirhub.plugins.mpi.rules import Verdict
from fhirhub.sdk import (
    FhirError,
    StoredVersion,
    Transaction,
    acting_as,
    read,
    search,
    system_for,
    transaction,
)

if TYPE_CHECKING:
    from fhirhub.plugins.mpi.service import MpiService

log = logging.getLogger("fhirhub.mpi")


def handle_versions(service: MpiService, versions: Sequence[StoredVersion]) -> None:
    """The consumer's ``handle`` (module docstring)."""
    for version in versions:
        if version.resource_type == "Patient":
            _patient_version(service, version)
        elif version.resource_type == "Task" and version.content is not None:
            _task_version(service, version)


def _patient_version(service: MpiService, version: StoredVersion) -> None:
    tenant = version.tenant or NO_TENANT
    if version.deleted or version.content is None:
        service.index.remove(tenant, version.resource_id)
        return
    patient = orjson.loads(version.content)
    features = features_of(patient)
    changed = service.index.digest(tenant, version.resource_id) != features.digest()
    if changed:
        service.index.put(tenant, features)
    # A write transaction only when there is something to write: on SQLite it takes the
    # single writer's lock, which the sources' own writes are waiting for.
    with acting_as(system_for(version.tenant)):
        if not changed:
            if _links_dropped(service, version.resource_id):
                with transaction(service.hub) as tx:
                    _restore_links(tx, version.resource_id)
            return
        if _retired(patient):
            return  # merged away: its data moved to the surviving record
        verdicts = [
            v for v in service.matcher.match(tenant, features) if v.grade != "certainly-not"
        ]
        if verdicts:
            with transaction(service.hub) as tx:
                act_on(service, tx, tenant, features, verdicts)


def act_on(
    service: MpiService,
    tx: Transaction,
    tenant: str,
    features: Features,
    verdicts: Sequence[Verdict],
) -> None:
    """Link the certain candidates, open reviews for the probable and possible ones."""
    me = features.patient_id
    rejected = service.index.rejected(tenant, me)
    for verdict in verdicts:
        other = verdict.candidate_id
        mine = set(linking.linked_ids(tx, me))
        if other in mine:
            continue
        theirs = set(linking.linked_ids(tx, other))
        if verdict.grade == "certain" and not (theirs & rejected):
            linking.link(
                tx,
                me,
                other,
                assurance="level4" if verdict.score >= 1.0 else "level3",
                reason=f"automatic link: {verdict.reason} (score {verdict.score:.4f})",
                by=None,
            )
        elif verdict.grade in ("certain", "probable", "possible"):
            agreement = service.agreement(verdict)
            linking.open_review(
                tx,
                me,
                other,
                grade="probable" if verdict.grade == "certain" else verdict.grade,
                score=verdict.score,
                reason=verdict.reason
                if verdict.grade != "certain"
                else "a linked record was judged not the same",
                agreement=agreement,
            )


def _links_dropped(service: MpiService, patient_id: str) -> bool:
    """Whether a linked Patient lost its ``seealso`` links (read-only check)."""
    try:
        patient = read(service.hub, "Patient", patient_id)
    except FhirError:
        return False
    persons = search(service.hub, "Person", {"patient": f"Patient/{patient_id}", "_count": "2"})
    wanted = sorted(m for m in linking.members(persons[0]) if m != patient_id) if persons else []
    return wanted != linking.seealso_ids(patient)


def _restore_links(tx: Transaction, patient_id: str) -> None:
    try:
        current = tx.read("Patient", patient_id)
    except FhirError:
        return
    if not linking.links_in_sync(tx, current):
        person = linking.person_of(tx, patient_id)
        if person is not None:
            linking.sync_patient_links(tx, linking.members(person))


def _retired(patient: dict[str, object]) -> bool:
    links = patient.get("link") or []
    assert isinstance(links, list)
    return any(isinstance(link, dict) and link.get("type") == "replaced-by" for link in links)


def _task_version(service: MpiService, version: StoredVersion) -> None:
    assert version.content is not None
    task = orjson.loads(version.content)
    if not linking.is_review(task) or task.get("status") != "rejected":
        return
    a, b = linking.review_candidates(task)
    service.index.reject(version.tenant or NO_TENANT, a, b, version.resource_id)
