"""What real clients hit: ``POST _search`` never ignores its criteria, ``$everything`` takes
its standard parameters, and the CapabilityStatement declares what works (``_revinclude``, the
patch formats) and nothing that does not. Two tenants, real HTTP, both backends."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.security.rest_world import RestWorld, observation, rest_world

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[RestWorld]:
    with rest_world(database_url, tmp_path) as built:
        yield built


def ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in response.json().get("entry", [])
        if e["resource"]["resourceType"] != "OperationOutcome"
    }


# -- POST _search (http://hl7.org/fhir/R4/http.html#search) -----------------------------------


def test_post_search_reads_form_criteria_and_refuses_other_bodies(world: RestWorld) -> None:
    a = world.caller("clin-a")
    form = a.post("Patient/_search", content=b"family=Alpha", headers={"Content-Type": FORM})
    assert ids(form) == {"Patient/pa1"}
    charset = a.post(
        "Patient/_search",
        content=b"family=Beta",
        headers={"Content-Type": f"{FORM}; charset=utf-8"},
    )
    assert ids(charset) == {"Patient/pa2"}
    # URL and body criteria combine (AND).
    both = a.post(
        "Patient/_search?family=Alpha", content=b"family=Beta", headers={"Content-Type": FORM}
    )
    assert ids(both) == set()
    # No body: the URL's criteria alone.
    assert ids(a.post("Patient/_search?family=Beta")) == {"Patient/pa2"}
    # Bodies in any other form were ignored, answering an unfiltered search: now 415.
    for content_type, body in (
        ("application/json", b'{"family": "Alpha"}'),
        ("application/fhir+json", b'{"resourceType": "Parameters"}'),
        ("text/plain", b"family=Alpha"),
        (None, b"family=Alpha"),
    ):
        headers = {"Content-Type": content_type} if content_type else {}
        request = a.build_request("POST", "Patient/_search", content=body, headers=headers)
        assert content_type is not None or "content-type" not in request.headers
        response = a.send(request)
        assert response.status_code == 415, (content_type, response.text)
        assert FORM in response.json()["issue"][0]["diagnostics"]
    malformed = a.post("Patient/_search", content=b"\xff\xfe=1", headers={"Content-Type": FORM})
    assert malformed.status_code == 400


def test_system_search_by_post(world: RestWorld) -> None:
    a = world.caller("clin-a")
    body = b"_type=Patient,Observation&_id=pa1,obs-a1,pb1,obs-b1"
    found = a.post("_search", content=body, headers={"Content-Type": FORM})
    assert ids(found) == {"Patient/pa1", "Observation/obs-a1"}  # org-b's stay invisible
    refused = a.post(
        "_search", content=b'{"_type": "Patient"}', headers={"Content-Type": "application/json"}
    )
    assert refused.status_code == 415


# -- Patient/$everything (http://hl7.org/fhir/R4/patient-operation-everything.html) -----------


def everything(client: httpx.Client, query: str = "") -> set[str]:
    return ids(client.get(f"Patient/pa1/$everything{query}"))


def test_everything_takes_start_end_since_type_and_count(world: RestWorld) -> None:
    a = world.caller("clin-a")
    old = {**observation(None, "pa1"), "effectiveDateTime": "2019-06-01"}
    old_id = a.post("Observation", json=old).json()["id"]
    undated = {"resourceType": "Condition", "subject": {"reference": "Patient/pa1"}}
    condition_id = a.post("Condition", json=undated).json()["id"]
    full = {
        "Patient/pa1",
        "Observation/obs-a1",
        f"Observation/{old_id}",
        f"Condition/{condition_id}",
    }
    assert everything(a) >= full
    # Care dates: the 2019 Observation is outside 2024, the 2024 one outside 2019; the
    # Patient and the undated Condition are not tied to a date of care and stay.
    assert everything(a, "?start=2024-01-01") >= {
        "Patient/pa1",
        "Observation/obs-a1",
        f"Condition/{condition_id}",
    }
    assert f"Observation/{old_id}" not in everything(a, "?start=2024-01-01")
    in_2019 = everything(a, "?start=2019-01-01&end=2019-12-31")
    assert f"Observation/{old_id}" in in_2019 and "Observation/obs-a1" not in in_2019
    assert "Observation/obs-a1" not in everything(a, "?end=2020")
    assert everything(a, "?_type=Observation") == {"Observation/obs-a1", f"Observation/{old_id}"}
    assert everything(a, "?_since=2999-01-01T00:00:00Z") == set()
    page = a.get("Patient/pa1/$everything?_count=1")
    assert len(page.json()["entry"]) == 1
    assert any(link["relation"] == "next" for link in page.json()["link"])
    # The same by POST with a Parameters resource.
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDate": "2019-01-01"},
            {"name": "end", "valueDate": "2019-12-31"},
            {"name": "_type", "valueString": "Observation"},
            {"name": "_count", "valueInteger": 10},
        ],
    }
    posted = a.post("Patient/pa1/$everything", json=parameters)
    assert ids(posted) == {f"Observation/{old_id}"}
    assert a.get("Patient/pa1/$everything?start=yesterday").status_code == 400
    # Another tenant's patient stays invisible with every parameter.
    assert a.get("Patient/pb1/$everything?start=2000-01-01").status_code == 404


# -- CapabilityStatement and PATCH formats ----------------------------------------------------


def capability(world: RestWorld, resource_type: str) -> dict[str, Any]:
    statement = world.caller("clin-a").get("metadata").json()
    for entry in statement["rest"][0]["resource"]:
        if entry["type"] == resource_type:
            return {**entry, "_statement": statement}
    raise AssertionError(resource_type)


def test_capability_statement_declares_revinclude_and_only_working_parameters(
    world: RestWorld,
) -> None:
    patient = capability(world, "Patient")
    assert {"Observation:subject", "Observation:patient", "Encounter:subject"} <= set(
        patient["searchRevInclude"]
    )
    assert patient["_statement"]["patchFormat"] == ["application/json-patch+json"]
    a = world.caller("clin-a")
    revinclude = a.get("Patient?_id=pa1&_revinclude=Observation:subject")
    assert ids(revinclude) == {"Patient/pa1", "Observation/obs-a1"}
    for resource_type in ("Patient", "Observation"):
        declared = capability(world, resource_type)["searchParam"]
        assert declared
        for param in declared:
            response = a.get(
                f"{resource_type}?{param['name']}=x", headers={"Prefer": "handling=strict"}
            )
            if response.status_code != 200:
                issue = response.json()["issue"][0]
                assert issue["code"] != "not-supported", (resource_type, param, issue)


def test_patch_formats_other_than_json_patch_get_415(world: RestWorld) -> None:
    a = world.caller("clin-a")
    fhirpath_patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.gender"},
                    {"name": "value", "valueCode": "other"},
                ],
            }
        ],
    }
    for content_type in ("application/fhir+json", "application/json"):
        response = a.patch(
            "Patient/pa1",
            content=orjson.dumps(fhirpath_patch),
            headers={"Content-Type": content_type},
        )
        assert response.status_code == 415, response.text
        text = response.json()["issue"][0]["diagnostics"]
        assert "FHIRPath Patch" in text and "application/json-patch+json" in text
    xml = a.patch(
        "Patient/pa1", content=b"<diff/>", headers={"Content-Type": "application/xml-patch+xml"}
    )
    assert xml.status_code == 415
    json_patch = [{"op": "replace", "path": "/name/0/family", "value": "Gamma"}]
    patched = a.patch(
        "Patient/pa1",
        content=orjson.dumps(json_patch),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 200 and patched.json()["name"][0]["family"] == "Gamma"
    # In a transaction, the entry naming a FHIRPath Patch is refused the same way.
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": fhirpath_patch, "request": {"method": "PATCH", "url": "Patient/pa1"}},
        ],
    }
    refused = a.post("", json=bundle)
    assert refused.status_code == 415 and "FHIRPath Patch" in refused.text
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(orjson.dumps(json_patch)).decode(),
    }
    bundle["entry"][0]["resource"] = binary
    assert a.post("", json=bundle).status_code == 200
