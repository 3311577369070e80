"""The shipped sources: every edge survives the trip through FHIR, sampled resources are
valid R4, and codes resolve across RxNorm, names, classes and ICD-10-CM prefixes."""

from __future__ import annotations

import itertools

import pytest

from fhirhub.plugins.knowledge.checks import Item, PatientContext, check_order, medication_nodes
from fhirhub.plugins.knowledge.fhir_codec import edges_of, resource_for
from fhirhub.plugins.knowledge.graph import Graph, scope_for
from fhirhub.plugins.knowledge.model import Edge
from fhirhub.plugins.knowledge.sources import BUILTIN
from fhirhub.plugins.knowledge.vocabulary import RXNORM
from fhirhub.sdk import validation_issues


@pytest.fixture(scope="module")
def graph() -> Graph:
    edges: list[Edge] = []
    for name, source in BUILTIN.items():
        for number, (_, edge) in enumerate(source.edges()):
            edges += edges_of(resource_for(edge), f"{name}-{number}")
    return Graph(edges)


@pytest.mark.parametrize("name", list(BUILTIN))
def test_edges_round_trip_and_validate(name: str) -> None:
    keys = set()
    for number, (key, edge) in enumerate(BUILTIN[name].edges()):
        assert key not in keys, f"{name}: duplicate key {key}"
        keys.add(key)
        resource = resource_for(edge)
        (back,) = edges_of(resource, "x")
        assert (back.kind, back.source.key, back.target.key, back.severity) == (
            edge.kind,
            edge.source.key,
            edge.target.key,
            edge.severity,
        )
        if number < 15:
            assert validation_issues({**resource, "id": "x"}) == [], resource
    assert keys


def test_sources_say_what_they_are() -> None:
    for source in BUILTIN.values():
        info = source.info
        assert info.version and info.licence and info.licence_url.startswith("https://")


def test_drugs_resolve_by_rxnorm_atc_name_and_brand(graph: Graph) -> None:
    by_code = medication_nodes(graph, {"coding": [{"system": RXNORM, "code": "11289"}]})
    by_text = medication_nodes(graph, {"text": "Warfarin Sodium 5 MG Oral Tablet"})
    by_brand = medication_nodes(graph, {"text": "Coumadin 5 mg"})
    by_atc = medication_nodes(
        graph, {"coding": [{"system": "http://www.whocc.no/atc", "code": "B01AA03"}]}
    )
    assert "RXNORM|11289" in by_code & by_text & by_brand & by_atc
    assert medication_nodes(graph, {"text": "Zzyzxumab 10 MG"}) == frozenset()


def test_icd10_codes_reach_their_categories(graph: Graph) -> None:
    found = graph.resolve(["ICD10CM|I100"], ("Diagnosis",))
    assert "ICD10CM|I10" in found
    assert graph.resolve(["SNOMED|38341003"], ("Diagnosis",))


def test_ansm_contraindication_through_a_class(graph: Graph) -> None:
    warfarin = Item(
        "MedicationRequest/1", "warfarin", medication_nodes(graph, {"text": "warfarine"})
    )
    aspirin = Item(
        "MedicationRequest/2", "aspirin", medication_nodes(graph, {"text": "Aspirin 500 MG"})
    )
    context = PatientContext("Patient/1", medications=[warfarin])
    findings = check_order(graph, scope_for(None), aspirin, context)
    origins = {f.edge.origin for f in findings}
    assert any(o.startswith("ANSM") for o in origins), origins
    assert all(f.severity == "high" for f in findings if f.edge.origin.startswith("ANSM"))


def test_traversal_survives_cycles_and_respects_tenants(graph: Graph) -> None:
    starts = graph.resolve(["ICD10CM|I10"])
    nodes, edges, _ = graph.traverse(starts, "both", 4, 5000, scope_for("org-a"))
    assert len({n.key for n in nodes}) == len(nodes)
    assert all(e.tenant in ("", "org-a") for e in edges)
    path = graph.shortest_path(starts, graph.resolve(["RXNORM|5640"]), scope_for(None))
    assert path and all(
        a.target.key in (b.source.key, b.target.key) or a.source.key in (b.source.key, b.target.key)
        for a, b in itertools.pairwise(path)
    )
