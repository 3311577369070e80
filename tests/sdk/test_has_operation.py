"""``has_operation``: a plugin's page asks whether the hub serves an operation (registered by
an enabled plugin), at the level and on the type it means."""

from __future__ import annotations

from typing import Any

import pytest

from fhirhub.sdk import Hub, Operation, has_operation, hookimpl


class CensusPlugin:
    @hookimpl
    def register_operations(self, hub: Hub) -> list[Operation]:
        return [Operation("census", lambda call: {}, type_level=True, resource_types=("Location",))]


@pytest.fixture
def fhirhub_plugins() -> list[Any]:
    return [CensusPlugin()]


def test_an_operation_is_served_where_it_was_registered(fhirhub_hub: Hub) -> None:
    assert has_operation(fhirhub_hub, "census", "Location")
    assert not has_operation(fhirhub_hub, "census", "Patient")
    assert not has_operation(fhirhub_hub, "census", "Location", level="instance")
    assert not has_operation(fhirhub_hub, "no-such-operation", "Location")
    assert has_operation(fhirhub_hub, "everything", "Patient", level="instance")  # the core's
    assert has_operation(fhirhub_hub, "validate", "Condition")
