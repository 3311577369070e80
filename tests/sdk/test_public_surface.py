"""The SDK's public surface is deliberate: adding or removing a name is an API change."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import fhirhub.sdk
from fhirhub.core import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def test_sdk_exports_exactly_this() -> None:
    assert sorted(fhirhub.sdk.__all__) == [
        "Access",
        "BoundCode",
        "ChainReport",
        "CodeQuery",
        "Consumer",
        "CriteriaMatcher",
        "DicomArchiveAccess",
        "DicomInstanceRef",
        "FhirError",
        "Hub",
        "HubLocal",
        "IndexRows",
        "IntegrityAlarm",
        "Issue",
        "LiveQueue",
        "LogTrust",
        "Operation",
        "OperationCall",
        "PartialDelivery",
        "PluginDatabase",
        "PluginSettings",
        "ProjectionReport",
        "RESOURCE_TYPES",
        "SHARED_TYPES",
        "SYSTEM",
        "Schedule",
        "Scope",
        "Settings",
        "SignedHead",
        "StoredVersion",
        "TENANT_SYSTEM",
        "TokenCodes",
        "TokenModifier",
        "Transaction",
        "UnitConversion",
        "WriteContext",
        "WriteResult",
        "acting_as",
        "call_hook",
        "chain_key_id",
        "command_hub",
        "conflict",
        "create",
        "criteria_matcher",
        "current_access",
        "delete",
        "dicom_archive",
        "dicom_instances",
        "each_version",
        "forbidden",
        "format_instant",
        "has_operation",
        "hookimpl",
        "index_rows",
        "integrity_alarms",
        "invalid",
        "live_queue",
        "match",
        "matching",
        "new_id",
        "not_found",
        "not_supported",
        "parse_scopes",
        "plugin_settings",
        "prepare_validation",
        "process_bundle",
        "publish_live",
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
        "visible_to_tenant",
        "with_tenant",
        "writing_transaction",
    ]
    assert (Path(fhirhub.sdk.__file__).parent / "py.typed").exists()


def hookspec_functions() -> dict[str, object]:
    return {
        name: function
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, "fhirhub_spec")
    }


def test_every_hook_has_a_docstring_and_is_in_the_catalogue() -> None:
    catalogue = DOCS.read_text()
    specs = hookspec_functions()
    assert len(specs) == 28
    for name, function in specs.items():
        assert (function.__doc__ or "").strip(), f"hook {name} has no docstring"
        parameters = ", ".join(inspect.signature(function).parameters)  # type: ignore[arg-type]
        assert re.search(rf"`{name}\({re.escape(parameters)}\)`", catalogue), (
            f"docs/plugins.md does not list `{name}({parameters})`"
        )


def test_every_sdk_name_is_documented_for_plugin_authors() -> None:
    guide = DOCS.read_text()
    for name in fhirhub.sdk.__all__:
        assert re.search(rf"`{re.escape(name)}[`(\[ ]", guide), (
            f"docs/plugins.md does not document fhirhub.sdk.{name}"
        )
