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
        "FhirError",
        "Hub",
        "Issue",
        "Operation",
        "OperationCall",
        "SYSTEM",
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
    assert len(specs) == 17
    for name, function in specs.items():
        assert (function.__doc__ or "").strip(), f"hook {name} has no docstring"
        parameters = ", ".join(inspect.signature(function).parameters)  # type: ignore[arg-type]
        assert re.search(rf"`{name}\({re.escape(parameters)}\)`", catalogue), (
            f"docs/plugins.md does not list `{name}({parameters})`"
        )
