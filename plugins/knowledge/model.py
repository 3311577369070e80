"""The graph's nodes and edges as plain values (what the index stores and traversals return)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from fhirhub.plugins.knowledge.vocabulary import (
    ALIAS_EXTENSION,
    KEY_PRIORITY,
    SYSTEMS,
    code_key,
    name_key,
)


@dataclass(frozen=True)
class Node:
    """A concept: its kind, a label, its codes as ``SHORT|code`` keys and its names."""

    kind: str
    label: str
    codes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    @cached_property
    def key(self) -> str:
        """The node's identity: its best code (``KEY_PRIORITY``), else its normalised label."""
        for short in KEY_PRIORITY:
            for code in self.codes:
                if code.startswith(short + "|"):
                    return code
        return f"name|{name_key(self.label)}"

    @cached_property
    def aliases(self) -> frozenset[str]:
        """Every key a lookup may arrive with: codes and ``name|...`` of every name."""
        names = {name_key(n) for n in (self.label, *self.names)}
        return frozenset(self.codes) | {f"name|{n}" for n in names if n}

    @classmethod
    def from_concept(cls, kind: str, concept: dict[str, Any], aliases: list[str]) -> Node:
        """From a FHIR CodeableConcept (codings of known systems kept, others ignored)."""
        codes: list[str] = []
        label = concept.get("text") or ""
        for coding in concept.get("coding") or ():
            key = code_key(coding.get("system", ""), coding.get("code", ""))
            if key is not None and key not in codes:
                codes.append(key)
            label = label or coding.get("display") or ""
        if not label and codes:
            label = codes[0]
        return cls(kind, label, tuple(codes), tuple(aliases))

    def concept(self) -> dict[str, Any]:
        """The node as a CodeableConcept (its names beyond the label as alias extensions)."""
        concept: dict[str, Any] = {}
        if self.names:
            concept["extension"] = [
                {"url": ALIAS_EXTENSION, "valueString": name} for name in self.names
            ]
        codings = []
        for key in self.codes:
            short, _, code = key.partition("|")
            if short == "ICD10CM" and len(code) > 3 and "." not in code:
                code = f"{code[:3]}.{code[3:]}"
            codings.append({"system": SYSTEMS[short], "code": code})
        if codings:
            concept["coding"] = codings
        concept["text"] = self.label
        return concept

    @cached_property
    def compact(self) -> dict[str, Any]:
        """The node for the graph page (shared: copy before changing)."""
        return {"id": self.key, "label": self.label, "kind": self.kind, "codes": list(self.codes)}


@dataclass(frozen=True)
class Edge:
    """One relation, from the FHIR resource ``resource_type/resource_id`` that states it."""

    kind: str
    source: Node
    target: Node
    resource_type: str
    resource_id: str
    tenant: str = ""
    severity: str = ""
    evidence: str = ""
    origin: str = ""  # the data source (PharmacotherapyDB, a product label, a user's edit)
    data_version: str = ""
    text: str = ""  # mechanism, description or effect
    management: str = ""  # what to do about it (an interaction's recommendation)
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"

    @cached_property
    def compact(self) -> dict[str, Any]:
        """The edge for the graph page (shared: copy before changing)."""
        return {
            "id": self.reference,
            "kind": self.kind,
            "source": self.source.key,
            "target": self.target.key,
            "severity": self.severity,
            "evidence": self.evidence,
            "origin": self.origin,
            "dataVersion": self.data_version,
            "text": self.text,
            **({"management": self.management} if self.management else {}),
            **self.attributes,
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for end in ("source", "target"):
            data[end] = {k: data[end][k] for k in ("kind", "label", "codes", "names")}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Edge:
        data = dict(data)
        for end in ("source", "target"):
            node = data[end]
            data[end] = Node(
                node["kind"], node["label"], tuple(node["codes"]), tuple(node["names"])
            )
        return cls(**data)
