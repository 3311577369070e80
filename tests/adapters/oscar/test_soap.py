"""The SOAP source (LoginService, WS-Security, the "updated after" reads) and the vital-sign
write-back through ``addMeasurement``, against the SOAP simulator on loopback."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import datetime
from typing import Any

import orjson
import pytest

from fhirhub.adapters.oscar.runtime import OscarRuntime
from fhirhub.adapters.oscar.settings import OscarSettings
from fhirhub.adapters.oscar.sources import Cursor, SourceError
from fhirhub.adapters.oscar.sources.soap import OscarSoapClient, SoapSource
from fhirhub.adapters.oscar.sync import OscarSync, mapping_context
from fhirhub.adapters.oscar.writeback import consumer_handler, drain
from fhirhub.sdk import transaction
from tests.adapters.oscar.soap_simulator import SOAP_USER, OscarSoapSimulator

pytestmark = pytest.mark.xdist_group("oscar")


@pytest.fixture
def rows(clinic_rows: dict) -> dict[str, list[dict[str, Any]]]:
    return copy.deepcopy(clinic_rows)  # the tests change OSCAR's rows as its users would


@pytest.fixture
def simulator(rows: dict) -> Any:
    with OscarSoapSimulator(rows, delay_s=9.0) as sim:
        yield sim


def soap_settings(sim: OscarSoapSimulator, **extra: Any) -> OscarSettings:
    values: dict[str, Any] = {
        "url": sim.url,
        "soap_username": SOAP_USER[0],
        "soap_password": SOAP_USER[1],
        "instance": "clinic-soap",
        "timeout_s": 6.0,  # roomy on a loaded machine; a "timeout" fault waits longer
        **extra,
    }
    return OscarSettings(**values)


def sync(hub: Any, sim: OscarSoapSimulator, **extra: Any) -> Any:
    settings = soap_settings(sim, **extra)
    return OscarSync(hub, settings, SoapSource(settings)).run()


def current(hub: Any, resource_type: str, resource_id: str) -> tuple[dict[str, Any], int] | None:
    with transaction(hub) as tx:
        version = tx.current(resource_type, resource_id)
    if version is None:
        return None
    return orjson.loads(version.content or b"{}"), int(version.version_id)


def active_patients(rows: dict) -> set[int]:
    return {r["demographic_no"] for r in rows["demographic"] if r["patient_status"] == "AC"}


def test_incremental_soap_sync_reads_only_what_changed(
    hub: Any, simulator: OscarSoapSimulator, rows: dict
) -> None:
    first = sync(hub, simulator)
    active = active_patients(rows)
    assert first.streams["demographic"].records == len(active)  # "active" demographics only
    assert first.streams["measurements"].records == len(rows["measurements"])
    assert first.streams["allergies"].records == len(rows["allergies"])
    assert first.streams["appointment"].records == len(rows["appointment"])
    # records of patients SOAP does not list (inactive, deceased) wait as dead letters
    orphans = [m for m in rows["measurements"] if m["demographicNo"] not in active]
    assert orphans and first.streams["measurements"].dead_letters == len(orphans)
    assert first.streams["measurements"].error is None and first.error is None

    ctx = mapping_context(soap_settings(simulator))
    kept = next(
        m for m in rows["measurements"] if m["demographicNo"] in active and m["type"] == "BP"
    )
    bp, _ = current(hub, "Observation", ctx.resource_id("ms", kept["id"])) or ({}, 0)
    assert bp["code"]["coding"][0]["code"] == "85354-9"
    allergy_row = next(a for a in rows["allergies"] if a["demographic_no"] in active)
    allergy, version = current(
        hub, "AllergyIntolerance", ctx.resource_id("al", allergy_row["allergyid"])
    ) or ({}, 0)
    # AllergyTransfer carries no archived flag: no status is invented
    assert "clinicalStatus" not in allergy and "verificationStatus" not in allergy

    again = sync(hub, simulator)
    assert again.ok and again.records == 0 and again.resources == 0

    # one allergy edited in OSCAR, one measurement entered, one appointment moved
    allergy_row.update(reaction="Wheeze", lastUpdateDate=datetime(2026, 1, 5, 9, 30))
    rows["measurements"].append(
        {**kept, "id": 99001, "dataField": "118/76", "dateEntered": datetime(2026, 1, 5, 9, 31)}
    )
    moved = next(a for a in rows["appointment"] if a["demographic_no"] in active)
    moved.update(status="C", updatedatetime=datetime(2026, 1, 5, 9, 32))
    changed = sync(hub, simulator)
    assert changed.ok, changed
    assert {name: s.records for name, s in changed.streams.items()} == {
        "demographic": 0,
        "allergies": 1,
        "measurements": 1,
        "appointment": 1,
    }
    edited, edited_version = current(
        hub, "AllergyIntolerance", ctx.resource_id("al", allergy_row["allergyid"])
    ) or ({}, 0)
    assert (
        edited_version == version + 1
        and edited["reaction"][0]["manifestation"][0]["text"] == "Wheeze"
    )
    new, _ = current(hub, "Observation", ctx.resource_id("ms", 99001)) or ({}, 0)
    assert [c["valueQuantity"]["value"] for c in new["component"]] == [118, 76]
    cancelled, _ = current(hub, "Appointment", ctx.resource_id("ap", moved["appointment_no"])) or (
        {},
        0,
    )
    assert cancelled["status"] == "cancelled"
    assert sync(hub, simulator).records == 0


def test_ties_at_a_page_boundary_are_neither_lost_nor_read_twice(
    simulator: OscarSoapSimulator, rows: dict
) -> None:
    """OSCAR orders by time only and cuts at itemsToReturn; ten measurements of a visit
    share one second (and come in reverse key order), the page is three long."""
    # Five visits (one of twenty measurements in one second, four of ten), not the whole
    # clinic: reading 1,200 rows three at a time is 1,500 SOAP calls, minutes when loaded.
    by_time = Counter(m["dateEntered"] for m in rows["measurements"])
    kept = [t for t, n in by_time.items() if n == 20][:1] + [
        t for t, n in by_time.items() if n == 10
    ][:4]
    assert len(kept) == 5
    rows["measurements"][:] = [m for m in rows["measurements"] if m["dateEntered"] in kept]
    source = SoapSource(soap_settings(simulator))
    seen: list[int] = []
    cursor = Cursor()
    while True:
        page = source.read("measurements", cursor, 3)
        seen.extend(int(r.key) for r in page.records)
        cursor = page.cursor
        if page.done or not page.records:
            break
    assert sorted(seen) == sorted(int(m["id"]) for m in rows["measurements"])
    assert len(seen) == len(set(seen))


def test_faults_are_retried_or_stop_the_stream_and_the_next_run_recovers(
    hub: Any, simulator: OscarSoapSimulator, rows: dict
) -> None:
    # the login and first reads meet a time-out, truncated XML, a SOAP fault and a bare 500:
    # each retried, the run ends complete
    simulator.faults = ["timeout", None, "truncated", None, "fault", None, "500"]
    report = sync(hub, simulator)
    assert report.ok, report
    assert not simulator.faults
    assert report.streams["demographic"].records == len(active_patients(rows))

    # a stream whose every try fails stops with its error; its cursor stays; the others go on
    rows["allergies"][0].update(
        reaction="Hives and wheeze", lastUpdateDate=datetime(2026, 2, 1, 8, 0)
    )
    rows["measurements"][0].update(dateEntered=datetime(2026, 2, 1, 8, 0))
    # login, demographic answered; allergies truncated three times
    simulator.faults = [None, None, "truncated", "truncated", "truncated"]
    broken = sync(hub, simulator)
    assert not broken.ok
    assert "failed after 3 attempts" in (broken.streams["allergies"].error or "")
    assert broken.streams["measurements"].records == 1
    recovered = sync(hub, simulator)
    assert recovered.ok and recovered.streams["allergies"].records == 1
    assert sync(hub, simulator).records == 0


def test_a_bad_password_is_refused_and_a_restart_logs_in_again(
    simulator: OscarSoapSimulator,
) -> None:
    wrong = soap_settings(simulator, soap_password="not-the-password")
    with pytest.raises(SourceError, match="Invalid Username/Password"):
        OscarSoapClient(wrong).call("Demographic", "getActiveDemographicsAfter", None, None)
    assert simulator.refused == 1

    # a forged token in the UsernameToken is refused by WS-Security
    from zeep import Client
    from zeep.exceptions import Fault
    from zeep.wsse.username import UsernameToken

    forged = Client(
        f"{simulator.url}/ws/AllergyService?wsdl", wsse=UsernameToken(str(SOAP_USER[2]), "12345")
    )
    with pytest.raises(Fault, match="could not be authenticated"):
        forged.service.getAllergiesUpdatedAfterDate(None, 1)
    assert simulator.refused == 2

    # OSCAR restarted: the token changed; the client logs in again once and carries on
    client = OscarSoapClient(soap_settings(simulator))
    assert client.call("Allergy", "getAllergiesUpdatedAfterDate", None, 1)
    logins = simulator.calls.count(("LoginService", "login"))
    simulator.restart()
    assert client.call("Allergy", "getAllergiesUpdatedAfterDate", None, 1)
    assert simulator.calls.count(("LoginService", "login")) == logins + 1


def vital_sign(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-01-07T10:20:00-08:00",
        "valueQuantity": {
            "value": 71.5,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }


def test_measurement_write_back_survives_a_lost_answer_and_makes_no_loop(
    hub: Any, simulator: OscarSoapSimulator, rows: dict
) -> None:
    settings = soap_settings(simulator, writeback_attempts=3, writeback_provider_no="100002")
    runtime = OscarRuntime(hub, settings)
    assert OscarSync(hub, settings, SoapSource(settings)).run(streams=["demographic"]).ok
    ctx = mapping_context(settings)
    patient = next(iter(sorted(active_patients(rows))))
    with transaction(hub) as tx:
        version = tx.create(vital_sign(ctx.patient_id(patient))).version

    # OSCAR stores the measurement, but its answer never arrives (a time-out after the commit)
    simulator.faults = [None, "lost"]  # the login, then addMeasurement
    consumer_handler(runtime)([version])
    row = runtime.state.outbox()[0]
    assert row["status"] == "pending" and row["attempts"] == 1 and "Timeout" in row["last_error"]
    assert len(simulator.added) == 1
    # the retry finds the measurement the lost attempt added instead of adding a second one
    runtime.state.outbox_result(row["id"], status="pending", attempts=1, next_attempt=0.0)
    assert drain(runtime) == 1
    sent = runtime.state.outbox()[0]
    added = simulator.added[0]
    assert sent["status"] == "sent" and sent["oscar_key"] == str(added["id"])
    assert len(simulator.added) == 1
    assert added["type"] == "WT" and added["dataField"] == "71.5"
    assert added["demographicNo"] == patient and added["providerNo"] == "100002"
    assert added["dateObserved"] == datetime(2026, 1, 7, 10, 20)

    linked, linked_version = current(hub, "Observation", version.resource_id) or ({}, 0)
    assert {"system": ctx.system("measurements"), "value": str(added["id"])} in linked["identifier"]
    # the linking update is not sent back
    with transaction(hub) as tx:
        consumer_handler(runtime)([tx.current("Observation", version.resource_id)])
    assert len(runtime.state.outbox()) == 1

    # the next sync reads OSCAR's copy into the same Observation, not a twin, and it is not sent
    report = OscarSync(hub, settings, SoapSource(settings)).run(streams=["measurements"])
    assert report.ok
    synced, synced_version = current(hub, "Observation", version.resource_id) or ({}, 0)
    assert synced_version == linked_version + 1
    assert synced["meta"]["source"] == settings.source_uri
    assert synced["valueQuantity"]["value"] == 71.5
    assert current(hub, "Observation", ctx.resource_id("ms", added["id"])) is None
    with transaction(hub) as tx:
        consumer_handler(runtime)([tx.current("Observation", version.resource_id)])
    assert len(runtime.state.outbox()) == 1 and len(simulator.added) == 1


def test_a_refused_measurement_is_retried_then_failed_visibly(
    hub: Any, simulator: OscarSoapSimulator, rows: dict
) -> None:
    settings = soap_settings(simulator, writeback_attempts=2)
    runtime = OscarRuntime(hub, settings)
    assert OscarSync(hub, settings, SoapSource(settings)).run(streams=["demographic"]).ok
    patient = next(iter(sorted(active_patients(rows))))
    with transaction(hub) as tx:
        version = tx.create(vital_sign(mapping_context(settings).patient_id(patient))).version
    # each try logs in, then (from the second) looks for an earlier copy, then adds
    simulator.faults = [None, "fault", None, None, "fault"]
    consumer_handler(runtime)([version])
    row = runtime.state.outbox()[0]
    assert row["status"] == "pending" and "JDBCConnectionException" in row["last_error"]
    runtime.state.outbox_result(row["id"], status="pending", attempts=1, next_attempt=0.0)
    drain(runtime)
    failed = runtime.state.outbox()[0]
    assert failed["status"] == "failed" and failed["attempts"] == 2
    assert simulator.added == []
