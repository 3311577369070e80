"""The sync from a real OSCAR database (MariaDB with OSCAR's schema) into the hub."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhirhub.adapters.oscar.sources.database import DatabaseSource
from fhirhub.adapters.oscar.state import SyncState
from fhirhub.adapters.oscar.sync import OscarSync, mapping_context
from fhirhub.sdk import acting_as, search, system_for
from tests.adapters.oscar.clinic_db import execute, insert_rows
from tests.adapters.oscar.conftest import settings_for
from tests.tenants import add_tenants


def sync(hub: Any, url: str, **options: Any) -> Any:
    settings = settings_for(
        url, **{k: v for k, v in options.items() if k in ("tenant", "batch_size")}
    )
    source = DatabaseSource(url)
    try:
        return OscarSync(hub, settings, source).run(
            **{k: v for k, v in options.items() if k in ("full", "since")}
        )
    finally:
        source.close()


def stored(hub: Any, resource_type: str, resource_id: str) -> tuple[dict[str, Any], int]:
    from fhirhub.sdk import transaction

    with transaction(hub) as tx:
        version = tx.current(resource_type, resource_id)
    assert version is not None, f"{resource_type}/{resource_id} not stored"
    return orjson.loads(version.content or b"{}"), int(version.version_id)


def ids(url: str) -> Any:
    return mapping_context(settings_for(url))


def test_full_sync_maps_the_clinic_and_rerun_changes_nothing(
    hub: Any, oscar_url: str, clinic_rows: dict
) -> None:
    report = sync(hub, oscar_url)
    assert report.ok, report
    assert report.streams["demographic"].records == 60
    assert report.dead_letters == 0
    ctx = ids(oscar_url)
    patients = search(hub, "Patient", {"_count": "200"})
    assert len(patients) == 60
    # a BC patient: PHN with the BC OID, split birth date, the GP as a reference
    bc = next(
        r
        for r in clinic_rows["demographic"]
        if r["hc_type"] == "BC" and r["month_of_birth"] and r["date_of_birth"] not in ("", "00")
    )
    patient, _ = stored(hub, "Patient", ctx.patient_id(bc["demographic_no"]))
    phn = next(i for i in patient["identifier"] if i["system"] == "urn:oid:2.16.840.1.113883.4.50")
    assert phn["value"] == bc["hin"]
    assert (
        patient["birthDate"]
        == f"{bc['year_of_birth']}-{bc['month_of_birth']}-{bc['date_of_birth']}"
    )
    assert (
        patient["generalPractitioner"][0]["reference"]
        == f"Practitioner/{ctx.practitioner_id(bc['provider_no'])}"
    )
    assert patient["meta"]["source"] == "urn:fhirhub:oscar:clinic-test"
    # partial birth dates stay partial, an unknown one stays absent
    year_only = next(
        r
        for r in clinic_rows["demographic"]
        if r["month_of_birth"] == "" and r["year_of_birth"] != "0000"
    )
    assert (
        stored(hub, "Patient", ctx.patient_id(year_only["demographic_no"]))[0]["birthDate"]
        == year_only["year_of_birth"]
    )
    month_only = next(r for r in clinic_rows["demographic"] if r["date_of_birth"] == "00")
    assert (
        stored(hub, "Patient", ctx.patient_id(month_only["demographic_no"]))[0]["birthDate"]
        == f"{month_only['year_of_birth']}-{month_only['month_of_birth']}"
    )
    unknown = next(r for r in clinic_rows["demographic"] if r["year_of_birth"] == "0000")
    assert "birthDate" not in stored(hub, "Patient", ctx.patient_id(unknown["demographic_no"]))[0]
    deceased = next(r for r in clinic_rows["demographic"] if r["patient_status"] == "DE")
    dead = stored(hub, "Patient", ctx.patient_id(deceased["demographic_no"]))[0]
    assert dead["active"] is False and dead["deceasedDateTime"]
    ontario = next(r for r in clinic_rows["demographic"] if r["hc_type"] == "ON")
    on_ids = stored(hub, "Patient", ctx.patient_id(ontario["demographic_no"]))[0]["identifier"]
    assert any(i["system"] == "urn:oid:2.16.840.1.113883.4.59" for i in on_ids)
    # blood pressure: the panel with two components
    bp_row = next(r for r in clinic_rows["measurements"] if r["type"] == "BP")
    bp, _ = stored(hub, "Observation", ctx.resource_id("ms", bp_row["id"]))
    assert bp["code"]["coding"][0]["code"] == "85354-9"
    systolic, diastolic = (int(v) for v in bp_row["dataField"].split("/"))
    assert [c["valueQuantity"]["value"] for c in bp["component"]] == [systolic, diastolic]
    assert bp["component"][0]["valueQuantity"]["code"] == "mm[Hg]"
    # zero dateObserved falls back to dateEntered
    zero = next(
        (r for r in clinic_rows["measurements"] if r["dateObserved"] == "0000-00-00 00:00:00"), None
    )
    if zero is not None:
        assert stored(hub, "Observation", ctx.resource_id("ms", zero["id"]))[0][
            "effectiveDateTime"
        ].startswith(zero["dateEntered"].strftime("%Y-%m-%d"))
    # blocks are Slots, not appointments
    block = next(r for r in clinic_rows["appointment"] if r["demographic_no"] == 0)
    slot, _ = stored(hub, "Slot", ctx.resource_id("slot", block["appointment_no"]))
    assert slot["status"] == "busy-unavailable"
    billed = next(
        r for r in clinic_rows["appointment"] if r["status"].startswith("B") and r["demographic_no"]
    )
    assert (
        stored(hub, "Appointment", ctx.resource_id("ap", billed["appointment_no"]))[0]["status"]
        == "fulfilled"
    )
    assert (
        stored(hub, "Encounter", ctx.resource_id("enc", billed["appointment_no"]))[0]["status"]
        == "finished"
    )
    # notes: current revision with the revisions as history, in order
    revised_uuid = next(
        u
        for u in {r["uuid"] for r in clinic_rows["casemgmt_note"]}
        if sum(1 for r in clinic_rows["casemgmt_note"] if r["uuid"] == u) >= 2
    )
    revisions = sorted(
        (r for r in clinic_rows["casemgmt_note"] if r["uuid"] == revised_uuid),
        key=lambda r: r["note_id"],
    )
    document, version = stored(hub, "DocumentReference", ctx.resource_id("doc", revised_uuid))
    assert version == len(revisions)
    assert document["identifier"][0]["value"] == str(revisions[-1]["note_id"])
    # every write carries a Provenance naming the source records
    provenances = search(hub, "Provenance", {"_count": "100"})
    assert provenances and all(
        p["agent"][0]["who"]["display"] == "OSCAR EMR clinic-test" for p in provenances
    )

    again = sync(hub, oscar_url)
    assert again.ok and again.records == 0 and again.resources == 0
    full = sync(hub, oscar_url, full=True)
    assert full.ok and full.records > 1000 and full.resources == 0, full.summary()


def test_incremental_edit_archive_and_delete(hub: Any, oscar_url: str, clinic_rows: dict) -> None:
    assert sync(hub, oscar_url).ok
    ctx = ids(oscar_url)
    patient_no = clinic_rows["demographic"][0]["demographic_no"]
    _, before = stored(hub, "Patient", ctx.patient_id(patient_no))
    execute(
        oscar_url,
        "UPDATE demographic SET phone=%s, lastUpdateDate=NOW() + INTERVAL 1 DAY WHERE demographic_no=%s",
        "604-555-7777",
        patient_no,
    )
    allergy = next(r for r in clinic_rows["allergies"] if r["archived"] == "0")
    execute(
        oscar_url,
        "UPDATE allergies SET archived='1', lastUpdateDate=NOW() + INTERVAL 1 DAY WHERE allergyid=%s",
        allergy["allergyid"],
    )
    drug = next(r for r in clinic_rows["drugs"] if not r["archived"])
    execute(
        oscar_url,
        "UPDATE drugs SET archived=1, archived_reason='adverseReaction', lastUpdateDate=NOW() + INTERVAL 1 DAY WHERE drugid=%s",
        drug["drugid"],
    )
    measurement = clinic_rows["measurements"][5]
    execute(
        oscar_url,
        "INSERT INTO measurementsDeleted (type, demographicNo, providerNo, dataField, measuringInstruction, comments, dateObserved, dateEntered, dateDeleted, originalId) "
        "SELECT LEFT(type,4), demographicNo, providerNo, dataField, measuringInstruction, '', NOW(), dateEntered, NOW(), id FROM measurements WHERE id=%s",
        measurement["id"],
    )
    execute(oscar_url, "DELETE FROM measurements WHERE id=%s", measurement["id"])
    appointment = next(
        r for r in clinic_rows["appointment"] if r["demographic_no"] and r["status"] == "t"
    )
    execute(
        oscar_url,
        "INSERT INTO appointmentArchive (appointment_no, provider_no, appointment_date, start_time, end_time, demographic_no, status, updatedatetime) "
        "SELECT appointment_no, provider_no, appointment_date, start_time, end_time, demographic_no, status, NOW() FROM appointment WHERE appointment_no=%s",
        appointment["appointment_no"],
    )
    execute(
        oscar_url, "DELETE FROM appointment WHERE appointment_no=%s", appointment["appointment_no"]
    )
    new_id = 990001
    insert_rows(
        oscar_url,
        {"measurements": [{**clinic_rows["measurements"][0], "id": new_id, "dataField": "141/92"}]},
    )

    report = sync(hub, oscar_url)
    assert report.ok, report
    assert report.streams["demographic"].records == 1
    patient, after = stored(hub, "Patient", ctx.patient_id(patient_no))
    assert after == before + 1 and any(t["value"] == "604-555-7777" for t in patient["telecom"])
    archived, _ = stored(hub, "AllergyIntolerance", ctx.resource_id("al", allergy["allergyid"]))
    assert (
        archived["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
        and "clinicalStatus" not in archived
    )
    stopped, _ = stored(hub, "MedicationRequest", ctx.resource_id("rx", drug["drugid"]))
    assert stopped["status"] == "stopped" and stopped["statusReason"]["text"] == "adverseReaction"
    withdrawn, _ = stored(hub, "Observation", ctx.resource_id("ms", measurement["id"]))
    assert withdrawn["status"] == "entered-in-error"
    gone, _ = stored(hub, "Appointment", ctx.resource_id("ap", appointment["appointment_no"]))
    assert gone["status"] == "entered-in-error"
    assert (
        stored(hub, "Observation", ctx.resource_id("ms", new_id))[0]["component"][0][
            "valueQuantity"
        ]["value"]
        == 141
    )
    assert sync(hub, oscar_url).resources == 0


def test_bad_rows_become_dead_letters_and_the_sync_carries_on(
    hub: Any, oscar_url: str, clinic_rows: dict
) -> None:
    base = clinic_rows["demographic"][1]
    insert_rows(
        oscar_url,
        {
            "demographic": [
                {
                    **base,
                    "demographic_no": 5001,
                    "month_of_birth": "02",
                    "date_of_birth": "30",
                    "hin": "9000000001",
                }
            ],
            "allergies": [
                {**clinic_rows["allergies"][0], "allergyid": 7001, "demographic_no": 4242}
            ],
            "measurements": [
                {
                    **clinic_rows["measurements"][0],
                    "id": 8001,
                    "type": "ZZZQ",
                    "dataField": "trace",
                },
                {
                    **clinic_rows["measurements"][0],
                    "id": 8002,
                    "type": "WT",
                    "dataField": "see chart",
                },
            ],
            "appointment": [
                {**clinic_rows["appointment"][0], "appointment_no": 9001, "status": "Q"}
            ],
        },
    )
    report = sync(hub, oscar_url)
    assert report.error is None
    state = SyncState(hub, "clinic-test")
    letters = {(d.stream, d.key): d.reason for d in state.dead_letters()}
    assert "does not exist" in letters[("demographic", "5001")]
    assert "4242" in letters[("allergies", "7001")]
    assert "unknown status" in letters[("appointment", "9001")]
    ctx = ids(oscar_url)
    task, _ = stored(hub, "Task", ctx.resource_id("dl", "demographic.5001"))
    assert task["status"] == "failed" and "does not exist" in task["statusReason"]["text"]
    binary, _ = stored(hub, "Binary", task["input"][0]["valueReference"]["reference"].split("/")[1])
    assert binary["contentType"] == "application/json"
    # an unknown type keeps OSCAR's code; a non-numeric value is text with a warning
    unknown, _ = stored(hub, "Observation", ctx.resource_id("ms", 8001))
    assert unknown["code"]["coding"] == [
        {"system": "urn:fhirhub:oscar:measurement-type", "code": "ZZZQ", "display": "ZZZQ"}
    ]
    assert unknown["valueString"] == "trace"
    assert stored(hub, "Observation", ctx.resource_id("ms", 8002))[0]["valueString"] == "see chart"
    assert any("8002" in w for w in report.warnings)
    # everyone else synced
    assert (
        report.streams["demographic"].records == 61
        and report.streams["demographic"].resources == 60
    )
    # fixing the row in OSCAR resolves the dead letter
    execute(
        oscar_url,
        "UPDATE demographic SET date_of_birth='28', lastUpdateDate=NOW() + INTERVAL 2 DAY WHERE demographic_no=5001",
    )
    assert sync(hub, oscar_url).ok
    assert ("demographic", "5001") not in {(d.stream, d.key) for d in state.dead_letters()}
    assert (
        stored(hub, "Task", ctx.resource_id("dl", "demographic.5001"))[0]["status"] == "completed"
    )


def test_tenant_labels_and_isolation(hub: Any, oscar_url: str) -> None:
    add_tenants(hub, "clinic-a", "clinic-b")
    report = sync(hub, oscar_url, tenant="clinic-a")
    assert report.ok, report
    with acting_as(system_for("clinic-a")):
        assert len(search(hub, "Patient", {"_count": "100"})) == 60
    with acting_as(system_for("clinic-b")):
        assert search(hub, "Patient", {"_count": "100"}) == []
        assert search(hub, "Observation", {"_count": "10"}) == []


def test_missing_tenant_organization_is_a_clear_error(hub: Any, oscar_url: str) -> None:
    report = sync(hub, oscar_url, tenant="no-such-clinic")
    assert not report.ok and "Organization/no-such-clinic does not exist" in (report.error or "")
    assert search(hub, "Patient", {"_count": "1"}) == []


def test_a_crash_between_pages_resumes_from_the_committed_cursor(hub: Any, oscar_url: str) -> None:
    settings = settings_for(oscar_url, batch_size=100)
    source = DatabaseSource(oscar_url)

    class Flaky:
        kind, streams = source.kind, ("measurements",)
        pages = 0

        def read(self, stream: str, after: Any, limit: int, since: Any = None) -> Any:
            Flaky.pages += 1
            if Flaky.pages == 4:
                from fhirhub.adapters.oscar.sources import SourceError

                raise SourceError("connection lost")
            return source.read(stream, after, limit, since)

        def close(self) -> None: ...

    assert OscarSync(hub, settings, source).run(streams=["provider", "demographic"]).ok
    broken = OscarSync(hub, settings, Flaky()).run()
    assert broken.streams["measurements"].error == "connection lost"
    assert SyncState(hub, "clinic-test").cursor("measurements").key == str(
        broken.streams["measurements"].records
    )
    resumed = OscarSync(hub, settings, source).run(streams=["measurements"])
    assert resumed.ok and resumed.records == 1200 - broken.streams["measurements"].records
    source.close()


@pytest.mark.parametrize("since", ["2099-01-01"])
def test_since_reads_only_later_rows(hub: Any, oscar_url: str, since: str) -> None:
    report = sync(hub, oscar_url, since=since)
    assert report.ok and report.records == 0
