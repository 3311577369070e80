"""The OAuth 1.0a REST source and the appointment write-back against the REST simulator."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhirhub.adapters.oscar.runtime import OscarRuntime
from fhirhub.adapters.oscar.settings import OscarSettings
from fhirhub.adapters.oscar.sources import SourceError
from fhirhub.adapters.oscar.sources.rest import OscarRestClient, RestSource, as_list
from fhirhub.adapters.oscar.sync import OscarSync, mapping_context
from fhirhub.adapters.oscar.writeback import consumer_handler, drain
from fhirhub.sdk import search, transaction
from tests.adapters.oscar.rest_simulator import CONSUMER, TOKEN, OscarRestSimulator


@pytest.fixture
def simulator(clinic_rows: dict) -> Any:
    with OscarRestSimulator(clinic_rows) as sim:
        yield sim


def rest_settings(sim: OscarRestSimulator, **extra: Any) -> OscarSettings:
    return OscarSettings(
        url=sim.url,
        consumer_key=CONSUMER[0],
        consumer_secret=CONSUMER[1],
        token=TOKEN[0],
        token_secret=TOKEN[1],
        instance="clinic-rest",
        timeout_s=1.5,
        **extra,
    )


def test_oscar_json_quirks() -> None:
    assert as_list({"content": {"drug": {"drugId": 1}}}) == [{"drugId": 1}]
    assert as_list({"allergies": [{"id": 1}, {"id": 2}]}) == [{"id": 1}, {"id": 2}]
    assert as_list({"id": 3}) == [{"id": 3}]
    assert as_list(None) == [] and as_list({"content": None}) == []


def test_rest_sync_with_signed_requests_survives_faults(
    hub: Any, simulator: OscarRestSimulator, clinic_rows: dict
) -> None:
    simulator.faults = ["500", "truncated", None, "timeout", None, None, "500"]
    settings = rest_settings(simulator)
    report = OscarSync(hub, settings, RestSource(settings)).run()
    assert report.ok, report
    assert simulator.rejected == 0 and not simulator.faults
    assert len(search(hub, "Patient", {"_count": "100"})) == 60
    ctx = mapping_context(settings)
    with transaction(hub) as tx:
        bp = next(r for r in clinic_rows["measurements"] if r["type"] == "BP")
        stored = orjson.loads(tx.current("Observation", ctx.resource_id("ms", bp["id"])).content)
    assert stored["code"]["coding"][0]["code"] == "85354-9"
    again = OscarSync(hub, settings, RestSource(settings)).run()
    assert again.ok and again.resources == 0


def test_a_wrong_secret_is_refused_by_the_signature_check(simulator: OscarRestSimulator) -> None:
    settings = rest_settings(simulator)
    settings.consumer_secret = "not-the-secret"
    with pytest.raises(SourceError, match="HTTP 401"):
        OscarRestClient(settings).call("GET", "/providerService/providers_json")
    assert simulator.rejected == 1


def test_persistent_faults_stop_the_stream_and_keep_the_cursor(
    hub: Any, simulator: OscarRestSimulator
) -> None:
    settings = rest_settings(simulator)
    simulator.faults = ["500"] * 50
    report = OscarSync(hub, settings, RestSource(settings)).run(streams=["provider"])
    assert not report.ok and "HTTP 500" in (report.streams["provider"].error or "")


def test_appointment_write_back_with_retry_and_no_loop(
    hub: Any, simulator: OscarRestSimulator, clinic_rows: dict
) -> None:
    settings = rest_settings(simulator, writeback_attempts=3)
    assert (
        OscarSync(hub, settings, RestSource(settings)).run(streams=["provider", "demographic"]).ok
    )
    ctx = mapping_context(settings)
    patient = clinic_rows["demographic"][0]
    runtime = OscarRuntime(hub, settings)
    booking = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": "2025-07-02T10:30:00-07:00",
        "end": "2025-07-02T10:45:00-07:00",
        "reasonCode": [{"text": "BP check"}],
        "participant": [
            {
                "actor": {"reference": f"Patient/{ctx.patient_id(patient['demographic_no'])}"},
                "status": "accepted",
            },
            {
                "actor": {
                    "reference": f"Practitioner/{ctx.practitioner_id(patient['provider_no'])}"
                },
                "status": "accepted",
            },
        ],
    }
    with transaction(hub) as tx:
        version = tx.create(booking).version
    simulator.faults = ["500"]  # the first attempt fails, visibly
    consumer_handler(runtime)([version])
    row = runtime.state.outbox()[0]
    assert row["status"] == "pending" and row["attempts"] == 1 and "500" in row["last_error"]
    runtime.state.outbox_result(
        row["id"], status="pending", attempts=1, next_attempt=0.0, error=row["last_error"]
    )
    assert drain(runtime) == 1
    sent = runtime.state.outbox()[0]
    assert sent["status"] == "sent" and sent["oscar_key"] == "90001"
    assert (
        simulator.booked[0]["start_time"].strftime("%H:%M") == "10:30"
        and simulator.booked[0]["demographic_no"] == patient["demographic_no"]
    )
    with transaction(hub) as tx:
        linked = tx.current("Appointment", version.resource_id)
    # the linking update is not sent again (loop prevention), nor is a synced appointment
    consumer_handler(runtime)([linked])
    synced = next(r for r in clinic_rows["appointment"] if r["demographic_no"])
    OscarSync(hub, settings, RestSource(settings)).run(streams=["appointment"])
    with transaction(hub) as tx:
        from_oscar = tx.current("Appointment", ctx.resource_id("ap", synced["appointment_no"]))
    consumer_handler(runtime)([from_oscar])
    assert len(simulator.booked) == 1 and len(runtime.state.outbox()) == 1
    # a booking for a patient OSCAR does not know is not queued
    with transaction(hub) as tx:
        other = tx.create({"resourceType": "Patient", "name": [{"family": "Elsewhere"}]}).version
        stray = tx.create(
            {
                **booking,
                "participant": [
                    {"actor": {"reference": f"Patient/{other.resource_id}"}, "status": "accepted"}
                ],
            }
        ).version
    consumer_handler(runtime)([stray])
    assert len(runtime.state.outbox()) == 1
