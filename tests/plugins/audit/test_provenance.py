"""Writes by users and clients carry a Provenance, written in the same transaction; writes by
the system (adapters, loaders, the CLI) do not get one from here."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.fhir_store.tenancy import tenant_of
from fhirhub.fhir_store.validation import validate_resource
from fhirhub.sdk import acting_as, create, search
from tests.core.fhir_samples import observation, patient
from tests.plugins.audit.header_auth import as_user

ALICE = as_user("alice")


def provenances(hub: Hub, **params: str) -> list[dict[str, Any]]:
    found = search(hub, "Provenance", {"_count": "100", **params})
    for resource in found:
        validate_resource(resource, expected_type="Provenance")
    return sorted(found, key=lambda p: p["recorded"])


def activity(provenance: dict[str, Any]) -> str:
    coding = provenance["activity"]["coding"][0]
    assert coding["system"] == "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
    return str(coding["code"])


def targets(provenance: dict[str, Any]) -> list[str]:
    return [t["reference"] for t in provenance["target"]]


def test_create_update_delete_each_carry_a_provenance(
    audited: TestClient, audited_hub: Hub
) -> None:
    created = audited.post("/fhir/Patient", content=orjson.dumps(patient()), headers=ALICE)
    pid = created.json()["id"]
    # In the same transaction: present as soon as the write has answered.
    (first,) = provenances(audited_hub)
    assert targets(first) == [f"Patient/{pid}/_history/1"] and activity(first) == "CREATE"
    body = orjson.dumps({**created.json(), "gender": "other"})
    audited.put(f"/fhir/Patient/{pid}", content=body, headers=ALICE)
    audited.delete(f"/fhir/Patient/{pid}", headers=ALICE)
    created_, updated, deleted = provenances(audited_hub)
    assert (activity(updated), targets(updated)) == ("UPDATE", [f"Patient/{pid}/_history/2"])
    assert (activity(deleted), targets(deleted)) == ("DELETE", [f"Patient/{pid}/_history/3"])
    author = deleted["agent"][0]
    assert author["type"]["coding"][0]["code"] == "author"
    assert author["who"]["identifier"]["value"] == "user:alice"
    # Searchable by what it covers.
    assert len(provenances(audited_hub, target=f"Patient/{pid}")) == 3


def test_a_transaction_gets_one_provenance_naming_every_version(
    audited: TestClient, audited_hub: Hub
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": observation("urn:uuid:11111111-1111-1111-1111-111111111111"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    doctor = as_user("dr", fhir_user="Practitioner/p-7", tenant="org-a", client="chart-app")
    response = audited.post("/fhir", content=orjson.dumps(bundle), headers=doctor)
    assert response.status_code == 200, response.text
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    (provenance,) = provenances(audited_hub)
    assert sorted(targets(provenance)) == sorted(
        "/".join(location.split("/")[-4:]) for location in locations
    )
    assert activity(provenance) == "CREATE"
    author, app = provenance["agent"]
    assert author["who"]["reference"] == "Practitioner/p-7"
    assert author["onBehalfOf"] == {"reference": "Organization/org-a"}
    assert app["who"]["identifier"]["value"] == "chart-app"
    assert tenant_of(provenance) == "org-a"


def test_a_mixed_transaction_gets_one_provenance_per_activity(
    audited: TestClient, audited_hub: Hub
) -> None:
    pid = audited.post("/fhir/Patient", content=orjson.dumps(patient()), headers=ALICE).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**pid, "gender": "female"},
                "request": {"method": "PUT", "url": f"Patient/{pid['id']}"},
            },
            {"resource": patient(family="Other"), "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    assert audited.post("/fhir", content=orjson.dumps(bundle), headers=ALICE).status_code == 200
    _first, *rest = provenances(audited_hub)
    assert sorted(activity(p) for p in rest) == ["CREATE", "UPDATE"]


def test_system_writes_get_no_provenance_from_here(client: TestClient, hub: Hub) -> None:
    """Authentication off, and in-process writes of adapters and loaders: the system."""
    client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=ALICE)
    create(hub, patient())
    assert provenances(hub) == []


def test_in_process_writes_on_behalf_of_a_user_carry_one(hub: Hub) -> None:
    """A plugin route calling the SDK runs as its caller (no HTTP app needed)."""
    from fhirhub.sdk import Access, parse_scopes

    with acting_as(Access(subject="client:importer", scopes=parse_scopes("system/*.cruds"))):
        stored = create(hub, patient())
    (provenance,) = provenances(hub)
    assert targets(provenance) == [f"Patient/{stored['id']}/_history/1"]
    assert provenance["agent"][0]["who"]["display"] == "client:importer"
