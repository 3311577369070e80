"""Matching on write: certain matches become one Person with Patient.link, doubtful ones a
review Task; a reviewer's answer links the pair or keeps it apart for good; never across
tenants."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from tests.plugins.mpi.conftest import as_, person, settle, write

MRN_A = "urn:oid:1.2.3.4.hospital-a"
MRN_LAB = "urn:oid:1.2.3.4.lab"
REVIEW = "http://fhirhub.org/fhir/CodeSystem/mpi|review-match"


def persons_of(client: TestClient, caller: str, patient_id: str) -> list[dict[str, Any]]:
    bundle = client.get(f"/fhir/Person?patient=Patient/{patient_id}", headers=as_(caller)).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def linked(person: dict[str, Any]) -> set[str]:
    return {link["target"]["reference"] for link in person["link"]}


def seealso(client: TestClient, caller: str, patient_id: str) -> set[str]:
    patient = client.get(f"/fhir/Patient/{patient_id}", headers=as_(caller)).json()
    links = patient.get("link", [])
    return {x["other"]["reference"] for x in links if x["type"] == "seealso"}


def open_reviews(client: TestClient, caller: str) -> list[dict[str, Any]]:
    url = f"/fhir/Task?code={REVIEW}&status=requested"
    return [e["resource"] for e in client.get(url, headers=as_(caller)).json().get("entry", [])]


def test_a_nickname_and_a_typo_are_linked_into_one_person(hub: Hub, client: TestClient) -> None:
    first = write(
        client,
        "clinician-a",
        person(
            "Elizabeth", "Okonkwo", "1984-03-09", phone="555-201-3344", identifier=(MRN_A, "A1")
        ),
    )
    second = write(
        client,
        "clinician-a",
        person("Liz", "Okonkwo", "1984-03-09", phone="(555) 201 3344", identifier=(MRN_LAB, "L9")),
    )
    third = write(
        client, "clinician-a", person("Elizabeth", "Okonkow", "1984-09-03", phone="555-201-3344")
    )
    settle(hub)
    [master] = persons_of(client, "clinician-a", first)
    assert linked(master) == {f"Patient/{first}", f"Patient/{second}", f"Patient/{third}"}
    assert seealso(client, "clinician-a", first) == {f"Patient/{second}", f"Patient/{third}"}
    # Source demographics are never rewritten: only links were added.
    stored = client.get(f"/fhir/Patient/{second}", headers=as_("clinician-a")).json()
    assert stored["name"][0]["given"] == ["Liz"]
    # The link is audited.
    provenances = client.get(
        f"/fhir/Provenance?target=Person/{master['id']}", headers=as_("clinician-a")
    ).json()
    assert any(
        c["code"] == "link"
        for e in provenances["entry"]
        for c in e["resource"]["activity"]["coding"]
    )


def test_matching_never_crosses_tenants(hub: Hub, client: TestClient) -> None:
    mine = write(
        client, "clinician-a", person("Tomasz", "Wierzbicki", "1961-11-30", phone="555-777-1000")
    )
    theirs = write(
        client, "clinician-b", person("Tomasz", "Wierzbicki", "1961-11-30", phone="555-777-1000")
    )
    settle(hub)
    assert persons_of(client, "clinician-a", mine) == []
    assert persons_of(client, "clinician-b", theirs) == []
    assert open_reviews(client, "clinician-a") == open_reviews(client, "clinician-b") == []


def test_twins_go_to_review_and_a_rejection_is_remembered(hub: Hub, client: TestClient) -> None:
    anna = write(
        client,
        "clinician-a",
        person("Anna", "Lindqvist", "2001-06-14", phone="555-300-4000", postcode="02139"),
    )
    greta = write(
        client,
        "clinician-a",
        person("Greta", "Lindqvist", "2001-06-14", phone="555-300-4000", postcode="02139"),
    )
    settle(hub)
    assert persons_of(client, "clinician-a", anna) == []  # never linked automatically
    [task] = open_reviews(client, "clinician-a")
    assert {i["valueReference"]["reference"] for i in task["input"] if "valueReference" in i} == {
        f"Patient/{anna}",
        f"Patient/{greta}",
    }
    assert "given: disagree" in next(i["valueString"] for i in task["input"] if "valueString" in i)
    assert open_reviews(client, "clinician-b") == []  # another tenant sees none of it
    decided = client.post(
        f"/fhir/Task/{task['id']}/$mpi-decide",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "decision", "valueCode": "not-same"}],
        },
        headers=as_("clinician-a"),
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "rejected"
    again = client.post(
        f"/fhir/Task/{task['id']}/$mpi-decide",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "decision", "valueCode": "same"}],
        },
        headers=as_("clinician-a"),
    )
    assert again.status_code == 409
    # Greta's record is updated by a source: she is matched again, and not proposed again.
    updated = client.get(f"/fhir/Patient/{greta}", headers=as_("clinician-a")).json()
    updated["telecom"].append({"system": "email", "value": "greta@example.org"})
    assert (
        client.put(f"/fhir/Patient/{greta}", json=updated, headers=as_("clinician-a")).status_code
        == 200
    )
    settle(hub)
    assert open_reviews(client, "clinician-a") == []
    assert persons_of(client, "clinician-a", greta) == []


def test_accepting_a_review_links_the_pair(hub: Hub, client: TestClient) -> None:
    a = write(client, "clinician-a", person("Rafael", "Antunes", "1975-02-27", postcode="10115"))
    b = write(
        client,
        "clinician-a",
        person("Rafael", "Antunes", "1975-02-27", postcode="99999", phone="555-111-2222"),
    )
    settle(hub)
    reviews = open_reviews(client, "clinician-a")
    if not reviews:  # the model may find this certain: then it is linked already
        assert persons_of(client, "clinician-a", a)
        return
    [task] = reviews
    # A reader without write scope cannot decide.
    denied = client.post(
        f"/fhir/Task/{task['id']}/$mpi-decide",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "decision", "valueCode": "same"}],
        },
        headers=as_("reader-a"),
    )
    assert denied.status_code == 403
    assert (
        client.post(
            f"/fhir/Task/{task['id']}/$mpi-decide",
            json={
                "resourceType": "Parameters",
                "parameter": [{"name": "decision", "valueCode": "same"}],
            },
            headers=as_("clinician-b"),
        ).status_code
        == 404
    )
    accepted = client.post(
        f"/fhir/Task/{task['id']}/$mpi-decide",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "decision", "valueCode": "same"}],
        },
        headers=as_("clinician-a"),
    )
    assert accepted.status_code == 200, accepted.text
    [master] = persons_of(client, "clinician-a", a)
    assert linked(master) == {f"Patient/{a}", f"Patient/{b}"}
    assert master["link"][0]["assurance"] == "level4"


def test_a_source_update_that_drops_the_links_gets_them_back(hub: Hub, client: TestClient) -> None:
    a = write(
        client, "clinician-a", person("Ingrid", "Halvorsen", "1950-12-01", identifier=(MRN_A, "H1"))
    )
    b = write(
        client, "clinician-a", person("Ingrid", "Halvorsen", "1950-12-01", identifier=(MRN_A, "H1"))
    )
    settle(hub)
    assert seealso(client, "clinician-a", a) == {f"Patient/{b}"}
    # The source sends the record again as it knows it (no links).
    resent = person("Ingrid", "Halvorsen", "1950-12-01", identifier=(MRN_A, "H1")) | {"id": a}
    assert (
        client.put(f"/fhir/Patient/{a}", json=resent, headers=as_("clinician-a")).status_code == 200
    )
    settle(hub)
    assert seealso(client, "clinician-a", a) == {f"Patient/{b}"}
