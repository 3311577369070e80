"""The fhirhub plugin SDK: everything a plugin author imports.

    from fhirhub.sdk import hookimpl, transaction, Operation, FhirError

A plugin (built-in or third-party) imports this module and its own, nothing else of fhirhub;
an import-linter contract keeps the built-ins to that rule. The surface is deliberately
small (see ``__all__``, checked by ``tests/sdk/test_public_surface.py``); everything else in
fhirhub is internal and may change. The hooks are documented in ``fhirhub.core.hookspecs``
and, with a guided tour of this module, in docs/plugins.md.
"""

from __future__ import annotations

from fhirhub.core.access import (
    SYSTEM,
    Access,
    Scope,
    acting_as,
    current_access,
    forbidden,
    parse_scopes,
    system_for,
)
from fhirhub.core.consumers import Consumer, PartialDelivery, Schedule, each_version
from fhirhub.core.hookspecs import hookimpl
from fhirhub.core.hub import Hub, HubLocal
from fhirhub.core.interactions.write import WriteContext, new_id
from fhirhub.core.live import LiveQueue, live_queue, publish_live
from fhirhub.core.operations import Operation, OperationCall
from fhirhub.core.plugins import call_hook
from fhirhub.core.settings import PluginSettings, Settings
from fhirhub.core.transaction import Transaction, WriteResult
from fhirhub.fhir_store.errors import (
    FhirError,
    Issue,
    conflict,
    invalid,
    not_found,
    not_supported,
)
from fhirhub.fhir_store.search.terminology import (
    CodeQuery,
    TokenCodes,
    TokenModifier,
    UnitConversion,
)
from fhirhub.fhir_store.tenancy import (
    SHARED_TYPES,
    TENANT_SYSTEM,
    tenant_of,
    visible_to_tenant,
    with_tenant,
)
from fhirhub.fhir_store.validation import R4_RESOURCE_TYPES as RESOURCE_TYPES
from fhirhub.fhir_store.validation.coded_bindings import BoundCode
from fhirhub.fhir_store.versions import StoredVersion, format_instant
from fhirhub.sdk._commands import command_hub
from fhirhub.sdk._database import PluginDatabase
from fhirhub.sdk._imaging import (
    DicomArchiveAccess,
    DicomInstanceRef,
    dicom_archive,
    dicom_instances,
    read_dicom_instance,
    store_dicom_instance,
)
from fhirhub.sdk._integrity import (
    ChainReport,
    IntegrityAlarm,
    LogTrust,
    ProjectionReport,
    SignedHead,
    chain_key_id,
    integrity_alarms,
    sign_log_head,
    verify_log,
    verify_projections,
)
from fhirhub.sdk._mail import smtp_send
from fhirhub.sdk._operations import has_operation
from fhirhub.sdk._resources import (
    CriteriaMatcher,
    IndexRows,
    create,
    criteria_matcher,
    delete,
    index_rows,
    match,
    matching,
    plugin_settings,
    process_bundle,
    read,
    search,
    search_all,
    snapshot,
    transaction,
    update,
    writing_transaction,
)
from fhirhub.sdk._validation import prepare_validation, validation_issues

__all__ = [
    "BoundCode",
    "RESOURCE_TYPES",
    "SHARED_TYPES",
    "SYSTEM",
    "TENANT_SYSTEM",
    "Access",
    "ChainReport",
    "IntegrityAlarm",
    "LogTrust",
    "ProjectionReport",
    "CodeQuery",
    "Consumer",
    "DicomArchiveAccess",
    "DicomInstanceRef",
    "FhirError",
    "Hub",
    "HubLocal",
    "LiveQueue",
    "Issue",
    "Operation",
    "OperationCall",
    "PartialDelivery",
    "PluginDatabase",
    "PluginSettings",
    "Schedule",
    "Scope",
    "Settings",
    "SignedHead",
    "StoredVersion",
    "TokenCodes",
    "TokenModifier",
    "UnitConversion",
    "Transaction",
    "WriteContext",
    "WriteResult",
    "acting_as",
    "call_hook",
    "chain_key_id",
    "command_hub",
    "conflict",
    "create",
    "current_access",
    "delete",
    "dicom_archive",
    "dicom_instances",
    "each_version",
    "forbidden",
    "format_instant",
    "has_operation",
    "hookimpl",
    "invalid",
    "match",
    "matching",
    "CriteriaMatcher",
    "IndexRows",
    "criteria_matcher",
    "index_rows",
    "live_queue",
    "publish_live",
    "new_id",
    "not_found",
    "not_supported",
    "parse_scopes",
    "plugin_settings",
    "prepare_validation",
    "process_bundle",
    "read",
    "read_dicom_instance",
    "search",
    "search_all",
    "sign_log_head",
    "smtp_send",
    "snapshot",
    "store_dicom_instance",
    "system_for",
    "tenant_of",
    "transaction",
    "update",
    "validation_issues",
    "verify_log",
    "verify_projections",
    "integrity_alarms",
    "visible_to_tenant",
    "with_tenant",
    "writing_transaction",
]
