"""Search over the REST API: the HTTP entry points (GET, POST _search, compartments,
$everything, handling preferences). Query semantics are tested in tests/fhir_store/search."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient

from tests.core.fhir_samples import observation, patient

FHIR = {"Content-Type": "application/fhir+json"}


def create(client: TestClient, resource: dict[str, object]) -> str:
    response = client.post(
        f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers=FHIR
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def ids(bundle: dict[str, object]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]  # type: ignore[attr-defined, index]


def test_get_and_post_search_agree(client: TestClient) -> None:
    pid = create(client, patient(family="Searchable"))
    create(client, patient(family="Other"))
    by_get = client.get("/fhir/Patient", params={"family": "searchable"}).json()
    by_post = client.post(
        "/fhir/Patient/_search",
        content="family=searchable",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ).json()
    assert ids(by_get) == ids(by_post) == [pid]
    assert by_get["type"] == "searchset" and by_get["total"] == 1


def test_compartment_search_and_everything(client: TestClient) -> None:
    pid = create(client, patient())
    other = create(client, patient(mrn="2"))
    mine = create(client, observation(f"Patient/{pid}"))
    create(client, observation(f"Patient/{other}"))
    compartment = client.get(f"/fhir/Patient/{pid}/Observation").json()
    assert ids(compartment) == [mine]
    everything = client.get(f"/fhir/Patient/{pid}/$everything").json()
    found = {e["resource"]["id"] for e in everything["entry"]}
    assert {pid, mine} <= found and other not in found
    assert client.get("/fhir/Patient/nobody/Observation").status_code == 404


def test_unknown_parameters_lenient_and_strict(client: TestClient) -> None:
    create(client, patient())
    lenient = client.get("/fhir/Patient", params={"shoe-size": "42"})
    assert lenient.status_code == 200
    outcomes = [e for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcomes and "shoe-size" in orjson.dumps(outcomes[0]).decode()
    strict = client.get(
        "/fhir/Patient", params={"shoe-size": "42"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400 and strict.json()["resourceType"] == "OperationOutcome"


def test_paging_links_are_followable(client: TestClient) -> None:
    created = {create(client, patient(mrn=str(i))) for i in range(7)}
    seen: list[str] = []
    url: str | None = "/fhir/Patient?_count=3"
    while url:
        page = client.get(url).json()
        seen += ids(page)
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        url = url.replace("http://testserver", "") if url else None
    assert sorted(seen) == sorted(created) and len(seen) == 7


def test_system_search_by_type(client: TestClient) -> None:
    pid = create(client, patient())
    oid = create(client, observation(f"Patient/{pid}"))
    both = client.get("/fhir", params={"_type": "Patient,Observation"}).json()
    assert set(ids(both)) == {pid, oid}
