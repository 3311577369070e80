"""FHIR operations (``$name``) declared as data, so the CapabilityStatement is built from the
same registry that routes requests (http://hl7.org/fhir/R4/operations.html)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhirhub.fhir_store.errors import FhirError

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub


@dataclass(frozen=True)
class OperationCall:
    """What an operation handler receives."""

    hub: Hub
    resource_type: str | None
    resource_id: str | None
    parameters: dict[str, list[str]]  # query parameters (GET) or Parameters.parameter (POST)
    body: dict[str, Any] | None  # the POSTed resource (usually a Parameters), if any
    base_url: str


#: A handler returns a FHIR resource as a dict (or JSON bytes) to send back.
OperationHandler = Callable[[OperationCall], "dict[str, Any] | bytes"]


@dataclass(frozen=True)
class Operation:
    """A FHIR operation and its OperationDefinition."""

    name: str  # without the "$"
    handler: OperationHandler
    system: bool = False
    type_level: bool = False
    instance: bool = False
    resource_types: tuple[str, ...] = ()  # empty = any type
    affects_state: bool = False
    description: str = ""
    definition_url: str = ""
    parameters: tuple[dict[str, Any], ...] = field(default=())
    #: For an operation that changes state by writing resources of other types than the one it
    #: is invoked on (``Patient/1/$diet-optimise`` writes a NutritionOrder): those types.
    #: ``authorize`` then requires only read on the invoked type; the writes themselves go
    #: through the SDK, which checks the caller's scopes for each written type.
    writes: tuple[str, ...] = ()

    def definition(self, base_url: str) -> dict[str, Any]:
        """The OperationDefinition resource describing this operation."""
        return {
            "resourceType": "OperationDefinition",
            "id": self.name,
            "url": self.definition_url or f"{base_url}/OperationDefinition/{self.name}",
            "name": self.name,
            "status": "active",
            "kind": "operation",
            "code": self.name,
            "description": self.description or self.name,
            "affectsState": self.affects_state,
            "system": self.system,
            "type": self.type_level,
            "instance": self.instance,
            **({"resource": list(self.resource_types)} if self.resource_types else {}),
            **({"parameter": list(self.parameters)} if self.parameters else {}),
        }

    def authorize(self, resource_type: str | None) -> None:
        """The scope check every invocation passes before its handler runs: reading the type
        (``r``), and for an operation that changes state also ``c`` and ``u``. Handlers add
        finer checks (roles, the instance's visibility) themselves."""
        from fhirhub.core.access import current_access

        access = current_access()
        state_checks = self.affects_state and not self.writes
        for permission in ("r", "c", "u") if state_checks else ("r",):
            access.require(permission, resource_type)

    def applies_to(self, level: str, resource_type: str | None) -> bool:
        if level == "system":
            return self.system
        if self.resource_types and resource_type not in self.resource_types:
            return False
        return self.type_level if level == "type" else self.instance


class OperationRegistry:
    """Operations by name; a duplicate name at the same level is an error (two plugins
    silently shadowing each other would be worse)."""

    def __init__(self) -> None:
        self._operations: list[Operation] = []

    def add(self, operation: Operation) -> None:
        for existing in self._operations:
            if existing.name == operation.name and _overlaps(existing, operation):
                raise ValueError(f"Operation ${operation.name} is registered twice")
        self._operations.append(operation)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._operations)

    def find(self, name: str, level: str, resource_type: str | None) -> Operation:
        for operation in self._operations:
            if operation.name == name and operation.applies_to(level, resource_type):
                return operation
        where = resource_type or "system"
        raise FhirError(
            404,
            f"Operation ${name} is not supported at {level} level on {where}",
            code="not-supported",
        )


def _overlaps(a: Operation, b: Operation) -> bool:
    levels = (
        (a.system and b.system) or (a.type_level and b.type_level) or (a.instance and b.instance)
    )
    if not levels:
        return False
    if not a.resource_types or not b.resource_types:
        return True
    return bool(set(a.resource_types) & set(b.resource_types))
