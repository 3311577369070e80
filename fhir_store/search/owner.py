"""The rows a search condition filters: ``resource_current`` or an alias of it.

Its own module because both the predicates and the visibility rules (which the predicates
apply) build conditions on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause

from fhirhub.fhir_store.schema import resource_current


@dataclass(frozen=True)
class Owner:
    """The rows a condition filters: ``resource_current`` or an alias of it.

    ``resource_type`` is the searched type (None for a system-level search, where
    ``types`` lists the candidate types, or None for all of them).
    """

    table: FromClause
    resource_type: str | None
    types: tuple[str, ...] | None = None

    @property
    def type_col(self) -> ColumnElement[Any]:
        return self.table.c.resource_type

    @property
    def id_col(self) -> ColumnElement[Any]:
        return self.table.c.resource_id

    @property
    def updated_col(self) -> ColumnElement[Any]:
        return self.table.c.last_updated


def current_alias(resource_type: str) -> Owner:
    return Owner(resource_current.alias(), resource_type)
