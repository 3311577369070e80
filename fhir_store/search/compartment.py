"""The Patient compartment (http://hl7.org/fhir/R4/compartmentdefinition-patient.html).

A resource is in ``Patient/{id}``'s compartment when one of the reference parameters the
shipped ``compartmentdefinition-patient.json`` lists for its type refers to that patient; the
Patient itself is in its own compartment. Membership is an ``IN`` over ``index_reference``
(looked up by ``ix_reference_to`` on target id and type), so compartment search
(``Patient/123/Observation``) and ``$everything`` add one indexed condition to a normal search.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, and_, false, or_, select, tuple_

from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.search.index_tables import index_reference
from fhirhub.fhir_store.search.owner import Owner

if TYPE_CHECKING:
    from fhirhub.fhir_store.search.extract import Extractor

DEFINITION_FILE = (
    Path(__file__).resolve().parent.parent / "definitions" / "compartmentdefinition-patient.json"
)

SUPPORTED = ("Patient",)


@functools.cache
def patient_compartment() -> dict[str, tuple[str, ...]]:
    """Resource type -> the parameters that put a resource of that type in the compartment
    (types without parameters are never in it)."""
    definition: dict[str, Any] = json.loads(DEFINITION_FILE.read_bytes())
    return {
        entry["code"]: tuple(entry["param"])
        for entry in definition["resource"]
        if entry.get("param")
    }


def patients_of(extractor: Extractor, resource: dict[str, Any]) -> set[str]:
    """The ids of the patients whose compartment ``resource`` (with its ``id``) is in: the
    targets of its compartment parameters that are Patients, and a Patient itself. Extracted
    the way the index is, so it agrees with compartment search."""
    resource_type = str(resource.get("resourceType") or "")
    params = patient_compartment().get(resource_type)
    rows = extractor.extract(resource, params).get("reference", ()) if params else ()
    return patients_in(resource_type, str(resource.get("id")), rows)


def patients_in(
    resource_type: str, resource_id: str, reference_rows: Iterable[dict[str, Any]]
) -> set[str]:
    """:func:`patients_of` from the resource's ``reference`` index rows already extracted
    (all parameters or the compartment's): the write path indexes each resource anyway, and
    extracting its compartment parameters a second time cost a tenth of the writer's CPU."""
    params = patient_compartment().get(resource_type, ())
    patients = {resource_id} if resource_type == "Patient" else set()
    for row in reference_rows:
        if row["param"] in params and row.get("target_type") == "Patient" and row.get("target_id"):
            patients.add(row["target_id"])
    return patients


def members(compartment_type: str, compartment_id: str) -> Select[Any]:
    """``(resource_type, resource_id)`` of the resources that reference the compartment owner
    through one of their compartment parameters (not the owner itself)."""
    _check(compartment_type)
    ref = index_reference.c
    per_type = [
        and_(ref.resource_type == resource_type, ref.param.in_(params))
        for resource_type, params in patient_compartment().items()
    ]
    return select(ref.resource_type, ref.resource_id).where(
        ref.target_type == compartment_type,
        ref.target_id == compartment_id,
        or_(*per_type),
    )


def condition(owner: Owner, compartment: tuple[str, str]) -> ColumnElement[bool]:
    """Restrict ``owner`` to the resources in ``compartment`` (``("Patient", "123")``)."""
    compartment_type, compartment_id = compartment
    _check(compartment_type)
    itself = and_(owner.type_col == compartment_type, owner.id_col == compartment_id)
    if owner.resource_type is None:
        return or_(tuple_(owner.type_col, owner.id_col).in_(members(*compartment)), itself)
    params = patient_compartment().get(owner.resource_type)
    ref = index_reference.c
    referring: ColumnElement[bool] = false()
    if params:
        referring = owner.id_col.in_(
            select(ref.resource_id).where(
                ref.resource_type == owner.resource_type,
                ref.param.in_(params),
                ref.target_type == compartment_type,
                ref.target_id == compartment_id,
            )
        )
    if owner.resource_type == compartment_type:
        return or_(referring, owner.id_col == compartment_id)
    return referring


def _check(compartment_type: str) -> None:
    if compartment_type not in SUPPORTED:
        raise FhirError(
            400,
            f"Compartment {compartment_type!r} is not supported (Patient is)",
            code="not-supported",
        )
