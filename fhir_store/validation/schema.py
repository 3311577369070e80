"""The R4 element tree, compiled once from the derived definitions for a one-pass walk.

``definitions/r4-structure.json`` (derived by ``tools/derive_validation_data.py`` from the R4
4.0.1 StructureDefinitions) lists every element of every resource and complex datatype with its
cardinality, types and required ValueSet. Here each resource, datatype and backbone element
becomes a :class:`Node` whose ``slots`` map every JSON property name that may appear in it
(``valueQuantity`` for ``value[x]``, http://hl7.org/fhir/R4/formats.html#choice) to a
:class:`Slot` that knows how to check the value: primitive check, nested node, nested resource,
and the allowed codes of a required binding (http://hl7.org/fhir/R4/terminologies.html#required).
All lookups a validation needs are plain dict hits on these objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .primitives import SERVER_ASSIGNED, Check, build_checks

PRIMITIVE = 0
COMPLEX = 1
RESOURCE = 2

_DEFINITIONS = Path(__file__).resolve().parent.parent / "definitions"


class Slot:
    """One JSON property of a node: an element, or one type of a choice element."""

    __slots__ = ("name", "key", "many", "kind", "check", "node", "type_name", "group", "binding")

    def __init__(
        self,
        name: str,
        key: str,
        many: bool,
        kind: int,
        type_name: str,
        check: Check | None,
        group: str | None,
        binding: Binding | None,
    ) -> None:
        self.name = name  # element name as defined, e.g. "value[x]"
        self.key = key  # JSON property, e.g. "valueQuantity"
        self.many = many
        self.kind = kind
        self.type_name = type_name
        self.check = check
        self.node: Node | None = None  # set for COMPLEX once all nodes exist
        self.group = group  # the choice element this property belongs to
        self.binding = binding


class Node:
    """A resource, a complex datatype or a backbone element."""

    __slots__ = ("name", "is_resource", "slots", "required")

    def __init__(self, name: str, is_resource: bool) -> None:
        self.name = name
        self.is_resource = is_resource
        self.slots: dict[str, Slot] = {}
        #: (element name, JSON keys any of which satisfies min = 1)
        self.required: list[tuple[str, tuple[str, ...]]] = []


@dataclass(frozen=True)
class Binding:
    """Codes of a required ValueSet (``codes`` for ``code``; ``pairs`` for Coding)."""

    url: str
    codes: frozenset[str]
    pairs: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Schema:
    resources: dict[str, Node]  # concrete R4 resource types
    datatypes: dict[str, Node]
    r4b_only: frozenset[str]
    unchecked_value_sets: frozenset[str]


def _load(name: str) -> Any:
    return json.loads((_DEFINITIONS / name).read_bytes())


@cache
def resource_type_names() -> tuple[frozenset[str], frozenset[str]]:
    """(R4 resource types, R4B-only resource types) from ``r4-resource-types.json``."""
    data = _load("r4-resource-types.json")
    return frozenset(data["r4"]), frozenset(data["r4bOnly"])


def _bindings() -> tuple[dict[str, Binding], frozenset[str]]:
    data = _load("required-bindings.json")
    out: dict[str, Binding] = {}
    for url, systems in data["valueSets"].items():
        codes = frozenset(code for values in systems.values() for code in values)
        pairs = frozenset((system, code) for system, values in systems.items() for code in values)
        out[url] = Binding(url, codes, pairs)
    return out, frozenset(data["unchecked"])


def _choice_key(base: str, type_code: str) -> str:
    return base + type_code[0].upper() + type_code[1:]


@cache
def schema() -> Schema:
    """Compile the element tree (about 50 ms, once per process, on first use)."""
    structure = _load("r4-structure.json")
    checks = build_checks(structure["primitives"])
    bindings, unchecked = _bindings()
    types: dict[str, Any] = structure["types"]
    nodes: dict[str, Node] = {}  # "Patient", "Patient.contact", "Quantity", ...
    pending: list[tuple[Slot, str]] = []  # complex slots waiting for their node

    for type_name, definition in types.items():
        is_resource = definition["kind"] == "resource"
        elements: dict[str, list[Any]] = definition["elements"]
        parents = {path.rpartition(".")[0] for path in elements}
        nodes[type_name] = Node(type_name, is_resource)
        for path in elements:
            if path in parents:
                nodes[f"{type_name}.{path}"] = Node(f"{type_name}.{path}", False)
        for path, (minimum, maximum, type_codes, value_set) in elements.items():
            if maximum == 0:
                continue
            parent_path, _, name = path.rpartition(".")
            parent = nodes[f"{type_name}.{parent_path}" if parent_path else type_name]
            binding = bindings.get(value_set) if value_set else None
            many = maximum != 1
            keys: list[str] = []
            if path in parents:  # backbone element: its children are listed here
                slot = Slot(name, name, many, COMPLEX, "BackboneElement", None, None, binding)
                slot.node = nodes[f"{type_name}.{path}"]
                parent.slots[name] = slot
                keys.append(name)
            elif type_codes and type_codes[0].startswith("#"):  # contentReference
                slot = Slot(name, name, many, COMPLEX, "BackboneElement", None, None, binding)
                pending.append((slot, type_codes[0][1:]))
                parent.slots[name] = slot
                keys.append(name)
            else:
                choice = name.endswith("[x]")
                for code in type_codes:
                    key = _choice_key(name[:-3], code) if choice else name
                    check: Check | None = None
                    if code in checks:
                        kind = PRIMITIVE
                        check = checks[code]
                        if is_resource and path == "id":
                            check = checks["id"]  # Resource.id is an id (R4 resource.html#id)
                        if type_name == "Meta" and path in ("versionId", "lastUpdated"):
                            check = SERVER_ASSIGNED
                    elif code == "Resource":
                        kind = RESOURCE
                    else:
                        kind = COMPLEX
                    slot = Slot(
                        name, key, many, kind, code, check, name if choice else None, binding
                    )
                    if kind == COMPLEX:
                        pending.append((slot, code))
                    parent.slots[key] = slot
                    keys.append(key)
                    if kind == PRIMITIVE:
                        keys.append("_" + key)
            if minimum >= 1:
                parent.required.append((name, tuple(keys)))

    for slot, target in pending:
        slot.node = nodes[target]

    r4, r4b_only = resource_type_names()
    return Schema(
        resources={name: nodes[name] for name in r4},
        datatypes={name: nodes[name] for name, d in types.items() if d["kind"] == "complex-type"},
        r4b_only=r4b_only,
        unchecked_value_sets=unchecked,
    )
