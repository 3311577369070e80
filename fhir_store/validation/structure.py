"""One pass over a resource's JSON against the compiled R4 element tree.

Checks, per http://hl7.org/fhir/R4/json.html and the R4 4.0.1 StructureDefinitions: known
element names (unknown ones are errors, json.html#unknown), arrays exactly where max > 1,
no empty objects, arrays or strings (json.html "never empty"), primitive JSON kinds and formats
(datatypes.html), ``_element`` primitive extensions lined up with their values, at most one
type of a choice element, min = 1 elements present, nested resources (``contained``,
``Bundle.entry.resource``, ``Parameters.parameter.resource``) by their own type, no resources
nested in a contained one (invariant dom-2, domainresource.html#invs), and codes of
required bindings wherever the bound element occurs (terminologies.html#required), including
inside datatypes (``Quantity.comparator``, ``ContactPoint.system``, ...) at any depth.

Issues carry FHIRPath-like expressions: ``Observation.component[0].code``.
"""

from __future__ import annotations

from typing import Any

from fhirhub.fhir_store.errors import Issue

from .primitives import json_kind
from .schema import COMPLEX, PRIMITIVE, Node, Schema, Slot

#: Beyond this many problems the outcome stops growing; one fix-and-retry round is enough.
MAX_ISSUES = 100


