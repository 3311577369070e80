"""The fhirhub plugin SDK: everything a plugin author imports.

    from fhirhub.sdk import hookimpl, Operation, FhirError

The surface is deliberately small (see ``__all__``); everything else in fhirhub is internal
and may change. The hooks themselves are documented in ``fhirhub.core.hookspecs`` and in
docs/plugins.md.
"""

from __future__ import annotations

from fhirhub.core.access import SYSTEM, Access, Scope, acting_as, current_access, parse_scopes
from fhirhub.core.hookspecs import hookimpl
from fhirhub.core.hub import Hub, WriteContext
from fhirhub.core.operations import Operation, OperationCall
from fhirhub.fhir_store.errors import (
    FhirError,
    Issue,
    conflict,
    invalid,
    not_found,
    not_supported,
)
from fhirhub.fhir_store.versions import StoredVersion
from fhirhub.sdk._resources import create, delete, plugin_settings, read, search, update

__all__ = [
    "SYSTEM",
    "Access",
    "FhirError",
    "Hub",
    "Issue",
    "Operation",
    "OperationCall",
    "Scope",
    "StoredVersion",
    "WriteContext",
    "acting_as",
    "conflict",
    "create",
    "current_access",
    "delete",
    "hookimpl",
    "invalid",
    "not_found",
    "not_supported",
    "parse_scopes",
    "plugin_settings",
    "read",
    "search",
    "update",
]
