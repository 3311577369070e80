"""Access restrictions as data the store turns into SQL, so totals, paging, ``_include`` and
history never count or return what the caller may not see (the decision itself is made in
:mod:`fhirhub.core.access`; the store only applies it)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, and_, false, or_, select

from fhirhub.fhir_store.schema import resource_current, version_compartment
from fhirhub.fhir_store.search.owner import Owner
from fhirhub.fhir_store.tenancy import SHARED_TYPES, visible_to_tenant


@dataclass(frozen=True)
class Visibility:
    """What the store may return to a caller, as data the search layer turns into SQL.

    ``tenant``: only resources labelled with this tenant (plus unlabelled :data:`SHARED_TYPES`);
    None means every tenant. ``patient``: resources of the Patient compartment only when they
    belong to this patient (the Patient itself, or a member of its compartment); resource types
    outside the compartment (Practitioner, Organization, Medication...) stay visible.
    ``types``: the resource types the caller may read at all (None = all).
    """

    tenant: str | None = None
    patient: str | None = None
    types: frozenset[str] | None = None
    hidden_types: frozenset[str] = frozenset()  # never shown, even under a wildcard scope

    @property
    def unrestricted(self) -> bool:
        return (
            self.tenant is None
            and self.patient is None
            and self.types is None
            and not self.hidden_types
        )

    def shows_type(self, resource_type: str) -> bool:
        if resource_type in self.hidden_types:
            return False
        return self.types is None or resource_type in self.types


def restrict(owner: Owner, visibility: Visibility | None) -> list[ColumnElement[bool]]:
    """SQL conditions keeping only the rows of ``owner`` (``resource_current`` or an alias)
    that ``visibility`` lets the caller see; empty when it is unrestricted."""
    if visibility is None or visibility.unrestricted:
        return []
    from fhirhub.fhir_store.search import compartment

    table = owner.table
    out: list[ColumnElement[bool]] = []
    if owner.resource_type is not None:
        if not visibility.shows_type(owner.resource_type):
            return [false()]
    else:
        if visibility.types is not None:
            out.append(owner.type_col.in_(sorted(visibility.types)))
        if visibility.hidden_types:
            out.append(~owner.type_col.in_(sorted(visibility.hidden_types)))
    if visibility.tenant is not None:
        own = table.c.tenant == visibility.tenant
        if owner.resource_type is None:
            shared = and_(owner.type_col.in_(sorted(SHARED_TYPES)), table.c.tenant.is_(None))
            out.append(or_(own, shared))
        elif owner.resource_type in SHARED_TYPES:
            out.append(or_(own, table.c.tenant.is_(None)))
        else:
            out.append(own)
    if visibility.patient is not None:
        guarded = patient_guarded_types()
        patient = ("Patient", visibility.patient)
        if owner.resource_type is None:
            out.append(
                or_(
                    ~owner.type_col.in_(sorted(guarded)),
                    compartment.condition(Owner(table, None), patient),
                )
            )
        elif owner.resource_type in guarded:
            out.append(compartment.condition(owner, patient))
    return out


def patient_guarded_types() -> frozenset[str]:
    """Types whose resources belong to a patient: the Patient compartment's members and
    Patient itself. A patient-context caller sees only its own among them."""
    from fhirhub.fhir_store.search.compartment import patient_compartment

    return frozenset(patient_compartment()) | {"Patient"}


def visible(
    conn: Connection,
    visibility: Visibility | None,
    resource_type: str,
    resource_id: str,
    tenant: str | None,
    seq: int = 0,
) -> bool:
    """Whether one resource (whose stored ``tenant`` column is given) passes ``visibility``.

    ``seq``: the log position of the version in question. A patient-context caller then sees
    it when that version was in the patient's compartment (``version_compartment``), which
    also holds for a deletion (whose resource has no index rows left) and for an earlier
    version of a resource since moved to another patient. Without one (a version not yet
    written) the compartment is the resource's current one, from the index."""
    if visibility is None or visibility.unrestricted:
        return True
    if not visibility.shows_type(resource_type):
        return False
    if visibility.tenant is not None and not visible_to_tenant(
        resource_type, tenant, visibility.tenant
    ):
        return False
    if visibility.patient is not None and resource_type in patient_guarded_types():
        if seq:
            vc = version_compartment.c
            found = conn.execute(
                select(vc.seq).where(vc.patient_id == visibility.patient, vc.seq == seq)
            ).first()
            return found is not None
        from fhirhub.fhir_store.search import compartment

        owner = Owner(resource_current, resource_type)
        row = conn.execute(
            select(resource_current.c.resource_id).where(
                resource_current.c.resource_type == resource_type,
                resource_current.c.resource_id == resource_id,
                compartment.condition(owner, ("Patient", visibility.patient)),
            )
        ).first()
        return row is not None
    return True
