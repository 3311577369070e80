"""Code systems, node and edge kinds, and the normalisation every lookup shares.

A node of the graph is a concept named by codes (ICD-10-CM, SNOMED CT, RxNorm, DOID,
DrugBank) and names. Lookups go through :func:`code_key` and :func:`name_key` so that a
Condition coded ``E11.9`` and a graph node coded ``E11`` meet (see :class:`Subsumption`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Protocol

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
#: WHO ICD-10 (what HL7 v2 feeds send as ``I10``): its categories are ICD-10-CM's, so its codes
#: are compared with ICD-10-CM's by prefix.
ICD10 = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
DOID = "http://purl.obolibrary.org/obo/doid.owl"
DRUGBANK = "https://go.drugbank.com/drugs"

#: Short names accepted in ``$graph?start=SHORT|code``; also the prefix of node keys.
SYSTEMS: dict[str, str] = {
    "ICD10CM": ICD10CM,
    "SNOMED": SNOMED,
    "RXNORM": RXNORM,
    "ATC": ATC,
    "DOID": DOID,
    "DRUGBANK": DRUGBANK,
}
SHORT_OF: dict[str, str] = {url: short for short, url in SYSTEMS.items()} | {ICD10: "ICD10CM"}
#: Which coding names a node, best first (the node key is built from the first present).
KEY_PRIORITY = ("ICD10CM", "RXNORM", "SNOMED", "DOID", "DRUGBANK", "ATC")

BASE = "https://fhirhub.org/fhir"
EDGE_EXTENSION = f"{BASE}/StructureDefinition/knowledge-edge"
ALIAS_EXTENSION = f"{BASE}/StructureDefinition/knowledge-alias"
OVERRIDE_EXTENSION = f"{BASE}/StructureDefinition/knowledge-override-reason"
SOURCE_IDENTIFIER = f"{BASE}/knowledge/edge"
ISSUE_IDENTIFIER = f"{BASE}/knowledge/detected-issue"
CHECK_SYSTEM = f"{BASE}/CodeSystem/knowledge-check"
BASIC_CODE_SYSTEM = f"{BASE}/CodeSystem/knowledge-basic"

NODE_KINDS = ("Symptom", "Diagnosis", "Medication", "Treatment", "SideEffect")
EDGE_KINDS = (
    "HAS_SYMPTOM",
    "TREATS",
    "CAUSES",
    "CONTRAINDICATED_FOR",
    "RISK_FACTOR_FOR",
    "COMORBID_WITH",
)
SEVERITIES = ("high", "moderate", "low")
SEVERITY_RANK = {"high": 3, "moderate": 2, "low": 1}

_NON_WORD = re.compile(r"[^a-z0-9]+")


def name_key(text: str) -> str:
    """``"Warfarin Sodium"`` -> ``"warfarin sodium"``: accents, case and punctuation gone."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NON_WORD.sub(" ", ascii_text.lower()).strip()


def code_key(system: str, code: str) -> str | None:
    """``(ICD-10-CM url, "E11.9")`` -> ``"ICD10CM|E119"``; None for a system the graph does not
    know. ICD-10-CM codes lose their dot, so prefixes compare the way the hierarchy nests."""
    short = SHORT_OF.get(system)
    if short is None or not code:
        return None
    code = code.strip()
    if short == "ICD10CM":
        code = code.replace(".", "").upper()
    return f"{short}|{code}"


class Subsumption(Protocol):
    """Which graph codes a patient's code falls under. The seam where a terminology service
    (SNOMED CT or ICD-10-CM hierarchies) can replace the built-in rule."""

    def ancestors(self, key: str) -> Iterator[str]:
        """``key`` itself, then the keys of the broader codes that include it."""
        ...


class PrefixSubsumption:
    """ICD-10-CM nests by prefix (``E11.9`` is under ``E11``); other systems match exactly
    until a terminology service supplies their hierarchies."""

    def ancestors(self, key: str) -> Iterator[str]:
        yield key
        system, _, code = key.partition("|")
        if system == "ICD10CM":
            for end in range(len(code) - 1, 2, -1):
                yield f"{system}|{code[:end]}"
