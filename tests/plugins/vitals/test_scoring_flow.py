"""Scoring on write, end to end through the REST API: the score Observation and RiskAssessment
(valid FHIR), idempotence, partial scores, scale 2, unit conversion, refused impossible
values, and two tenants kept apart."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.plugins.vitals.consumer import clear_readings, handle_versions
from fhirhub.plugins.vitals.service import service_of
from fhirhub.sdk import SYSTEM, acting_as, search, validation_issues
from tests.plugins.vitals.conftest import (
    as_,
    new_patient,
    post_vitals,
    settle,
    vitals_bundle,
)

#: A Goal target of SpO2 88-92 %: SpO2 scale 2 applies.
SPO2_88_TO_92 = {
    "measure": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
    "detailRange": {"low": {"value": 88, "unit": "%"}, "high": {"value": 92, "unit": "%"}},
}


def scores_of(
    client: TestClient, caller: str, patient: str, kind: str = "RiskAssessment"
) -> list[dict[str, Any]]:
    response = client.get(
        f"/fhir/{kind}", params={"subject": f"Patient/{patient}"}, headers=as_(caller)
    )
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def news2_of(assessments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in assessments if a["method"]["text"] == "NEWS2"]


def news2_observations(client: TestClient, patient: str) -> list[dict[str, Any]]:
    """The NEWS2 score Observations of ``patient`` (as nurse-a)."""
    return [
        o
        for o in scores_of(client, "nurse-a", patient, "Observation")
        if o["code"].get("text") == "NEWS2"
    ]


def test_a_full_set_of_vitals_is_scored_as_fhir(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    # RR 22 (2), SpO2 95 (1), air (0), SBP 105 (1), HR 95 (1), A (0), 38.3 (1) = 6: medium
    response = post_vitals(
        client,
        "nurse-a",
        vitals_bundle(patient, rr=22, spo2=95, o2_flow=0, sbp=105, pulse=95, acvpu="A", temp=38.3),
    )
    assert response.status_code == 200, response.text
    settle(hub)
    (assessment,) = news2_of(scores_of(client, "nurse-a", patient))
    assert assessment["status"] == "final"
    assert assessment["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "medium"
    assert assessment["subject"]["reference"] == f"Patient/{patient}"
    assert not validation_issues(assessment)
    score_ref = assessment["basis"][0]["reference"]
    observation = client.get(f"/fhir/{score_ref}", headers=as_("nurse-a")).json()
    assert not validation_issues(observation)
    assert observation["code"]["text"] == "NEWS2" and observation["valueInteger"] == 6
    points = {
        c["code"]["coding"][0]["code"]: c.get("valueInteger") for c in observation["component"]
    }
    assert points == {
        "news2-respiration": 2,
        "news2-spo2": 1,
        "news2-oxygen": 0,
        "news2-systolic": 1,
        "news2-pulse": 1,
        "news2-consciousness": 0,
        "news2-temperature": 1,
    }
    assert len(observation["derivedFrom"]) == 7
    assert {b["reference"] for b in assessment["basis"][1:]} == {
        d["reference"] for d in observation["derivedFrom"]
    }
    qsofa = [a for a in scores_of(client, "nurse-a", patient) if a["method"]["text"] == "qSOFA"]
    assert qsofa[0]["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "negative"


def test_same_inputs_never_make_a_second_score(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    post_vitals(
        client,
        "nurse-a",
        vitals_bundle(patient, rr=16, spo2=97, o2_flow=0, sbp=125, pulse=72, acvpu="A", temp=36.8),
    )
    settle(hub)
    before = scores_of(client, "nurse-a", patient)
    # Deliver the whole log again (what a crash before the cursor saved, or a replay, does).
    from fhirhub.core.dispatcher import read_versions

    with hub.store.read() as conn:
        versions = read_versions(conn, 0, 10000)
    with acting_as(SYSTEM):
        handle_versions(service_of(hub), versions)
        # ... and what ``fhirhub replay`` does: the readings projection rebuilt from the log,
        # in other batch sizes.
        clear_readings(service_of(hub))
        for start in range(0, len(versions), 3):
            last = start + 3 >= len(versions)
            handle_versions(service_of(hub), versions[start : start + 3], full=not last)
    settle(hub)
    assert sorted(a["id"] for a in scores_of(client, "nurse-a", patient)) == sorted(
        a["id"] for a in before
    )


def test_missing_parameters_give_a_partial_score(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    post_vitals(client, "nurse-a", vitals_bundle(patient, rr=25, pulse=80))
    settle(hub)
    (assessment,) = news2_of(scores_of(client, "nurse-a", patient))
    assert assessment["status"] == "preliminary"
    assert "Partial NEWS2" in assessment["note"][0]["text"]
    observation = client.get(
        f"/fhir/{assessment['basis'][0]['reference']}", headers=as_("nurse-a")
    ).json()
    assert observation["valueInteger"] == 3
    absent = [c for c in observation["component"] if "dataAbsentReason" in c]
    assert len(absent) == 5


def test_scale2_for_hypercapnic_respiratory_failure(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    response = client.post(
        "/fhir/Condition",
        headers=as_("nurse-a"),
        json={
            "resourceType": "Condition",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "J96.12"}]},
            "subject": {"reference": f"Patient/{patient}"},
        },
    )
    assert response.status_code == 201, response.text
    # Scale 2: RR 20 (0), SpO2 89 (0), O2 (2), SBP 120 (0), HR 88 (0), A (0), 37.2 (0) = 2
    post_vitals(
        client,
        "nurse-a",
        vitals_bundle(patient, rr=20, spo2=89, o2_flow=2, sbp=120, pulse=88, acvpu="A", temp=37.2),
    )
    settle(hub)
    observations = news2_observations(client, patient)
    assert [o["valueInteger"] for o in observations] == [2]


def test_fahrenheit_and_kilopascal_inputs_are_converted(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    bundle = vitals_bundle(patient, temp=95.0, temp_unit="[degF]")  # 35.0 °C -> 3 points
    post_vitals(client, "nurse-a", bundle)
    settle(hub)
    (observation,) = [
        o
        for o in scores_of(client, "nurse-a", patient, "Observation")
        if o["code"].get("text") == "NEWS2"
    ]
    assert observation["valueInteger"] == 3


def test_impossible_values_are_refused_and_never_scored(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    response = post_vitals(client, "nurse-a", vitals_bundle(patient, spo2=140, rr=18))
    assert response.status_code == 422, response.text
    assert "spo2 140" in response.text
    response = client.post(
        "/fhir/Observation",
        headers=as_("nurse-a"),
        json=vitals_bundle(patient, rr=-4)["entry"][0]["resource"],
    )
    assert response.status_code == 422
    settle(hub)
    assert scores_of(client, "nurse-a", patient) == []
    assert scores_of(client, "nurse-a", patient, "Observation") == []


def test_tenants_see_only_their_own_scores(client: TestClient, hub: Hub) -> None:
    a = new_patient(client, "nurse-a")
    b = new_patient(client, "nurse-b")
    post_vitals(client, "nurse-a", vitals_bundle(a, rr=30, sbp=85, acvpu="V"))
    post_vitals(client, "nurse-b", vitals_bundle(b, rr=16, sbp=125, acvpu="A"))
    settle(hub)
    assert news2_of(scores_of(client, "nurse-a", a))
    assert scores_of(client, "nurse-b", a) == []
    board_a = client.get("/plugins/vitals/api/board", headers=as_("nurse-a")).json()
    board_b = client.get("/plugins/vitals/api/board", headers=as_("nurse-b")).json()
    assert [p["patient"] for p in board_a["patients"]] == [a]
    assert [p["patient"] for p in board_b["patients"]] == [b]
    assert board_b["alerts"] == [] and board_a["alerts"]
    # The scores were labelled with the writer's tenant.
    with acting_as(SYSTEM):
        for assessment in search(hub, "RiskAssessment", {"subject": f"Patient/{b}"}):
            labels = {s["code"] for s in assessment["meta"].get("security", [])}
            assert "org-b" in labels


def test_a_corrected_value_is_rescored_and_the_old_one_no_longer_counts(
    client: TestClient, hub: Hub
) -> None:
    patient = new_patient(client, "nurse-a")
    response = post_vitals(
        client,
        "nurse-a",
        vitals_bundle(patient, rr=16, spo2=97, o2_flow=0, sbp=125, pulse=135, acvpu="A", temp=36.8),
    )
    settle(hub)
    # Find the pulse and correct it from 135 (3 points) to 72 (0).
    pulse_ref = ""
    for entry in response.json()["entry"]:
        location = entry["response"]["location"].split("/_history")[0]
        observation = client.get(f"/fhir/{location}", headers=as_("nurse-a")).json()
        if observation["code"]["coding"][0]["code"] == "8867-4":
            pulse_ref = location
            observation["valueQuantity"]["value"] = 72
            observation["status"] = "corrected"
            update = client.put(f"/fhir/{location}", json=observation, headers=as_("nurse-a"))
            assert update.status_code == 200, update.text
    settle(hub)
    totals = sorted(
        o["valueInteger"]
        for o in scores_of(client, "nurse-a", patient, "Observation")
        if o["code"].get("text") == "NEWS2"
    )
    assert totals == [0, 3]
    board = client.get("/plugins/vitals/api/board", headers=as_("nurse-a")).json()
    assert board["patients"][0]["news2"] == 0
    # Entered in error: the pulse no longer counts (a partial score without it).
    observation = client.get(f"/fhir/{pulse_ref}", headers=as_("nurse-a")).json()
    observation["status"] = "entered-in-error"
    client.put(f"/fhir/{pulse_ref}", json=observation, headers=as_("nurse-a"))
    settle(hub)
    assessments = news2_of(scores_of(client, "nurse-a", patient))
    assert any(a["status"] == "preliminary" for a in assessments)


def test_scale2_from_an_spo2_goal_of_88_to_92(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    response = client.post(
        "/fhir/Goal",
        headers=as_("nurse-a"),
        json={
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "description": {"text": "SpO2 88-92 %"},
            "subject": {"reference": f"Patient/{patient}"},
            "target": [SPO2_88_TO_92],
        },
    )
    assert response.status_code == 201, response.text
    # Scale 2, on oxygen at 98 %: SpO2 3 + oxygen 2; everything else 0 = 5 (scale 1: 2).
    post_vitals(
        client,
        "nurse-a",
        vitals_bundle(patient, rr=14, spo2=98, o2_flow=2, sbp=115, pulse=70, acvpu="A", temp=36.5),
    )
    settle(hub)
    observations = news2_observations(client, patient)
    assert [o["valueInteger"] for o in observations] == [5]
    assert "scale 2" in " ".join(n["text"] for n in observations[0]["note"])


def test_scale2_from_a_goal_past_the_first_page_of_goals(client: TestClient, hub: Hub) -> None:
    # A thousand other Goals first: the search for a hundred patients' Goals answers one page
    # at a time, and the SpO2 one, written last, is on the second.
    patient = new_patient(client, "nurse-a")
    subject = {"reference": f"Patient/{patient}"}
    other = {"resourceType": "Goal", "lifecycleStatus": "active", "subject": subject}
    entries = [
        {
            "resource": {**other, "description": {"text": f"walk {n} m"}},
            "request": {"method": "POST", "url": "Goal"},
        }
        for n in range(1000)
    ]
    response = client.post(
        "/fhir",
        headers=as_("nurse-a"),
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
    )
    assert response.status_code == 200, response.text
    goal = {**other, "description": {"text": "SpO2 88-92 %"}, "target": [SPO2_88_TO_92]}
    response = client.post("/fhir/Goal", headers=as_("nurse-a"), json=goal)
    assert response.status_code == 201, response.text
    post_vitals(
        client,
        "nurse-a",
        vitals_bundle(patient, rr=14, spo2=98, o2_flow=2, sbp=115, pulse=70, acvpu="A", temp=36.5),
    )
    settle(hub)
    observations = news2_observations(client, patient)
    assert [o["valueInteger"] for o in observations] == [5]  # scale 2 (scale 1: 2)


def test_one_refused_patient_does_not_stop_the_others(client: TestClient, hub: Hub) -> None:
    from datetime import UTC, datetime

    from fhirhub.plugins.vitals.consumer import Outcome, Scored, _write_tenant
    from fhirhub.plugins.vitals.readings import Reading
    from fhirhub.plugins.vitals.scores import news2

    patient = new_patient(client, "nurse-a")
    response = client.post(
        "/fhir/Observation",
        headers=as_("nurse-a"),
        json=vitals_bundle(patient, pulse=72)["entry"][0]["resource"],
    )
    source = f"Observation/{response.json()['id']}"
    at = datetime.now(UTC)
    good = news2({"pulse": Reading("pulse", 72.0, at, source, "1", "/min")})
    gone = news2({"pulse": Reading("pulse", 80.0, at, "Observation/missing", "1", "/min")})
    with acting_as(SYSTEM):
        outcome = Outcome()
        _write_tenant(
            service_of(hub),
            "org-a",
            [
                Scored("org-a", "no-such-patient", at, [gone]),
                Scored("org-a", patient, at, [good]),
            ],
            outcome,
        )
        outcome.finish(service_of(hub))
        assert len(search(hub, "RiskAssessment", {"subject": f"Patient/{patient}"})) == 1
        assert search(hub, "RiskAssessment", {"subject": "Patient/no-such-patient"}) == []


def test_vitals_load_before_the_app_starts(hub: Hub) -> None:
    """A loader (``fhirhub load``, the demo) writes vitals with no app running: the plugin's
    write hook must not open its tables inside the loader's transaction (a self-deadlock)."""
    from fhirhub.sdk import process_bundle, transaction

    with acting_as(SYSTEM), transaction(hub) as tx:
        patient = tx.create({"resourceType": "Patient"}).version.resource_id
    with acting_as(SYSTEM):
        process_bundle(hub, vitals_bundle(patient, rr=18, pulse=70))


