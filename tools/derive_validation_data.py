"""Derive the validator's data files under fhir_store/definitions/ from ../shared/fhir-r4/.

The server must not read ../shared at run time, and the official StructureDefinitions are 37 MB,
so this script keeps only what the validator needs (FHIR R4 4.0.1):

* ``r4-structure.json``: every R4 resource and complex datatype as a compact element table
  ``{type: {"kind", "abstract", "elements": {relative path: [min, max, types, valueSet]}}}``
  plus the primitive datatypes (JSON kind and the spec's regex from
  http://hl7.org/fhir/R4/datatypes.html). ``types`` holds type codes, or ``["#path"]`` for a
  ``contentReference``; ``valueSet`` is set only for ``binding.strength = required``
  (http://hl7.org/fhir/R4/terminologies.html#required).
* ``required-bindings.json``: the codes of every ValueSet that a required binding names,
  expanded offline from ``valuesets.json`` / ``v3-codesystems.json`` (``compose.include`` of
  whole CodeSystems, explicit concepts, ``is-a`` filters, nested ValueSets, ``exclude``), as
  ``{"valueSets": {url: {system: [codes]}}, "unchecked": {url: reason}}``. ValueSets that
  cannot be expanded offline (UCUM, MIME types, languages, ...) are listed as unchecked.
* ``coded-bindings.json``: the ``extensible`` and ``preferred`` bindings of Coding and
  CodeableConcept elements, ``{"bindings": {"Type.path": [strength, valueSet]}}``, which
  ``$validate`` reports as warnings (http://hl7.org/fhir/R4/terminologies.html#extensible);
  writes never check them.
* ``r4-resource-types.json``: the 146 R4 resource types and the R4B-only type names (from the
  installed fhir.resources R4B models) so the validator can say "R4B, not R4" precisely.

Run: ``.venv/bin/python tools/derive_validation_data.py [target folder]`` (default: the
repository's ``fhir_store/definitions``); the output is deterministic, so a test can re-derive
into a temporary folder and compare.
"""

from __future__ import annotations

import json
import pkgutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO.parent / "shared" / "fhir-r4"
TARGET = REPO / "fhir_store" / "definitions"

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
#: JSON representation of each primitive (http://hl7.org/fhir/R4/json.html#primitive).
JSON_KIND = {
    "boolean": "boolean",
    "integer": "integer",
    "positiveInt": "integer",
    "unsignedInt": "integer",
    "decimal": "decimal",
}


def _load(name: str) -> list[dict[str, Any]]:
    bundle = json.loads((SOURCE / name).read_text())
    return [entry["resource"] for entry in bundle["entry"]]


def _type_code(type_: dict[str, Any]) -> str:
    """The FHIR type of an element; ``id``/``url`` elements carry it in an extension."""
    for ext in type_.get("extension", []):
        if ext["url"] == FHIR_TYPE_EXT:
            return str(ext["valueUrl"])
    return str(type_["code"])


def _element_row(element: dict[str, Any]) -> list[Any]:
    max_ = element["max"]
    if "contentReference" in element:
        types = [element["contentReference"]]
    else:
        types = [_type_code(t) for t in element.get("type", [])]
    binding = element.get("binding") or {}
    value_set = None
    if binding.get("strength") == "required" and binding.get("valueSet"):
        value_set = binding["valueSet"].split("|")[0]
    return [element["min"], -1 if max_ == "*" else int(max_), types, value_set]


def _rows_from_differential(sd: dict[str, Any], types: dict[str, Any]) -> dict[str, Any]:
    """Element rows rebuilt from the differential, for a snapshot that does not match it.

    The medplum copy of EvidenceVariable carries a later (R5-shaped) snapshot over the R4
    differential; the differential of a core R4 resource lists every element it defines, so
    the R4 element table is the base type's elements, the differential's, and the id /
    extension / modifierExtension every backbone element inherits (R4 backboneelement.html).
    """
    name = sd["type"]
    base = sd["baseDefinition"].rsplit("/", 1)[1]
    rows: dict[str, Any] = dict(types[base]["elements"])
    for element in sd["differential"]["element"][1:]:
        relative = element["path"][len(name) + 1 :]
        rows[relative] = _element_row(element)
        if element.get("type") == [{"code": "BackboneElement"}]:
            rows[f"{relative}.id"] = [0, 1, ["string"], None]
            rows[f"{relative}.extension"] = [0, -1, ["Extension"], None]
            rows[f"{relative}.modifierExtension"] = [0, -1, ["Extension"], None]
    return rows


