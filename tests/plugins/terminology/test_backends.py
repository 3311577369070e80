"""The concept tables, expansion and ``:below`` on both backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhirhub.core.hub import Hub, build_hub
from fhirhub.plugins.terminology.expand import Options, expand
from fhirhub.plugins.terminology.icd10cm import cms_concepts
from fhirhub.plugins.terminology.operations import cached_expansion
from fhirhub.plugins.terminology.service import implicit_value_set, service_of
from fhirhub.plugins.terminology.store import write_code_system
from fhirhub.sdk import create, search
from tests.conftest import make_settings

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
CSV = """CODE,SHORT DESCRIPTION,LONG DESCRIPTION
E119,T2DM,Type 2 diabetes mellitus without complications
E1165,T2DM hyperglycemia,Type 2 diabetes mellitus with hyperglycemia
E109,T1DM,Type 1 diabetes mellitus without complications
A000,Cholera,"Cholera due to Vibrio cholerae 01, biovar cholerae"
"""


@pytest.fixture
def backend_hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    hub = build_hub(make_settings(database_url, tmp_path, listeners=False))
    yield hub
    hub.close()


def test_load_expand_and_below(backend_hub: Hub) -> None:
    service = service_of(backend_hub)
    write_code_system(service.db, cms_concepts(io.StringIO(CSV), "2025"))
    with service.read() as conn:
        everything = implicit_value_set(f"{ICD}?fhir_vs")
        typed = expand(service, conn, everything, Options(filter="type 2 diab", count=10))
        assert sorted(e.code for e in typed.entries) == ["E11.65", "E11.9"]
        below = expand(service, conn, implicit_value_set(f"{ICD}?fhir_vs=isa/E11"), Options())
        assert sorted(e.code for e in below.entries) == ["E11", "E11.65", "E11.9"]
    for code in ("E11.65", "E10.9", "A00.0"):
        create(
            backend_hub,
            {
                "resourceType": "Condition",
                "subject": {"display": "x"},
                "code": {"coding": [{"system": ICD, "code": code}]},
            },
        )

    def codes(params: dict[str, str]) -> list[str]:
        found = search(backend_hub, "Condition", params)
        return sorted(c["code"]["coding"][0]["code"] for c in found)

    # Each modifier joins the token index to the concept tables in the search statement.
    assert codes({"code:below": f"{ICD}|E11"}) == ["E11.65"]
    assert codes({"code:above": f"{ICD}|E11.65"}) == ["E11.65"]
    assert codes({"code:below": f"{ICD}|E11,{ICD}|A00"}) == ["A00.0", "E11.65"]
    assert codes({"code:in": f"{ICD}?fhir_vs=isa/E10"}) == ["E10.9"]
    assert codes({"code:not-in": f"{ICD}?fhir_vs=isa/E10"}) == ["A00.0", "E11.65"]
    assert service.codes_of(ICD, None) is not None


def test_cached_lookups_and_expansions_follow_a_reload(backend_hub: Hub) -> None:
    """Concepts and typeahead expansions are cached per version: a reload of the same version
    (a new version row) and a new latest version are answered at once, never from the old."""
    service = service_of(backend_hub)
    write_code_system(service.db, cms_concepts(io.StringIO(CSV), "2025"))
    typeahead = implicit_value_set(f"{ICD}?fhir_vs")

    def display(code: str, version: str | None = None) -> str | None:
        with service.read() as conn:
            found = service.concept(conn, service.code_system(conn, ICD, version), code)
        return None if found is None else found.display

    def cholera() -> list[str]:
        return [
            e.code
            for e in cached_expansion(
                service, typeahead, Options(filter="cholera", count=5)
            ).entries
        ]

    assert display("A00.0") == "Cholera due to Vibrio cholerae 01, biovar cholerae"
    assert display("A00.1") is None
    assert cholera() == ["A00.0"]
    with service.read() as conn:
        e11 = service.concept(conn, service.code_system(conn, ICD, None), "E11.9")
    assert e11 is not None and e11.parents and not e11.inactive

    renamed = CSV.replace("biovar cholerae", "biovar renamed") + "A001,Cholera,Cholera eltor\n"
    write_code_system(service.db, cms_concepts(io.StringIO(renamed), "2025"))
    assert display("A00.0") == "Cholera due to Vibrio cholerae 01, biovar renamed"
    assert display("A00.1") == "Cholera eltor"
    assert cholera() == ["A00.0", "A00.1"]

    write_code_system(service.db, cms_concepts(io.StringIO(CSV), "2026"))
    assert display("A00.1") is None and cholera() == ["A00.0"]
    assert display("A00.1", "2025") == "Cholera eltor"