def test_a_lone_set_is_not_delayed_by_the_batch_pause(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pause that gathers a steady feed into larger batches (the consumer's linger)
    follows only a batch of several sets: a nurse's single set is scored and the next
    delivery is not held back."""
    from fhirhub.core.dispatcher import log_head, read_versions
    from fhirhub.sdk import process_bundle, transaction

    monkeypatch.setenv("FHIRHUB_VITALS_BATCH_PAUSE_MS", "4000")
    service = service_of(hub)
    assert service.settings.batch_pause_ms == 4000
    from fhirhub.core.dispatcher import collect_consumers

    assert collect_consumers(hub)["vitals-scoring"].linger_s == service.linger_s

    def write_sets(count: int) -> list[Any]:
        with hub.store.read() as conn:
            head = log_head(conn)
        with acting_as(SYSTEM):
            for _ in range(count):
                with transaction(hub) as tx:
                    patient = tx.create({"resourceType": "Patient"}).version.resource_id
                process_bundle(hub, vitals_bundle(patient, rr=18, pulse=70, sbp=120))
        with hub.store.read() as conn:
            return read_versions(conn, head, 10000)

    lone = write_sets(1)
    with acting_as(SYSTEM):
        handle_versions(service, lone)
    assert service.linger_s() == 0.0
    several = write_sets(2)
    with acting_as(SYSTEM):
        handle_versions(service, several)
    assert service.linger_s() == 4.0
    with acting_as(SYSTEM):
        handle_versions(service, write_sets(1))
    assert service.linger_s() == 0.0


def test_a_set_cut_short_by_a_full_batch_is_scored_when_nothing_follows(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full batch may end inside a transaction, so its last set waits for the next batch.
    When the log has nothing more (the transaction ended at the batch's edge and no other vital
    sign follows), the consumer's ``caught_up`` scores it, without waiting for the next
    vital-signs write."""
    import time

    import fhirhub.plugins.vitals as vitals_plugin
    from fhirhub.core.http.app import create_app
    from fhirhub.plugins.vitals import consumer

    with TestClient(create_app(hub=hub), base_url="http://testserver") as probe:
        patient = new_patient(probe, "nurse-a")
    bundle = vitals_bundle(patient, rr=24, spo2=93, sbp=98, pulse=112, acvpu="A", temp=38.4)
    size = len(bundle["entry"])  # one batch holds exactly this set: a full batch
    monkeypatch.setattr(consumer, "BATCH_SIZE", size)
    monkeypatch.setattr(vitals_plugin, "BATCH_SIZE", size)
    with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
        assert post_vitals(client, "nurse-a", bundle).status_code == 200
        deadline = time.monotonic() + 15
        while not scores_of(client, "nurse-a", patient) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert news2_of(scores_of(client, "nurse-a", patient)), "the deferred set was not scored"
