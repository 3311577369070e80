"""What the hub's operation registry offers, for a plugin whose page adapts to it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhirhub.fhir_store.errors import FhirError

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub


def has_operation(
    hub: Hub, name: str, resource_type: str | None = None, level: str = "type"
) -> bool:
    """Whether ``$name`` is served at ``level`` (``system``, ``type`` or ``instance``) on
    ``resource_type``: registered by an enabled plugin's ``register_operations`` (the
    CapabilityStatement lists the same). A page offers a feature only where the hub can
    answer it (the UI shell's diagnosis typeahead asks for ``ValueSet/$expand``)."""
    try:
        hub.operations.find(name, level, resource_type)
    except FhirError:
        return False
    return True
