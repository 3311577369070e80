"""``Patient/$match``, ``$everything?_mdm=true``, ``$merge``/``$unmerge`` and HL7 ADT^A40, with
the access rules of each: tenants, patient-facing tokens, roles."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from tests.plugins.mpi.conftest import as_, person, settle, write

GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"


def match(
    client: TestClient, caller: str | dict[str, str], patient: dict[str, Any], **params: Any
) -> Any:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": patient}]
        + [
            {"name": k, **({"valueBoolean": v} if isinstance(v, bool) else {"valueInteger": v})}
            for k, v in params.items()
        ],
    }
    headers = as_(caller) if isinstance(caller, str) else caller
    return client.post("/fhir/Patient/$match", json=body, headers=headers)


def grades(bundle: dict[str, Any]) -> dict[str, tuple[str, float]]:
    return {
        e["resource"]["id"]: (e["search"]["extension"][0]["valueCode"], e["search"]["score"])
        for e in bundle["entry"]
    }


def test_match_grades_candidates_of_the_callers_tenant_only(hub: Hub, client: TestClient) -> None:
    amara = write(
        client, "clinician-a", person("Amara", "Okafor", "1990-07-21", phone="555-420-1000")
    )
    write(client, "clinician-a", person("Kwame", "Mensah", "1948-01-05"))
    other_tenant = write(
        client, "clinician-b", person("Amara", "Okafor", "1990-07-21", phone="555-420-1000")
    )
    settle(hub)
    response = match(
        client, "clinician-a", person("Amarah", "Okafor", "1990-07-21", phone="555 420 1000")
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert grades(bundle) == {amara: ("certain", grades(bundle)[amara][1])}
    assert 0.99 <= grades(bundle)[amara][1] <= 1
    assert bundle["entry"][0]["search"]["mode"] == "match"
    assert other_tenant not in grades(
        match(client, "clinician-a", person("Amara", "Okafor", "1990-07-21")).json()
    )
    assert set(
        grades(match(client, "clinician-b", person("Amara", "Okafor", "1990-07-21")).json())
    ) == {other_tenant}


def test_match_only_certain_and_count(hub: Hub, client: TestClient) -> None:
    twin_a = write(
        client,
        "clinician-a",
        person("Noor", "Haddad", "2010-04-04", phone="555-999-0001", postcode="60601"),
    )
    twin_b = write(
        client,
        "clinician-a",
        person("Leila", "Haddad", "2010-04-04", phone="555-999-0001", postcode="60601"),
    )
    settle(hub)
    query = person("Noor", "Haddad", "2010-04-04", phone="555-999-0001", postcode="60601")
    everyone = grades(match(client, "clinician-a", query).json())
    assert everyone[twin_a][0] == "certain"
    assert everyone[twin_b][0] in ("probable", "possible")  # a twin: never certain
    certain = grades(match(client, "clinician-a", query, onlyCertainMatches=True).json())
    assert set(certain) == {twin_a}
    assert len(match(client, "clinician-a", query, count=1).json()["entry"]) == 1
    assert match(client, "clinician-a", query, count=0).status_code == 400


def test_match_needs_a_user_level_scope_and_a_patient(hub: Hub, client: TestClient) -> None:
    mine = write(client, "clinician-a", person("Yuki", "Tanabe", "1999-09-09"))
    settle(hub)
    patient_app = {"X-Test-Patient": mine, "Content-Type": "application/fhir+json"}
    assert match(client, patient_app, person("Yuki", "Tanabe", "1999-09-09")).status_code == 403
    bad = client.post(
        "/fhir/Patient/$match",
        json={"resourceType": "Parameters", "parameter": []},
        headers=as_("clinician-a"),
    )
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    broken = {"resourceType": "Patient", "name": [{"family": 42}], "birthDate": "yesterday"}
    refused = match(client, "clinician-a", broken)
    assert refused.status_code == 400, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"


def observation(patient_id: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def test_everything_with_mdm_follows_the_links(hub: Hub, client: TestClient) -> None:
    a = write(
        client,
        "clinician-a",
        person("Priya", "Raman", "1983-05-17", identifier=("urn:mrn:a", "P1")),
    )
    b = write(
        client,
        "clinician-a",
        person("Priya", "Raman", "1983-05-17", identifier=("urn:mrn:a", "P1")),
    )
    stranger = write(client, "clinician-a", person("Tobias", "Wren", "1970-01-30"))
    obs_a = write(client, "clinician-a", observation(a, "8302-2"))
    obs_b = write(client, "clinician-a", observation(b, "29463-7"))
    write(client, "clinician-a", observation(stranger, "8867-4"))
    settle(hub)

    def ids(url: str, headers: dict[str, str]) -> set[str]:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        return {
            f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in response.json()["entry"]
        }

    plain = ids(f"/fhir/Patient/{a}/$everything", as_("clinician-a"))
    assert f"Observation/{obs_b}" not in plain
    followed = ids(f"/fhir/Patient/{a}/$everything?_mdm=true", as_("clinician-a"))
    assert {
        f"Patient/{a}",
        f"Patient/{b}",
        f"Observation/{obs_a}",
        f"Observation/{obs_b}",
    } <= followed
    assert f"Patient/{stranger}" not in followed
    paged = client.get(
        f"/fhir/Patient/{a}/$everything?_mdm=true&_count=1", headers=as_("clinician-a")
    )
    next_page = next(link["url"] for link in paged.json()["link"] if link["relation"] == "next")
    assert "_mdm=true" in next_page
    # A patient-facing app of record a sees its own linked record b, nothing else.
    app = {"X-Test-Patient": a}
    assert ids(f"/fhir/Patient/{a}/$everything?_mdm=true", app) == followed
    assert (
        client.get(f"/fhir/Patient/{stranger}/$everything?_mdm=true", headers=app).status_code
        == 404
    )
    assert client.get(f"/fhir/Patient/{a}/$everything?_mdm=maybe", headers=app).status_code == 400
    # Another tenant sees nothing of it.
    assert (
        client.get(
            f"/fhir/Patient/{a}/$everything?_mdm=true", headers=as_("clinician-b")
        ).status_code
        == 404
    )


def merge_body(source: str, target: str, **flags: bool) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "source-patient", "valueReference": {"reference": f"Patient/{source}"}},
            {"name": "target-patient", "valueReference": {"reference": f"Patient/{target}"}},
        ]
        + [{"name": k.replace("_", "-"), "valueBoolean": v} for k, v in flags.items()],
    }


def test_merge_moves_references_and_unmerge_restores_them(hub: Hub, client: TestClient) -> None:
    source = write(
        client,
        "clinician-a",
        person("Mateo", "Quintana", "1965-10-10", identifier=("urn:mrn:old", "M-OLD")),
    )
    target = write(
        client,
        "clinician-a",
        person("Mateo", "Quintanar", "1965-10-10", identifier=("urn:mrn:new", "M-NEW")),
    )
    obs = write(client, "clinician-a", observation(source, "8302-2"))
    settle(hub)
    preview = client.post(
        "/fhir/Patient/$merge",
        json=merge_body(source, target, preview=True),
        headers=as_("clinician-a"),
    )
    assert preview.status_code == 200, preview.text
    assert (
        client.get(f"/fhir/Observation/{obs}", headers=as_("clinician-a")).json()["subject"][
            "reference"
        ]
        == f"Patient/{source}"
    )
    assert (
        client.post(
            "/fhir/Patient/$merge", json=merge_body(source, target), headers=as_("reader-a")
        ).status_code
        == 403
    )
    assert (
        client.post(
            "/fhir/Patient/$merge", json=merge_body(source, target), headers=as_("clinician-b")
        ).status_code
        == 404
    )

    merged = client.post(
        "/fhir/Patient/$merge", json=merge_body(source, target), headers=as_("clinician-a")
    )
    assert merged.status_code == 200, merged.text
    result = next(p["resource"] for p in merged.json()["parameter"] if p["name"] == "result")
    assert {"other": {"reference": f"Patient/{source}"}, "type": "replaces"} in result["link"]
    assert {"system": "urn:mrn:old", "value": "M-OLD", "use": "old"} in result["identifier"]
    assert (
        client.get(f"/fhir/Observation/{obs}", headers=as_("clinician-a")).json()["subject"][
            "reference"
        ]
        == f"Patient/{target}"
    )
    retired = client.get(f"/fhir/Patient/{source}", headers=as_("clinician-a")).json()
    assert retired["active"] is False
    assert {"other": {"reference": f"Patient/{target}"}, "type": "replaced-by"} in retired["link"]
    audit = client.get(
        f"/fhir/Provenance?target=Observation/{obs}", headers=as_("clinician-a")
    ).json()
    assert any(
        c["code"] == "merge" for e in audit["entry"] for c in e["resource"]["activity"]["coding"]
    )
    assert (
        client.post(
            "/fhir/Patient/$merge", json=merge_body(source, target), headers=as_("clinician-a")
        ).status_code
        == 409
    )

    undone = client.post(
        "/fhir/Patient/$unmerge",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "source-patient", "valueReference": {"reference": f"Patient/{source}"}}
            ],
        },
        headers=as_("clinician-a"),
    )
    assert undone.status_code == 200, undone.text
    assert (
        client.get(f"/fhir/Observation/{obs}", headers=as_("clinician-a")).json()["subject"][
            "reference"
        ]
        == f"Patient/{source}"
    )
    restored = client.get(f"/fhir/Patient/{source}", headers=as_("clinician-a")).json()
    assert restored["active"] is True and "replaced-by" not in str(restored.get("link"))
    separated = client.get(f"/fhir/Patient/{target}", headers=as_("clinician-a")).json()
    assert "M-OLD" not in str(separated.get("identifier")) and "replaces" not in str(
        separated.get("link")
    )


A01 = (
    "MSH|^~\\&|REGADT|GOODHOSP^1.2.3.4^ISO|FHIRHUB|HUB|20240102103000||ADT^A01^ADT_A01|{control}|P|2.5.1\r"
    "EVN|A01|20240102103000\r"
    "PID|1||{mrn}^^^GOODHOSP&1.2.3.4&ISO^MR||Doe^Jane||19800214|F\r"
    "PV1|1|I|WARD1^101^A^GOODHOSP||||||||||||||||{visit}\r"
)
A40 = (
    "MSH|^~\\&|REGADT|GOODHOSP^1.2.3.4^ISO|FHIRHUB|HUB|20240105090000||ADT^A40^ADT_A39|CTRL-A40|P|2.5.1\r"
    "EVN|A40|20240105090000\r"
    "PID|1||MRN123^^^GOODHOSP&1.2.3.4&ISO^MR||Doe^Jane||19800214|F\r"
    "MRG|MRN-OLD-9^^^GOODHOSP&1.2.3.4&ISO^MR\r"
)


def test_an_hl7_a40_moves_the_prior_records_data_in_its_own_transaction(
    hub: Hub, client: TestClient
) -> None:
    headers = {"X-Test-Caller": "feed-a", "Content-Type": "x-application/hl7-v2+er7"}
    for control, mrn, visit in (("C1", "MRN-OLD-9", "V-OLD"), ("C2", "MRN123", "V-NEW")):
        sent = client.post(
            "/hl7/v2", content=A01.format(control=control, mrn=mrn, visit=visit), headers=headers
        )
        assert sent.status_code == 200, sent.text
    prior = client.get("/fhir/Patient?identifier=MRN-OLD-9", headers=as_("clinician-a")).json()[
        "entry"
    ][0]["resource"]["id"]
    survivor = client.get("/fhir/Patient?identifier=MRN123", headers=as_("clinician-a")).json()[
        "entry"
    ][0]["resource"]["id"]
    merged = client.post("/hl7/v2", content=A40, headers=headers)
    assert merged.status_code == 200, merged.text
    encounters = client.get(
        f"/fhir/Encounter?subject=Patient/{prior}", headers=as_("clinician-a")
    ).json()
    assert encounters.get("entry", []) == []  # moved, in the message's own transaction
    moved = client.get(
        f"/fhir/Encounter?subject=Patient/{survivor}", headers=as_("clinician-a")
    ).json()
    assert {e["resource"]["identifier"][0]["value"] for e in moved["entry"]} >= {"V-OLD", "V-NEW"}