class Walker:
    """Collects the issues of one resource (and everything nested in it)."""

    __slots__ = ("schema", "issues")

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.issues: list[Issue] = []

    def add(self, code: str, diagnostics: str, expression: str) -> None:
        if len(self.issues) < MAX_ISSUES:
            self.issues.append(Issue("error", code, diagnostics, (expression,)))

    def resource(self, value: Any, path: str, contained: bool) -> None:
        """A nested resource: dispatch on its own ``resourceType``."""
        if type(value) is not dict:
            self.add(
                "structure", f"expected a resource (JSON object), got {json_kind(value)}", path
            )
            return
        resource_type = value.get("resourceType")
        node = self.schema.resources.get(resource_type) if type(resource_type) is str else None
        if node is None:
            self.add("structure", unknown_type_message(resource_type, self.schema), path)
            return
        if contained and "contained" in value:
            self.add(
                "invariant",
                "dom-2: a contained resource SHALL NOT contain nested resources",
                f"{path}.contained",
            )
        self.node(value, node, path)

    def node(self, obj: dict[str, Any], node: Node, path: str) -> None:
        slots = node.slots
        groups: dict[str, str] | None = None
        for key, value in obj.items():
            slot = slots.get(key)
            if slot is None:
                if key[:1] == "_":
                    self.primitive_extension(obj, key, value, node, path)
                elif not (key == "resourceType" and node.is_resource):
                    self.add(
                        "structure", f"Unknown element '{key}' in {node.name}", f"{path}.{key}"
                    )
                continue
            if slot.group is not None:
                if groups is None:
                    groups = {}
                other = groups.setdefault(slot.group, key)
                if other != key:
                    self.add(
                        "structure",
                        f"Only one type of {slot.group} is allowed, got '{other}' and '{key}'",
                        f"{path}.{key}",
                    )
            if slot.many:
                if type(value) is not list:
                    self.add(
                        "structure",
                        f"'{key}' repeats and must be a JSON array, got {json_kind(value)}",
                        f"{path}.{key}",
                    )
                    continue
                if not value:
                    self.add("structure", f"'{key}' is an empty array", f"{path}.{key}")
                    continue
                kind = slot.kind
                if kind == PRIMITIVE:
                    self.primitive_list(obj, key, value, slot, path)
                else:
                    for index, item in enumerate(value):
                        item_path = f"{path}.{key}[{index}]"
                        if kind == COMPLEX:
                            self.complex(item, slot, item_path)
                        else:
                            self.resource(item, item_path, key == "contained")
            else:
                kind = slot.kind
                if kind == PRIMITIVE:
                    if value is None and ("_" + key) in obj:
                        continue
                    check = slot.check
                    assert check is not None
                    problem = check(value)
                    if problem is not None:
                        self.add("value", f"{slot.name}: {problem}", f"{path}.{key}")
                    elif slot.binding is not None and value not in slot.binding.codes:
                        self.bad_code(value, slot, f"{path}.{key}")
                elif kind == COMPLEX:
                    self.complex(value, slot, f"{path}.{key}")
                else:
                    self.resource(value, f"{path}.{key}", False)
        for name, keys in node.required:
            for key in keys:
                if key in obj:
                    break
            else:
                self.add(
                    "required",
                    f"Missing required element '{name}' in {node.name} (min 1)",
                    f"{path}.{name}",
                )

    def complex(self, value: Any, slot: Slot, path: str) -> None:
        if type(value) is not dict:
            self.add(
                "structure",
                f"{slot.name}: expected a {slot.type_name} (JSON object), got {json_kind(value)}",
                path,
            )
            return
        if not value:
            self.add("structure", f"{slot.name}: an element may not be an empty object", path)
            return
        node = slot.node
        assert node is not None
        self.node(value, node, path)
        if slot.binding is not None:
            self.coded(value, slot, path)

    def primitive_list(
        self, obj: dict[str, Any], key: str, values: list[Any], slot: Slot, path: str
    ) -> None:
        check = slot.check
        assert check is not None
        binding = slot.binding
        extensions = obj.get("_" + key)
        for index, value in enumerate(values):
            if value is None:
                if (
                    type(extensions) is list
                    and index < len(extensions)
                    and extensions[index] is not None
                ):
                    continue
                self.add(
                    "structure",
                    f"{slot.name}: null without a matching '_{key}' extension",
                    f"{path}.{key}[{index}]",
                )
                continue
            problem = check(value)
            if problem is not None:
                self.add("value", f"{slot.name}: {problem}", f"{path}.{key}[{index}]")
            elif binding is not None and value not in binding.codes:
                self.bad_code(value, slot, f"{path}.{key}[{index}]")

    def primitive_extension(
        self, obj: dict[str, Any], key: str, value: Any, node: Node, path: str
    ) -> None:
        """``_birthDate``: the id/extensions of a primitive (R4 json.html#primitive)."""
        name = key[1:]
        slot = node.slots.get(name)
        if slot is None or slot.kind != PRIMITIVE:
            self.add("structure", f"Unknown element '{key}' in {node.name}", f"{path}.{key}")
            return
        element = self.schema.datatypes["Element"]
        if slot.many:
            if type(value) is not list or type(obj.get(name, [])) is not list:
                self.add("structure", f"'{key}' must be a JSON array", f"{path}.{key}")
                return
            if name in obj and len(value) != len(obj[name]):
                self.add(
                    "structure",
                    f"'{key}' must have as many items as '{name}'",
                    f"{path}.{key}",
                )
            for index, item in enumerate(value):
                if item is not None:
                    self.element(item, element, f"{path}.{key}[{index}]")
        else:
            self.element(value, element, f"{path}.{key}")

    def element(self, value: Any, node: Node, path: str) -> None:
        if type(value) is not dict or not value:
            self.add("structure", "expected a non-empty JSON object (id, extension)", path)
            return
        self.node(value, node, path)

    def coded(self, value: dict[str, Any], slot: Slot, path: str) -> None:
        """Coding / CodeableConcept under a required binding: a coding from the ValueSet."""
        binding = slot.binding
        assert binding is not None
        if slot.type_name == "Coding":
            codings: Any = [value]
        elif slot.type_name == "CodeableConcept":
            codings = value.get("coding")
        else:
            return
        if type(codings) is list:
            for coding in codings:
                if type(coding) is not dict:
                    continue
                code = coding.get("code")
                system = coding.get("system")
                if type(code) is not str:
                    continue  # a malformed code is reported by the Coding's own check
                if system is None and code in binding.codes:
                    return
                if type(system) is str and (system, code) in binding.pairs:
                    return
        self.add(
            "code-invalid",
            f"{slot.name}: no coding from the required value set {binding.url}",
            path,
        )

    def bad_code(self, value: Any, slot: Slot, path: str) -> None:
        binding = slot.binding
        assert binding is not None
        allowed = sorted(binding.codes)
        shown = ", ".join(allowed[:12]) + (", ..." if len(allowed) > 12 else "")
        self.add(
            "code-invalid",
            f"{slot.name}: {value!r} is not in the required value set {binding.url} ({shown})",
            path,
        )


def unknown_type_message(resource_type: Any, schema: Schema) -> str:
    if resource_type is None:
        return "Missing resourceType"
    if type(resource_type) is not str:
        return f"resourceType must be a string, got {json_kind(resource_type)}"
    if resource_type in schema.r4b_only:
        return (
            f"{resource_type} is a FHIR R4B/R5 resource type; this server speaks "
            "FHIR R4 (4.0.1), which does not define it"
        )
    return f"Unknown resource type {resource_type!r} (not a FHIR R4 resource type)"