def derive_structure(definitions: list[dict[str, Any]]) -> dict[str, Any]:
    primitives: dict[str, dict[str, Any]] = {}
    types: dict[str, Any] = {}
    for sd in definitions:
        if sd["resourceType"] != "StructureDefinition" or sd.get("derivation") == "constraint":
            continue
        if sd["kind"] == "logical" or sd.get("fhirVersion") != "4.0.1":
            # The medplum copy adds R4B's SubscriptionStatus (fhirVersion 4.3.0): not R4.
            continue
        name = sd["type"]
        elements = sd["snapshot"]["element"]
        if sd["kind"] == "primitive-type":
            value = next(e for e in elements if e["path"] == f"{name}.value")
            regex = None
            for ext in value["type"][0].get("extension", []):
                if ext["url"] == REGEX_EXT:
                    regex = ext["valueString"]
            primitives[name] = {"json": JSON_KIND.get(name, "string"), "regex": regex}
            continue
        rows: dict[str, Any] = {}
        for element in elements[1:]:
            relative = element["path"][len(name) + 1 :]
            rows[relative] = _element_row(element)
        differential = sd.get("differential", {}).get("element", [])
        if {e["path"] for e in differential} - {e["path"] for e in elements}:
            rows = _rows_from_differential(sd, types)
        types[name] = {
            "kind": "resource" if sd["kind"] == "resource" else "complex-type",
            "abstract": bool(sd.get("abstract")),
            "elements": rows,
        }
    return {"fhirVersion": "4.0.1", "primitives": primitives, "types": types}


class _Terminology:
    """Offline ValueSet expansion over the spec's own CodeSystems and ValueSets."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.code_systems: dict[str, dict[str, Any]] = {}
        self.value_sets: dict[str, dict[str, Any]] = {}
        for resource in resources:
            url = resource.get("url")
            if resource["resourceType"] == "CodeSystem" and url:
                self.code_systems.setdefault(url, resource)
            elif resource["resourceType"] == "ValueSet" and url:
                self.value_sets.setdefault(url, resource)

    def _all_codes(self, system: str) -> set[str]:
        code_system = self.code_systems.get(system)
        if code_system is None:
            raise LookupError(f"CodeSystem {system} is not in the R4 definitions")
        if code_system.get("content") not in (None, "complete"):
            raise LookupError(f"CodeSystem {system} content is {code_system.get('content')}")
        codes: set[str] = set()
        stack = list(code_system.get("concept", []))
        while stack:
            concept = stack.pop()
            codes.add(str(concept["code"]))
            stack.extend(concept.get("concept", []))
        if not codes:
            raise LookupError(f"CodeSystem {system} lists no concepts")
        return codes

    def _descendants(self, system: str, root: str, include_self: bool) -> set[str]:
        code_system = self.code_systems.get(system)
        if code_system is None:
            raise LookupError(f"CodeSystem {system} is not in the R4 definitions")
        found: set[str] = set()

        def walk(concepts: list[dict[str, Any]], inside: bool) -> None:
            for concept in concepts:
                here = inside or concept["code"] == root
                if here and (include_self or concept["code"] != root):
                    found.add(str(concept["code"]))
                walk(concept.get("concept", []), here)

        walk(code_system.get("concept", []), False)
        return found

    def _include(self, include: dict[str, Any], seen: frozenset[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        system = include.get("system")
        if system:
            if "concept" in include:
                codes = {str(c["code"]) for c in include["concept"]}
            elif "filter" in include:
                codes = set()
                for filter_ in include["filter"]:
                    if filter_["property"] != "concept" or filter_["op"] not in (
                        "is-a",
                        "descendent-of",
                    ):
                        raise LookupError(f"filter {filter_} on {system} is not expandable")
                    codes |= self._descendants(system, filter_["value"], filter_["op"] == "is-a")
            else:
                codes = self._all_codes(system)
            out[system] = codes
        for nested in include.get("valueSet", []):
            expansion = self.expand(nested.split("|")[0], seen)
            if system:  # intersection with the system part
                out = {s: c & expansion.get(s, set()) for s, c in out.items()}
            else:
                for s, c in expansion.items():
                    out.setdefault(s, set()).update(c)
        return out

    def expand(self, url: str, seen: frozenset[str] = frozenset()) -> dict[str, set[str]]:
        if url in seen:
            raise LookupError(f"ValueSet {url} includes itself")
        value_set = self.value_sets.get(url)
        if value_set is None:
            raise LookupError(f"ValueSet {url} is not in the R4 definitions")
        compose = value_set.get("compose")
        if not compose:
            raise LookupError(f"ValueSet {url} has no compose")
        result: dict[str, set[str]] = {}
        for include in compose.get("include", []):
            for system, codes in self._include(include, seen | {url}).items():
                result.setdefault(system, set()).update(codes)
        for exclude in compose.get("exclude", []):
            for system, codes in self._include(exclude, seen | {url}).items():
                result[system] = result.get(system, set()) - codes
        if not any(result.values()):
            raise LookupError(f"ValueSet {url} expands to nothing")
        return result


def derive_bindings(structure: dict[str, Any], terminology: _Terminology) -> dict[str, Any]:
    urls = sorted(
        {
            row[3]
            for type_ in structure["types"].values()
            for row in type_["elements"].values()
            if row[3]
        }
    )
    value_sets: dict[str, dict[str, list[str]]] = {}
    unchecked: dict[str, str] = {}
    for url in urls:
        try:
            expansion = terminology.expand(url)
        except LookupError as error:
            unchecked[url] = str(error)
            continue
        value_sets[url] = {system: sorted(codes) for system, codes in sorted(expansion.items())}
    return {"fhirVersion": "4.0.1", "valueSets": value_sets, "unchecked": unchecked}


#: The strengths ``$validate`` reports on (a code outside is a warning, never an error).
WARNING_STRENGTHS = ("extensible", "preferred")
CODED_TYPES = {"Coding", "CodeableConcept"}


def derive_coded_bindings(definitions: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"Type.path": [strength, valueSet]}`` for every extensible or preferred binding of an
    element that may be a Coding or a CodeableConcept, in resources and complex datatypes (the
    path is relative to the type that defines the element, as the validator's nodes are named).
    """
    bindings: dict[str, list[str]] = {}
    for sd in definitions:
        if sd["resourceType"] != "StructureDefinition" or sd.get("derivation") == "constraint":
            continue
        if sd["kind"] not in ("resource", "complex-type") or sd.get("fhirVersion") != "4.0.1":
            continue
        elements = sd["snapshot"]["element"]
        differential = sd.get("differential", {}).get("element", [])
        if {e["path"] for e in differential} - {e["path"] for e in elements}:
            elements = differential  # EvidenceVariable: see _rows_from_differential
        for element in elements[1:]:
            binding = element.get("binding") or {}
            types = {_type_code(t) for t in element.get("type", [])}
            if (
                binding.get("strength") in WARNING_STRENGTHS
                and binding.get("valueSet")
                and types & CODED_TYPES
            ):
                bindings[element["path"]] = [
                    binding["strength"],
                    binding["valueSet"].split("|")[0],
                ]
    return {"fhirVersion": "4.0.1", "bindings": bindings}


