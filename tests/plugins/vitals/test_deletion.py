"""A deleted input Observation is rescored away: the sets it counted in are scored again
without it (partial if it was the only value of a parameter), the alerts follow the new
score, and a replay of the log rebuilds the same scores and board."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.plugins.vitals.consumer import clear_readings, handle_versions
from fhirhub.plugins.vitals.service import service_of
from fhirhub.sdk import SYSTEM, acting_as
from tests.plugins.vitals.conftest import as_, new_patient, post_vitals, settle, vitals_bundle
from tests.plugins.vitals.test_alerts import HIGH, NORMAL, found
from tests.plugins.vitals.test_scoring_flow import news2_of, scores_of


def minutes_ago(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).replace(microsecond=0).isoformat()


def written(response: Any) -> dict[str, str]:
    """The Observations a vitals bundle created, by LOINC code."""
    assert response.status_code == 200, response.text
    refs = {}
    for entry in response.json()["entry"]:
        ref = entry["response"]["location"].split("/_history")[0]
        refs[ref] = ref
    return refs


def by_code(client: TestClient, refs: dict[str, str]) -> dict[str, str]:
    out = {}
    for ref in refs:
        observation = client.get(f"/fhir/{ref}", headers=as_("nurse-a")).json()
        out[observation["code"]["coding"][0]["code"]] = ref
    return out


def delete(client: TestClient, ref: str) -> None:
    response = client.delete(f"/fhir/{ref}", headers=as_("nurse-a"))
    assert response.status_code in (200, 204), response.text


def board_row(client: TestClient, patient: str) -> dict[str, Any]:
    board = client.get("/plugins/vitals/api/board", headers=as_("nurse-a")).json()
    (row,) = [p for p in board["patients"] if p["patient"] == patient]
    return dict(row)


def news2_flags(client: TestClient, patient: str) -> list[dict[str, Any]]:
    return [
        f
        for f in found(client, "nurse-a", "Flag", {"subject": f"Patient/{patient}"})
        if f["code"]["coding"][0]["code"] == "news2-alert"
    ]


def replay(hub: Hub) -> None:
    """What ``fhirhub replay`` does: the readings projection cleared and the log delivered
    again, here in batches of 3 (other boundaries than the live run's)."""
    from fhirhub.core.dispatcher import read_versions

    with hub.store.read() as conn:
        versions = read_versions(conn, 0, 100000)
    with acting_as(SYSTEM):
        clear_readings(service_of(hub))
        for start in range(0, len(versions), 3):
            last = start + 3 >= len(versions)
            handle_versions(service_of(hub), versions[start : start + 3], full=not last)
    settle(hub)


def test_deleting_a_wrong_set_rescores_and_closes_the_alert(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    # The previous set, four hours before (outside the scoring window): complete and low.
    earlier = minutes_ago(240)
    post_vitals(client, "nurse-a", vitals_bundle(patient, when=earlier, **NORMAL))
    settle(hub)
    # A set charted on the wrong patient: high, alerting.
    wrong = written(post_vitals(client, "nurse-a", vitals_bundle(patient, **HIGH)))
    settle(hub)
    (flag,) = news2_flags(client, patient)
    assert flag["status"] == "active"
    assert board_row(client, patient)["news2"] == 19

    for ref in wrong:
        delete(client, ref)
    settle(hub)
    # No input of the set is left: the patient's newest remaining set, complete and low, is
    # its state again, so the episode is resolved and the board moves back to it.
    (flag,) = news2_flags(client, patient)
    assert flag["status"] == "inactive"
    row = board_row(client, patient)
    assert (row["news2"], row["partial"]) == (0, False)
    assert datetime.fromisoformat(row["time"]) == datetime.fromisoformat(earlier)
    board = client.get("/plugins/vitals/api/board", headers=as_("nurse-a")).json()
    assert not [a for a in board["alerts"] if a["patient"] == patient]

    scores = sorted(a["id"] for a in scores_of(client, "nurse-a", patient))
    replay(hub)
    assert sorted(a["id"] for a in scores_of(client, "nurse-a", patient)) == scores
    assert board_row(client, patient) == row
    board = client.get("/plugins/vitals/api/board", headers=as_("nurse-a")).json()
    assert not [a for a in board["alerts"] if a["patient"] == patient]


def test_a_deleted_value_leaves_a_partial_score_in_its_set_and_the_later_ones(
    client: TestClient, hub: Hub
) -> None:
    patient = new_patient(client, "nurse-a")
    # A full set with a pulse of 135 (3 points: low-medium, alerting) ...
    first = by_code(
        client,
        written(
            post_vitals(
                client,
                "nurse-a",
                vitals_bundle(patient, when=minutes_ago(20), **{**NORMAL, "pulse": 135}),
            )
        ),
    )
    settle(hub)
    # ... and ten minutes later respiration and SpO2 only: the pulse is carried forward.
    post_vitals(client, "nurse-a", vitals_bundle(patient, rr=16, spo2=97, when=minutes_ago(10)))
    settle(hub)
    assert (board_row(client, patient)["news2"], board_row(client, patient)["risk"]) == (
        3,
        "low-medium",
    )
    (flag,) = news2_flags(client, patient)

    delete(client, first["8867-4"])
    settle(hub)
    # Both sets are scored again without the pulse: partial, marked, the pulse named missing.
    row = board_row(client, patient)
    assert (row["news2"], row["partial"]) == (0, True)
    latest = [
        o
        for o in scores_of(client, "nurse-a", patient, "Observation")
        if o["code"].get("text") == "NEWS2" and o["valueInteger"] == 0
    ]
    assert len(latest) == 2  # the first set's and the second's
    for observation in latest:
        assert observation["status"] == "preliminary"
        assert any(t.get("code") == "partial" for t in observation["meta"].get("tag", []))
        missing = [c for c in observation["component"] if "dataAbsentReason" in c]
        assert [c["code"]["coding"][0]["code"] for c in missing] == ["news2-pulse"]
        assert not any(
            d["reference"] == first["8867-4"] for d in observation.get("derivedFrom", [])
        )
    # A partial score below the threshold does not close the episode (docs/vitals.md).
    assert [f["status"] for f in news2_flags(client, patient)] == ["active"]
    assert flag["id"] == news2_flags(client, patient)[0]["id"]
    assert any(
        a["status"] == "preliminary" for a in news2_of(scores_of(client, "nurse-a", patient))
    )

    scores = sorted(a["id"] for a in scores_of(client, "nurse-a", patient))
    replay(hub)
    assert sorted(a["id"] for a in scores_of(client, "nurse-a", patient)) == scores
    assert board_row(client, patient) == row
