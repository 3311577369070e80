"""Result parameters: _sort, _count and paging links, _total, _summary, _elements
(http://hl7.org/fhir/R4/search.html#return)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from fhirhub.fhir_store.errors import FhirError
from tests.fhir_store.search.query_fixtures import *  # noqa: F403
from tests.fhir_store.search.query_fixtures import Db, entry_ids


def people(db: Db) -> None:
    db.put(
        {
            "resourceType": "Patient",
            "id": "a",
            "name": [{"family": "Zeta"}],
            "birthDate": "1990-05-01",
            "gender": "male",
        },
        {
            "resourceType": "Patient",
            "id": "b",
            "name": [{"family": "Alpha"}, {"family": "Omega"}],
            "birthDate": "1980",
            "gender": "female",
        },
        {"resourceType": "Patient", "id": "c", "name": [{"family": "Mu"}], "gender": "male"},
        {
            "resourceType": "Patient",
            "id": "d",
            "name": [{"family": "Beta"}],
            "birthDate": "2000-01-01",
            "gender": "other",
        },
        {
            "resourceType": "Patient",
            "id": "e",
            "name": [{"family": "Beta"}],
            "birthDate": "1970-01-01",
            "gender": "female",
        },
    )


def order(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def test_sort(db: Db) -> None:
    people(db)
    # ascending by the lowest value, descending by the highest (b has Alpha and Omega)
    assert order(db.search("Patient", "_sort=family")) == ["b", "d", "e", "c", "a"]
    assert order(db.search("Patient", "_sort=-family")) == ["a", "b", "c", "d", "e"]
    # missing values last in both directions
    assert order(db.search("Patient", "_sort=birthdate")) == ["e", "b", "a", "d", "c"]
    assert order(db.search("Patient", "_sort=-birthdate")) == ["d", "a", "b", "e", "c"]
    assert order(db.search("Patient", "_sort=gender,-birthdate")) == ["b", "e", "a", "c", "d"]
    assert order(db.search("Patient", "_sort=family,-_id")) == ["b", "e", "d", "c", "a"]
    assert order(db.search("Patient", "_sort=-_id")) == ["e", "d", "c", "b", "a"]


def test_sort_last_updated(db: Db) -> None:
    db.put({"resourceType": "Patient", "id": "x"}, last_updated=3_000_000)
    db.put({"resourceType": "Patient", "id": "y"}, last_updated=1_000_000)
    db.put({"resourceType": "Patient", "id": "z"}, last_updated=2_000_000)
    assert order(db.search("Patient", "_sort=_lastUpdated")) == ["y", "z", "x"]
    assert order(db.search("Patient", "_sort=-_lastUpdated")) == ["x", "z", "y"]


@pytest.mark.parametrize("sort", ["bogus", "-bogus", "_text"])
def test_bad_sort(db: Db, sort: str) -> None:
    with pytest.raises(FhirError):
        db.search("Patient", f"_sort={sort}")


def links(bundle: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    return {link["relation"]: parse_qsl(urlsplit(link["url"]).query) for link in bundle["link"]}


def test_paging_walks_every_result_once(db: Db) -> None:
    db.put(*[{"resourceType": "Patient", "id": f"p{i:02}", "gender": "male"} for i in range(23)])
    seen: list[str] = []
    bundle = db.search("Patient", "gender=male&_count=10&_sort=-_id")
    pages = 0
    while True:
        pages += 1
        assert bundle["total"] == 23
        seen.extend(order(bundle))
        rel = links(bundle)
        assert ("gender", "male") in rel["self"] and ("_sort", "-_id") in rel["self"]
        assert ("_count", "10") in rel["first"]
        if "next" not in rel:
            break
        bundle = db.search("Patient", rel["next"])
    assert pages == 3
    assert seen == [f"p{i:02}" for i in reversed(range(23))]
    rel = links(bundle)
    assert ("_offset", "20") in rel["self"] and ("_offset", "10") in rel["previous"]
    assert ("_offset", "20") in rel["last"]
    # previous link goes back
    assert order(db.search("Patient", rel["previous"])) == [f"p{i:02}" for i in range(12, 2, -1)]


def test_count_zero_and_summary_count(db: Db) -> None:
    people(db)
    zero = db.search("Patient", "gender=male&_count=0")
    assert zero["total"] == 2 and "entry" not in zero
    summary = db.search("Patient", "gender=female&_summary=count")
    assert summary["total"] == 2 and "entry" not in summary
    assert [link["relation"] for link in summary["link"]] == ["self"]


def test_count_is_capped(db: Db) -> None:
    people(db)
    bundle = db.search("Patient", "_count=5000", max_count=2)
    assert len(order(bundle)) == 2 and bundle["total"] == 5
    assert len(order(db.search("Patient", "", default_count=3))) == 3


def test_total_none(db: Db) -> None:
    people(db)
    bundle = db.search("Patient", "_total=none&_count=2")
    assert "total" not in bundle
    assert order(bundle) == ["a", "b"]
    assert "next" in links(bundle)
    last = db.search("Patient", "_total=none&_count=2&_offset=4")
    assert order(last) == ["e"] and "next" not in links(last)
    assert db.search("Patient", "_total=estimate")["total"] == 5
    with pytest.raises(FhirError):
        db.search("Patient", "_total=maybe")


def test_summary_true_keeps_summary_elements(db: Db) -> None:
    db.put(
        {
            "resourceType": "Observation",
            "id": "o1",
            "meta": {"tag": [{"system": "urn:t", "code": "keep"}]},
            "text": {
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
            },
            "status": "final",
            "code": {"text": "weight"},
            "valueQuantity": {"value": 70},
            "note": [{"text": "not a summary element"}],
            "referenceRange": [{"text": "nor this"}],
        }
    )
    resource = db.search("Observation", "_summary=true")["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "status", "code", "valueQuantity"}
    tags = resource["meta"]["tag"]
    assert {"system": "urn:t", "code": "keep"} in tags
    assert any(t["code"] == "SUBSETTED" for t in tags)
    data = db.search("Observation", "_summary=data")["entry"][0]["resource"]
    assert "text" not in data and "note" in data
    text = db.search("Observation", "_summary=text")["entry"][0]["resource"]
    assert set(text) == {"resourceType", "id", "meta", "text", "status", "code"}
    full = db.search("Observation", "_summary=false")["entry"][0]["resource"]
    assert "note" in full and all(t["code"] != "SUBSETTED" for t in full["meta"]["tag"])


def test_elements(db: Db) -> None:
    people(db)
    bundle = db.search("Patient", "_id=a&_elements=gender,birthDate")
    resource = bundle["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "gender", "birthDate"}
    assert resource["meta"]["tag"][0]["code"] == "SUBSETTED"
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "_elements=gender%2CbirthDate" in self_link
    with pytest.raises(FhirError):
        db.search("Patient", "_summary=true&_elements=gender")
    with pytest.raises(FhirError):
        db.search("Patient", "_summary=maybe")


def test_elements_on_included_resources(db: Db) -> None:
    db.put(
        {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "2000"},
        {
            "resourceType": "Observation",
            "id": "o",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p"},
        },
    )
    bundle = db.search("Observation", "_elements=status&_include=Observation:subject")
    assert entry_ids(bundle, "include") == ["Patient/p"]
    assert set(bundle["entry"][0]["resource"]) == {"resourceType", "id", "meta", "status"}


@pytest.mark.parametrize("resource_type", ["Patient", None])
def test_default_order_pages_by_key(db: Db, resource_type: str | None) -> None:
    db.put(*[{"resourceType": "Patient", "id": f"p{i:02}"} for i in range(7)])
    db.put({"resourceType": "Organization", "id": "org"})
    query = "_count=3" if resource_type else "_type=Patient,Organization&_count=3"
    bundle = db.search(resource_type, query)
    seen = order(bundle)
    offsets = []
    while "next" in links(bundle):
        rel = links(bundle)
        assert ("_after", f"{bundle['entry'][-1]['resource']['resourceType']}/{seen[-1]}") in rel[
            "next"
        ]
        bundle = db.search(resource_type, rel["next"])
        offsets.append(dict(links(bundle)["self"]).get("_offset"))
        seen.extend(order(bundle))
    expected = [f"p{i:02}" for i in range(7)]
    assert seen == (expected if resource_type else ["org", *expected])
    assert offsets == (["3", "6"] if resource_type else ["3", "6"])
    # a previous link (offset only) leads back to the same page
    back = db.search(resource_type, links(bundle)["previous"])
    assert order(back) == seen[3:6]
