"""A plugin's unit of work: several FHIR interactions that commit together or not at all.

This is the one write API for code running inside the hub (adapters, plugins, the loaders):
each method runs the same interaction the REST API runs (validation, access, the
``resource_before_write`` hooks, reference checks, versions, indexes), against one database
transaction, with the caller's access (:func:`fhirhub.core.access.current_access`). An adapter
that writes as the system for one tenant wraps its work in ``acting_as(system_for(tenant))``.

Why a wrapper rather than the store's ``UnitOfWork``: the unit of work knows storage only
(versions, projections); the interactions add FHIR semantics and access control. A plugin that
wrote through the unit of work directly would skip validation, hooks and reference checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson

from fhirhub.core.interactions import read as reads
from fhirhub.core.interactions import write as writes
from fhirhub.core.interactions.write import WriteResult
from fhirhub.fhir_store.driver import savepoint
from fhirhub.fhir_store.errors import FhirError, invalid
from fhirhub.fhir_store.store import UnitOfWork
from fhirhub.fhir_store.versions import StoredVersion

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub


class Transaction:
    """One unit of work (see the module docstring). Obtain one with
    :func:`fhirhub.sdk.transaction`; hooks receive one in ``before_commit``."""

    def __init__(
        self,
        hub: Hub,
        unit: UnitOfWork,
        *,
        parent: Transaction | None = None,
        read_only: bool = False,
    ) -> None:
        self.hub = hub
        self._unit = unit
        self._parent = parent
        self.read_only = read_only

    def _writable(self) -> UnitOfWork:
        if self.read_only:
            raise RuntimeError("A snapshot is read-only: write in fhirhub.sdk.transaction(hub)")
        return self._unit

    @property
    def unit_of_work(self) -> UnitOfWork:
        """The store's unit of work underneath (the core's own interactions take it)."""
        return self._unit

    @property
    def written(self) -> list[StoredVersion]:
        """Every version this unit has written so far (flushed first, so each has its
        ``seq``), deletion tombstones included, in write order."""
        self._unit.flush()
        return list(self._unit.committed)

    # -- reads (the caller's access applies; this unit's own writes are visible) -------------

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """The current version as a dict; ``FhirError`` 404 (missing or not visible) / 410."""
        self._unit.flush()
        version = reads.read(self._unit.conn, resource_type, resource_id)
        content: dict[str, Any] = orjson.loads(version.content or b"{}")
        return content

    def current(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        """The stored current version (deleted ones included) without access checks, or
        None: for code that acts as the system and needs version numbers or tombstones."""
        return self._unit.current(resource_type, resource_id)

    def match(self, resource_type: str, criteria: str | Sequence[tuple[str, str]]) -> list[str]:
        """Ids of the resources matching conditional ``criteria`` (``identifier=s|v`` or
        parsed pairs), strictly parsed, as ``If-None-Exist`` would match them; at most two
        are returned (enough to tell none, one and several apart)."""
        from fhirhub.core.interactions.search import match_ids

        return match_ids(self.hub, self._unit, resource_type, criteria)

    def search(
        self, resource_type: str | None, params: Mapping[str, str] | Sequence[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """The first page of matches (``_count`` applies) as dicts. ``resource_type`` None is
        a system-level search, restricted by ``_type`` when given: one query for several types
        (``_type=Condition,AllergyIntolerance&patient=...``)."""
        from fhirhub.core.interactions.search import search_resources

        self._unit.flush()
        pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
        return search_resources(self.hub, self._unit.conn, resource_type, pairs)

    def referencing(self, resource_type: str, resource_id: str) -> list[tuple[str, str]]:
        """``(type, id)`` of the current, visible resources whose indexed references point at
        ``resource_type/resource_id`` (any search parameter of type reference), sorted: what
        a merge must move, or what still depends on a resource. References no search
        parameter covers are not seen."""
        from sqlalchemy import select

        from fhirhub.core.access import current_access
        from fhirhub.fhir_store.schema import resource_current as rc
        from fhirhub.fhir_store.search.index_tables import index_reference as ref
        from fhirhub.fhir_store.search.predicates import Owner
        from fhirhub.fhir_store.search.visibility import restrict

        self._unit.flush()
        query = (
            select(rc.c.resource_type, rc.c.resource_id)
            .where(
                rc.c.deleted.is_(False),
                rc.c.resource_id.in_(
                    select(ref.c.resource_id).where(
                        ref.c.resource_type == rc.c.resource_type,
                        ref.c.target_type == resource_type,
                        ref.c.target_id == resource_id,
                    )
                ),
                *restrict(Owner(rc, None), current_access().visibility("r")),
            )
            .distinct()
            .order_by(rc.c.resource_type, rc.c.resource_id)
        )
        return [(str(t), str(i)) for t, i in self._unit.conn.execute(query)]

    # -- writes ----------------------------------------------------------------------------

    def create(self, resource: dict[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        """Create (server-assigned id; with ``if_none_exist`` a conditional create that
        returns the match, status 200, instead of writing)."""
        return writes.create(
            self.hub,
            self._writable(),
            _type_of(resource),
            dict(resource),
            if_none_exist=if_none_exist,
        )

    def update(self, resource: dict[str, Any], *, if_match: str | None = None) -> WriteResult:
        """Update the resource with ``resource["id"]`` (or create it with that id, when the
        caller may choose ids: :func:`fhirhub.core.interactions.write.may_choose_ids`)."""
        return writes.update(
            self.hub,
            self._writable(),
            _type_of(resource),
            str(resource.get("id") or ""),
            dict(resource),
            if_match=if_match,
        )

    def conditional_update(self, criteria: str, resource: dict[str, Any]) -> WriteResult:
        """``PUT Type?criteria``: create when nothing matches, update the one match, 412 for
        several."""
        return writes.conditional_update(
            self.hub, self._writable(), _type_of(resource), criteria, dict(resource)
        )

    def patch(self, resource_type: str, resource_id: str, operations: list[Any]) -> WriteResult:
        """Apply a JSON Patch (RFC 6902) to the current version."""
        return writes.patch(self.hub, self._writable(), resource_type, resource_id, operations)

    def delete(self, resource_type: str, resource_id: str) -> WriteResult | None:
        """Delete (a tombstone version); 404 when the resource is unknown to the caller."""
        return writes.delete(self.hub, self._writable(), resource_type, resource_id)

    def bundle(self, bundle: dict[str, Any], *, validated: bool = False) -> dict[str, Any]:
        """Run a ``transaction`` Bundle inside this unit and return its response Bundle.

        Conditional entries (``ifNoneExist``, ``PUT Type?identifier=...``, conditional
        references) resolve against everything this unit already wrote. ``validated``: every
        resource already passed :func:`fhirhub.sdk.validation_issues` (an adapter validated
        its output in another process), so the structural walk is not repeated.
        """
        from fhirhub.core.interactions.bundle import process_transaction_in

        response = process_transaction_in(
            self.hub, self._writable(), bundle, base_url=self.hub.base_url, validated=validated
        )
        result: dict[str, Any] = orjson.loads(response)
        return result

    @contextmanager
    def savepoint(self) -> Iterator[Transaction]:
        """A nested unit: on an exception inside the block its writes are undone (and the
        exception propagates) while the enclosing unit's earlier writes stay; on success its
        writes join the enclosing unit. An adapter that commits several messages at once
        gives each message a savepoint, so one bad message does not sink its neighbours."""
        self._writable().flush()
        nested = UnitOfWork(self._unit.store, self._unit.conn)
        with savepoint(self._unit.conn):
            yield Transaction(self.hub, nested, parent=self)
            nested.flush()
        self._unit.committed.extend(nested.committed)


def _type_of(resource: dict[str, Any]) -> str:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise invalid("A resource needs a resourceType")
    return str(resource["resourceType"])


__all__ = ["FhirError", "Transaction", "WriteResult"]