def r4b_resource_types() -> list[str]:
    """Resource type names fhir.resources ships for R4B (to name R4B-only types in errors)."""
    import fhir.resources.R4B as r4b
    from fhir.resources.R4B import get_fhir_model_class

    names: list[str] = []
    for module in pkgutil.iter_modules(r4b.__path__):
        try:
            klass = get_fhir_model_class(_class_name(module.name))
        except (ValueError, AttributeError):
            continue
        if klass.has_resource_base() and not getattr(klass, "__abstract__", False):
            names.append(klass.get_resource_type())
    return sorted(set(names))


def _class_name(module: str) -> str:
    from fhir.resources.R4B import fhirtypes

    for attr in dir(fhirtypes):
        if attr.lower() == f"{module}type":
            return attr[: -len("Type")]
    raise ValueError(module)


def main(target: Path = TARGET) -> None:
    definitions = _load("profiles-types.json") + _load("profiles-resources.json")
    structure = derive_structure(definitions)
    terminology = _Terminology(_load("valuesets.json") + _load("v3-codesystems.json"))
    bindings = derive_bindings(structure, terminology)
    coded = derive_coded_bindings(definitions)
    r4_types = sorted(
        name
        for name, type_ in structure["types"].items()
        if type_["kind"] == "resource" and not type_["abstract"]
    )
    r4b_only = sorted(set(r4b_resource_types()) - set(r4_types) - {"Resource", "DomainResource"})
    resource_types = {"fhirVersion": "4.0.1", "r4": r4_types, "r4bOnly": r4b_only}
    for name, data in (
        ("r4-structure.json", structure),
        ("required-bindings.json", bindings),
        ("coded-bindings.json", coded),
        ("r4-resource-types.json", resource_types),
    ):
        (target / name).write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
    print(
        f"{len(structure['types'])} types, {len(r4_types)} resource types, "
        f"{len(bindings['valueSets'])} value sets expanded, {len(bindings['unchecked'])} "
        f"unchecked, {len(coded['bindings'])} extensible/preferred coded elements, R4B-only: {', '.join(r4b_only)}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET)
