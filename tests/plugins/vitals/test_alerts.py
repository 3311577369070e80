"""Alerts: raised on crossing the threshold (Flag, Communication, response Task with a
deadline, Provenance), never twice for one episode, escalated along the chain until
acknowledged (by the dashboard's route or a Task update), silenced per patient with a reason,
resolved by a complete score below the threshold; tenants cannot touch each other's."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.plugins.vitals.alerts import escalate_due
from fhirhub.plugins.vitals.service import service_of
from fhirhub.sdk import validation_issues
from tests.plugins.vitals.conftest import (
    as_,
    new_patient,
    now_text,
    post_vitals,
    settle,
    vitals_bundle,
)

# RR 26 (3), SpO2 90 (3), O2 (2), SBP 88 (3), HR 135 (3), V (3), 39.5 (2) = 19: high
HIGH = dict(rr=26, spo2=90, o2_flow=4, sbp=88, pulse=135, acvpu="V", temp=39.5)
# RR 16, SpO2 97, air, SBP 125, HR 72, A, 36.8 = 0: low
NORMAL = dict(rr=16, spo2=97, o2_flow=0, sbp=125, pulse=72, acvpu="A", temp=36.8)


def found(
    client: TestClient, caller: str, kind: str, params: dict[str, str]
) -> list[dict[str, Any]]:
    response = client.get(f"/fhir/{kind}", params=params, headers=as_(caller))
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def news2_alerts(client: TestClient, caller: str) -> list[dict[str, Any]]:
    board = client.get("/plugins/vitals/api/board", headers=as_(caller)).json()
    return [a for a in board["alerts"] if a["kind"] == "news2"]


def test_high_score_raises_one_alert_with_flag_communication_task(
    client: TestClient, hub: Hub
) -> None:
    patient = new_patient(client, "nurse-a")
    post_vitals(client, "nurse-a", vitals_bundle(patient, **HIGH))
    settle(hub)
    (flag,) = [
        f
        for f in found(client, "nurse-a", "Flag", {"subject": f"Patient/{patient}"})
        if f["code"]["coding"][0]["code"] == "news2-alert"
    ]
    assert flag["status"] == "active" and "NEWS2 19 (high" in flag["code"]["text"]
    tasks = found(client, "nurse-a", "Task", {"focus": f"Flag/{flag['id']}"})
    (task,) = tasks
    assert task["status"] == "requested" and task["priority"] == "stat"
    assert task["code"]["text"] == "Urgent or emergency response"
    assert task["restriction"]["period"]["end"] > task["authoredOn"]
    assert task["owner"] == {"display": "nurse"}
    communications = found(client, "nurse-a", "Communication", {"subject": f"Patient/{patient}"})
    assert any(c["recipient"] == [{"display": "nurse"}] for c in communications)
    for resource in (flag, task, *communications):
        assert not validation_issues(resource), resource
    provenances = found(client, "nurse-a", "Provenance", {"target": f"Flag/{flag['id']}"})
    assert any("raised" in p["activity"].get("text", "") for p in provenances)

    # The next set, as bad, is the same episode: no second alert.
    post_vitals(client, "nurse-a", vitals_bundle(patient, **{**HIGH, "pulse": 140}))
    settle(hub)
    assert len(news2_alerts(client, "nurse-a")) == 1
    flags = [
        f
        for f in found(client, "nurse-a", "Flag", {"subject": f"Patient/{patient}"})
        if f["code"]["coding"][0]["code"] == "news2-alert"
    ]
    assert len(flags) == 1


def test_unacknowledged_alert_escalates_until_acknowledged(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    post_vitals(client, "nurse-a", vitals_bundle(patient, **HIGH))
    settle(hub)
    (alert,) = news2_alerts(client, "nurse-a")
    service = service_of(hub)
    escalate_due(service)  # the tests' chain waits 0 minutes per step
    task = client.get(f"/fhir/Task/{alert['task']}", headers=as_("nurse-a")).json()
    assert task["owner"] == {"display": "charge-nurse"}
    escalate_due(service)
    task = client.get(f"/fhir/Task/{alert['task']}", headers=as_("nurse-a")).json()
    assert task["owner"] == {"display": "rapid-response-team"}
    assert task["businessStatus"]["text"] == "level 2: rapid-response-team"
    told = found(client, "nurse-a", "Communication", {"subject": f"Patient/{patient}"})
    assert {r["display"] for c in told for r in c["recipient"]} == {
        "nurse",
        "charge-nurse",
        "rapid-response-team",
    }

    # Another tenant's nurse cannot acknowledge it; a reader lacks the scope.
    response = client.post(
        f"/plugins/vitals/api/alerts/{alert['flag']}/acknowledge", headers=as_("nurse-b")
    )
    assert response.status_code == 404
    response = client.post(
        f"/plugins/vitals/api/alerts/{alert['flag']}/acknowledge", headers=as_("reader-a")
    )
    assert response.status_code == 403
    response = client.post(
        f"/plugins/vitals/api/alerts/{alert['flag']}/acknowledge", headers=as_("nurse-a")
    )
    assert response.status_code == 200, response.text
    task = client.get(f"/fhir/Task/{alert['task']}", headers=as_("nurse-a")).json()
    assert task["status"] == "accepted" and task["owner"]["display"] == "user:nurse-a"
    (acknowledged,) = news2_alerts(client, "nurse-a")
    assert acknowledged["status"] == "acknowledged"
    assert acknowledged["acknowledged_by"] == "user:nurse-a"
    before = len(found(client, "nurse-a", "Communication", {"subject": f"Patient/{patient}"}))
    escalate_due(service)  # nothing more
    after = len(found(client, "nurse-a", "Communication", {"subject": f"Patient/{patient}"}))
    assert after == before
    provenances = found(client, "nurse-a", "Provenance", {"target": f"Task/{alert['task']}"})
    assert any("acknowledged by user:nurse-a" in p["activity"].get("text", "") for p in provenances)

    # A complete normal set resolves the episode: the Flag closes.
    post_vitals(client, "nurse-a", vitals_bundle(patient, **NORMAL))
    settle(hub)
    flag = client.get(f"/fhir/Flag/{alert['flag']}", headers=as_("nurse-a")).json()
    assert flag["status"] == "inactive" and "end" in flag["period"]
    assert news2_alerts(client, "nurse-a") == []


def test_a_task_update_acknowledges_too(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    post_vitals(client, "nurse-a", vitals_bundle(patient, **HIGH))
    settle(hub)
    (alert,) = news2_alerts(client, "nurse-a")
    task = client.get(f"/fhir/Task/{alert['task']}", headers=as_("nurse-a")).json()
    task["status"] = "in-progress"
    task["owner"] = {"display": "Dr Ward Registrar"}
    response = client.put(f"/fhir/Task/{task['id']}", json=task, headers=as_("nurse-a"))
    assert response.status_code == 200, response.text
    settle(hub)
    (acknowledged,) = news2_alerts(client, "nurse-a")
    assert acknowledged["status"] == "acknowledged"
    assert acknowledged["acknowledged_by"] == "Dr Ward Registrar"


def test_a_silenced_patient_raises_no_new_alert(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    response = client.post(
        f"/plugins/vitals/api/patients/{patient}/silence",
        json={"minutes": 30},
        headers=as_("nurse-a"),
    )
    assert response.status_code == 400  # a reason is required
    response = client.post(
        f"/plugins/vitals/api/patients/{patient}/silence",
        json={"minutes": 30, "reason": "end of life care"},
        headers=as_("nurse-b"),
    )
    assert response.status_code == 404  # not org-b's patient
    response = client.post(
        f"/plugins/vitals/api/patients/{patient}/silence",
        json={"minutes": 30, "reason": "end of life care"},
        headers=as_("nurse-a"),
    )
    assert response.status_code == 200, response.text
    post_vitals(client, "nurse-a", vitals_bundle(patient, **HIGH))
    settle(hub)
    assert news2_alerts(client, "nurse-a") == []
    board = client.get("/plugins/vitals/api/board", headers=as_("nurse-a")).json()
    assert board["patients"][0]["news2"] == 19


def test_a_patient_app_sees_only_its_patient_and_cannot_acknowledge(
    client: TestClient, hub: Hub
) -> None:
    mine = new_patient(client, "nurse-a", "Ada Mine")
    other = new_patient(client, "nurse-a", "Bo Other")
    post_vitals(client, "nurse-a", vitals_bundle(mine, **HIGH))
    post_vitals(client, "nurse-a", vitals_bundle(other, **HIGH))
    settle(hub)
    headers = {"X-Test-Patient": mine}
    board = client.get("/plugins/vitals/api/board", headers=headers).json()
    assert [p["patient"] for p in board["patients"]] == [mine]
    flag = board["alerts"][0]["flag"]
    response = client.post(f"/plugins/vitals/api/alerts/{flag}/acknowledge", headers=headers)
    assert response.status_code == 403


def test_csv_export_has_vitals_and_scores(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    post_vitals(client, "nurse-a", vitals_bundle(patient, **NORMAL))
    settle(hub)
    response = client.get(
        f"/plugins/vitals/api/patients/{patient}/export.csv", headers=as_("nurse-a")
    )
    assert response.status_code == 200
    lines = response.text.strip().splitlines()
    assert lines[0].startswith("time,kind,code,value")
    assert any(",score,NEWS2,0," in line for line in lines)
    assert any(",vital,pulse,72" in line for line in lines)
    response = client.get(
        f"/plugins/vitals/api/patients/{patient}/export.csv", headers=as_("nurse-b")
    )
    assert response.status_code == 404


def test_a_set_recorded_later_with_the_same_time_wins(client: TestClient, hub: Hub) -> None:
    """Charting precision is a second (or a minute): of two sets taken at the same time, the
    one recorded later is the patient's current state, whatever the Observations' ids."""
    patient = new_patient(client, "nurse-a")
    when = now_text()
    post_vitals(client, "nurse-a", vitals_bundle(patient, when=when, **HIGH))
    settle(hub)
    (alert,) = news2_alerts(client, "nurse-a")
    for _ in range(3):  # ids are random: a tie broken by id would pass by chance half the time
        post_vitals(client, "nurse-a", vitals_bundle(patient, when=when, **NORMAL))
        settle(hub)
        flag = client.get(f"/fhir/Flag/{alert['flag']}", headers=as_("nurse-a")).json()
        assert flag["status"] == "inactive"


def test_a_crash_before_the_episode_row_raises_no_second_flag(client: TestClient, hub: Hub) -> None:
    """The alert's FHIR resources commit with the score; its episode row after. A crash in
    between delivers the set again: the score is found written, and so are its Flag and Task."""
    from fhirhub.core.dispatcher import read_versions
    from fhirhub.plugins.vitals import state
    from fhirhub.plugins.vitals.consumer import handle_versions
    from fhirhub.sdk import SYSTEM, acting_as

    patient = new_patient(client, "nurse-a")
    post_vitals(client, "nurse-a", vitals_bundle(patient, **HIGH))
    settle(hub)
    service = service_of(hub)
    with service.db.begin() as conn:  # as if the episode's row had never been written
        conn.execute(state.alert.delete())
    with hub.store.read() as conn:
        versions = read_versions(conn, 0, 100000)
    with acting_as(SYSTEM):
        handle_versions(service, versions)
    flags = found(client, "nurse-a", "Flag", {"subject": f"Patient/{patient}"})
    assert len([f for f in flags if f["code"]["coding"][0]["code"] == "news2-alert"]) == 1
    tasks = found(client, "nurse-a", "Task", {"patient": f"Patient/{patient}"})
    assert len([t for t in tasks if t["code"]["coding"][0]["code"] == "news2-response"]) == 1
    assert len(news2_alerts(client, "nurse-a")) == 1
