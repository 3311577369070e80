"""Access restrictions as data the store turns into SQL, so totals, paging, ``_include`` and
history never count or return what the caller may not see (the decision itself is made in
:mod:`fhirhub.core.access`; the store only applies it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Visibility:
    """What the store may return to a caller, as data the search layer turns into SQL.

    ``tenant``: only resources labelled with this tenant (plus :data:`SHARED_TYPES`);
    None means every tenant. ``patient``: resources of the Patient compartment only when they
    belong to this patient (the Patient itself, or a member of its compartment); resource types
    outside the compartment (Practitioner, Organization, Medication...) stay visible.
    ``types``: the resource types the caller may read at all (None = all).
    """

    tenant: str | None = None
    patient: str | None = None
    types: frozenset[str] | None = None

    @property
    def unrestricted(self) -> bool:
        return self.tenant is None and self.patient is None and self.types is None
