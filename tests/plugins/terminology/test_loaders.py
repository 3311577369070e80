"""LOINC and SNOMED CT loaders on small files in their release formats, a CodeSystem resource's
hierarchy, and the code browser page."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.plugins.terminology.fhir_codesystem import from_resource
from fhirhub.plugins.terminology.loading import load
from fhirhub.plugins.terminology.model import closure
from fhirhub.sdk import FhirError
from tests.plugins.terminology.conftest import parameter, properties

pytestmark = pytest.mark.xdist_group("terminology")

LOINC_CSV = """"LOINC_NUM","COMPONENT","PROPERTY","TIME_ASPCT","SYSTEM","SCALE_TYP","METHOD_TYP","CLASS","STATUS","SHORTNAME","LONG_COMMON_NAME"
"2345-7","Glucose","MCnc","Pt","Ser/Plas","Qn","","CHEM","ACTIVE","Glucose SerPl-mCnc","Glucose [Mass/volume] in Serum or Plasma"
"15074-8","Glucose","SCnc","Pt","Bld","Qn","","CHEM","ACTIVE","Glucose Bld-sCnc","Glucose [Moles/volume] in Blood"
"1-8","Acyclovir","Susc","Pt","Isolate","OrdQn","","ABXBACT","DEPRECATED","Acyclovir Susc Islt","Acyclovir [Susceptibility]"
"""
HIERARCHY_CSV = """PATH_TO_ROOT,SEQUENCE,IMMEDIATE_PARENT,CODE,CODE_TEXT
,1,,LP432695-7,{component}
LP432695-7,1,LP432695-7,LP14635-4,Glucose
LP432695-7.LP14635-4,1,LP14635-4,2345-7,Glucose [Mass/volume] in Serum or Plasma
LP432695-7.LP14635-4,2,LP14635-4,15074-8,Glucose [Moles/volume] in Blood
"""


def test_loinc_terms_and_hierarchy(hub: Hub, client: TestClient, tmp_path: Path) -> None:
    (tmp_path / "Loinc.csv").write_text(LOINC_CSV)
    (tmp_path / "MultiAxialHierarchy.csv").write_text(HIERARCHY_CSV)
    result = load(
        hub,
        "loinc",
        path=str(tmp_path / "Loinc.csv"),
        hierarchy=str(tmp_path / "MultiAxialHierarchy.csv"),
        version="2.82",
    )
    assert result.version.concept_count == 5
    who = {"X-Test-Caller": "clinician-a"}
    out = client.get(
        "/fhir/CodeSystem/$lookup?system=http://loinc.org&code=2345-7", headers=who
    ).json()
    assert parameter(out, "display") == "Glucose [Mass/volume] in Serum or Plasma"
    assert properties(out, "COMPONENT") == ["Glucose"] and properties(out, "parent") == [
        "LP14635-4"
    ]
    out = client.get(
        "/fhir/CodeSystem/$lookup?system=http://loinc.org&code=1-8", headers=who
    ).json()
    assert properties(out, "inactive") == [True]
    out = client.get(
        "/fhir/CodeSystem/$subsumes?system=http://loinc.org&codeA=LP14635-4&codeB=15074-8",
        headers=who,
    ).json()
    assert parameter(out, "outcome") == "subsumes"


def test_loinc_without_its_columns_is_refused(hub: Hub, tmp_path: Path) -> None:
    (tmp_path / "Loinc.csv").write_text("A,B\n1,2\n")
    with pytest.raises(FhirError) as caught:
        load(hub, "loinc", path=str(tmp_path / "Loinc.csv"))
    assert "LOINC_NUM" in caught.value.message


def _rf2(folder: Path) -> None:
    snapshot = folder / "Snapshot" / "Terminology"
    snapshot.mkdir(parents=True)
    (snapshot / "sct2_Concept_Snapshot_INT_20250101.txt").write_text(
        "id\teffectiveTime\tactive\tmoduleId\tdefinitionStatusId\n"
        "404684003\t20020131\t1\t900000000000207008\t900000000000074008\n"
        "73211009\t20020131\t1\t900000000000207008\t900000000000074008\n"
        "44054006\t20020131\t1\t900000000000207008\t900000000000073002\n"
        "999999999\t20020131\t0\t900000000000207008\t900000000000074008\n"
    )
    (snapshot / "sct2_Description_Snapshot-en_INT_20250101.txt").write_text(
        "id\teffectiveTime\tactive\tmoduleId\tconceptId\tlanguageCode\ttypeId\tterm\tcaseSignificanceId\n"
        "1\t2002\t1\t9\t404684003\ten\t900000000000013009\tClinical finding\t9\n"
        "2\t2002\t1\t9\t73211009\ten\t900000000000003001\tDiabetes mellitus (disorder)\t9\n"
        "3\t2002\t1\t9\t73211009\ten\t900000000000013009\tDiabetes mellitus\t9\n"
        "4\t2002\t1\t9\t44054006\ten\t900000000000013009\tDiabetes mellitus type 2\t9\n"
    )
    (snapshot / "sct2_Relationship_Snapshot_INT_20250101.txt").write_text(
        "id\teffectiveTime\tactive\tmoduleId\tsourceId\tdestinationId\trelationshipGroup\ttypeId\tcharacteristicTypeId\tmodifierId\n"
        "10\t2002\t1\t9\t73211009\t404684003\t0\t116680003\t900000000000011006\t900000000000451002\n"
        "11\t2002\t1\t9\t44054006\t73211009\t0\t116680003\t900000000000011006\t900000000000451002\n"
        "12\t2002\t0\t9\t44054006\t404684003\t0\t116680003\t900000000000011006\t900000000000451002\n"
    )


def test_snomed_rf2_snapshot(hub: Hub, client: TestClient, tmp_path: Path) -> None:
    _rf2(tmp_path)
    result = load(hub, "snomed", path=str(tmp_path))
    assert result.version.version == "20250101" and result.version.concept_count == 4
    who = {"X-Test-Caller": "clinician-b"}
    base = "/fhir/CodeSystem/$subsumes?system=http://snomed.info/sct"
    assert (
        parameter(
            client.get(f"{base}&codeA=404684003&codeB=44054006", headers=who).json(), "outcome"
        )
        == "subsumes"
    )
    out = client.get(
        "/fhir/CodeSystem/$lookup?system=http://snomed.info/sct&code=73211009", headers=who
    ).json()
    assert parameter(out, "display") == "Diabetes mellitus"
    expansion = client.get(
        "/fhir/ValueSet/$expand?url=http://snomed.info/sct?fhir_vs=isa/73211009&activeOnly=true",
        headers=who,
    ).json()
    assert sorted(c["code"] for c in expansion["expansion"]["contains"]) == ["44054006", "73211009"]


def test_code_system_hierarchy_by_nesting_and_properties() -> None:
    resource = {
        "resourceType": "CodeSystem",
        "url": "http://example.org/cs",
        "content": "complete",
        "concept": [
            {"code": "a", "concept": [{"code": "b"}]},
            {"code": "c", "property": [{"code": "parent", "valueCode": "b"}]},
            {"code": "d", "property": [{"code": "child", "valueCode": "a"}]},
        ],
    }
    data = from_resource(resource)
    pairs = set(closure(data.concepts))
    assert {("a", "b"), ("b", "c"), ("a", "c"), ("d", "a"), ("d", "c")} <= pairs
    bad = dict(
        resource, concept=[{"code": "a", "property": [{"code": "parent", "valueCode": "zz"}]}]
    )
    with pytest.raises(FhirError):
        list(closure(from_resource(bad).concepts))
    with pytest.raises(FhirError):
        from_resource(dict(resource, concept=[{"code": "a"}, {"code": "a"}]))


def test_the_code_browser_is_in_the_ui_shell(client: TestClient) -> None:
    page = client.get("/plugins/terminology/browser/")
    assert page.status_code == 200 and "Code browser" in page.text
    assert client.get("/plugins/terminology/browser/browser.js").status_code == 200
    from fhirhub.sdk import call_hook

    hub = client.app.state.hub if hasattr(client.app.state, "hub") else None
    if hub is not None:
        pages = [p for _plugin, found in call_hook(hub, "ui_pages", hub=hub) for p in found]
        assert any(p["path"] == "/plugins/terminology/browser/" for p in pages)


def test_a_deep_hierarchy_is_walked_without_recursion_and_bounded() -> None:
    root: dict[str, object] = {"code": "x0"}
    node = root
    for i in range(1, 3000):
        child: dict[str, object] = {"code": f"x{i}"}
        node["concept"] = [child]
        node = child
    data = from_resource({"url": "http://example.org/deep", "concept": [root]})
    assert data.concepts[-1].parents == ["x2998"]
    with pytest.raises(FhirError) as caught:
        list(closure(data.concepts, limit=1_000_000))  # 4.5 million pairs
    assert caught.value.status == 400
