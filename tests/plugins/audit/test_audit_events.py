"""Every access becomes an AuditEvent: read, search, create, update, patch, delete, operation,
refusals and logins, stored in batches by the writer thread and searchable like any resource."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.fhir_store.tenancy import TENANT_SYSTEM, tenant_of
from fhirhub.fhir_store.validation import validate_resource
from fhirhub.plugins.audit import audit_writer
from fhirhub.plugins.audit.events import audit_event
from fhirhub.plugins.audit.writer import AuditWriter
from fhirhub.sdk import search
from tests.core.fhir_samples import patient
from tests.plugins.audit.header_auth import as_user

ALICE = as_user("alice")


def audit_events(hub: Hub, **params: str) -> list[dict[str, Any]]:
    assert audit_writer(hub).wait_idle(), audit_writer(hub).last_error
    found = search(hub, "AuditEvent", {"_count": "200", **params})
    for event in found:
        validate_resource(event, expected_type="AuditEvent")  # every one is valid R4
    return sorted(found, key=lambda e: e["period"]["start"])


def subtype(event: dict[str, Any]) -> str:
    return str(event["subtype"][0]["code"])


def create_patient(client: TestClient, headers: dict[str, str] = ALICE) -> str:
    response = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_each_interaction_is_one_audit_event(audited: TestClient, audited_hub: Hub) -> None:
    pid = create_patient(audited)
    assert audited.get(f"/fhir/Patient/{pid}", headers=ALICE).status_code == 200
    assert audited.get("/fhir/Patient?family=chalmers", headers=ALICE).status_code == 200
    current = audited.get(f"/fhir/Patient/{pid}", headers=ALICE).json()
    changed = orjson.dumps({**current, "gender": "other"})
    assert audited.put(f"/fhir/Patient/{pid}", content=changed, headers=ALICE).status_code == 200
    patch = orjson.dumps([{"op": "replace", "path": "/gender", "value": "female"}])
    patch_headers = {**ALICE, "Content-Type": "application/json-patch+json"}
    assert audited.patch(f"/fhir/Patient/{pid}", content=patch, headers=patch_headers).is_success
    assert audited.get(f"/fhir/Patient/{pid}/$everything", headers=ALICE).status_code == 200
    assert audited.delete(f"/fhir/Patient/{pid}", headers=ALICE).status_code in (200, 204)

    events = audit_events(audited_hub)
    assert [(subtype(e), e["action"], e["outcome"]) for e in events] == [
        ("create", "C", "0"),
        ("read", "R", "0"),
        ("search-type", "E", "0"),
        ("read", "R", "0"),
        ("update", "U", "0"),
        ("patch", "U", "0"),
        ("operation", "E", "0"),
        ("delete", "D", "0"),
    ]
    for event in events:
        assert event["type"]["code"] == "rest"
        agent = event["agent"][0]
        assert agent["requestor"] is True
        assert agent["altId"] == "user:alice"
        assert agent["who"]["identifier"]["value"] == "user:alice"
        assert agent["network"] == {"address": "testclient", "type": "2"}
        assert event["source"]["observer"] == {"display": "fhirhub"}
        assert event["period"]["start"] <= event["period"]["end"] == event["recorded"]
    assert events[0]["entity"][0]["what"] == {"reference": f"Patient/{pid}"}  # from Location
    read = events[1]
    assert read["entity"][0]["what"] == {"reference": f"Patient/{pid}"}
    assert read["entity"][0]["role"]["code"] == "1"  # the patient
    query = events[2]["entity"][0]
    assert base64.b64decode(query["query"]).decode() == "family=chalmers"
    assert query["role"]["code"] == "24" and query["description"] == "Patient?family=chalmers"


def test_refusals_and_failures_have_their_outcome(audited: TestClient, audited_hub: Hub) -> None:
    assert audited.get("/fhir/Patient/nobody").status_code == 401  # no credentials at all
    assert audited.get("/fhir/Patient/nobody", headers=ALICE).status_code == 404
    events = audit_events(audited_hub)
    assert [(subtype(e), e["outcome"], e["outcomeDesc"]) for e in events] == [
        ("read", "4", "GET /fhir/Patient/nobody -> 401"),
        ("read", "4", "GET /fhir/Patient/nobody -> 404"),
    ]
    refused = events[0]["agent"][0]
    assert refused["who"] == {"display": "unauthenticated"} and "altId" not in refused


def test_logins_from_the_security_plugin(audited_hub: Hub) -> None:
    base = {"method": "POST", "path": "/oauth/token", "query": "", "remote": "10.0.0.7"}
    base |= {"resource_type": None, "resource_id": None, "started": 1_700_000_000_000_000}
    base |= {"duration_ms": 3.5}
    from fhirhub.sdk import Access

    access = Access(subject="user:bob", tenant="org-1")
    audited_hub.hook.request_completed(
        record={**base, "access": access, "status": 200, "interaction": "login"}, hub=audited_hub
    )
    audited_hub.hook.request_completed(
        record={**base, "access": None, "status": 401, "interaction": "login-failed"}
        | {"started": base["started"] + 1000},
        hub=audited_hub,
    )
    login, failed = audit_events(audited_hub)
    for event in (login, failed):
        assert event["type"]["code"] == "110114"  # DICOM: User Authentication
        assert event["subtype"][0]["code"] == "110122"  # DICOM: Login
        assert event["action"] == "E"
        assert event["agent"][0]["network"]["address"] == "10.0.0.7"
        assert "entity" not in event
    assert (login["outcome"], failed["outcome"]) == ("0", "4")
    assert tenant_of(login) == "org-1" and tenant_of(failed) is None


def test_events_carry_the_callers_tenant(audited: TestClient, audited_hub: Hub) -> None:
    org = as_user("carol", tenant="org-a", client="chart-app", token="jti-1", roles="org_admin")
    audited.get("/fhir/Patient?_count=1", headers=org)
    (event,) = audit_events(audited_hub)
    assert {"system": TENANT_SYSTEM, "code": "org-a"} in event["meta"]["security"]
    user, app = event["agent"]
    assert user["role"] == [{"text": "org_admin"}]
    assert user["policy"] == ["urn:fhirhub:token:jti-1"]
    assert app["who"]["identifier"]["value"] == "chart-app" and app["requestor"] is False


def test_admins_query_the_trail_over_the_api(audited: TestClient, audited_hub: Hub) -> None:
    pid = create_patient(audited)
    practitioner = as_user("dr", fhir_user="Practitioner/p-1")
    audited.get(f"/fhir/Patient/{pid}", headers=practitioner)
    audited.get(f"/fhir/Patient/{pid}", headers=ALICE)
    audit_writer(audited_hub).wait_idle()
    admin = as_user("root", roles="super_admin")

    def found(query: str) -> list[str]:
        response = audited.get(f"/fhir/AuditEvent?{query}", headers=admin)
        assert response.status_code == 200, response.text
        return [e["resource"]["agent"][0]["altId"] for e in response.json().get("entry", [])]

    assert found("agent=Practitioner/p-1") == ["user:dr"]
    # alice created and read the patient, dr read it.
    assert sorted(found(f"entity=Patient/{pid}&date=ge2020-01-01")) == [
        "user:alice",
        "user:alice",
        "user:dr",
    ]
    assert found(f"entity=Patient/{pid}&altid=user:dr&subtype=read") == ["user:dr"]
    assert found("date=lt2000-01-01") == []
    # A clinician's wildcard scope does not reach the audit trail.
    assert audited.get("/fhir/AuditEvent", headers=ALICE).status_code == 403


def test_an_org_admin_sees_its_own_tenants_events_only(
    audited: TestClient, audited_hub: Hub
) -> None:
    audited.get("/fhir/Patient", headers=as_user("a1", tenant="org-a"))
    audited.get("/fhir/Patient", headers=as_user("b1", tenant="org-b"))
    audited.get("/fhir/Patient", headers=ALICE)
    audit_writer(audited_hub).wait_idle()
    org_admin = as_user("boss", tenant="org-a", roles="org_admin", scopes="user/AuditEvent.rs")
    response = audited.get("/fhir/AuditEvent?_count=100", headers=org_admin)
    assert response.status_code == 200, response.text
    agents = [e["resource"]["agent"][0]["altId"] for e in response.json()["entry"]]
    assert agents == ["user:a1"]


def test_no_audit_without_authentication(client: TestClient, hub: Hub) -> None:
    """``FHIRHUB_AUTH=off`` (development) runs everything as the system: nothing to audit."""
    client.get("/fhir/Patient")
    assert search(hub, "AuditEvent") == []


def test_a_failing_store_delays_events_but_loses_none(
    audited: TestClient, audited_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = audit_writer(audited_hub)
    real_store = AuditWriter._store
    failures = {"left": 2}

    def flaky(self: AuditWriter, events: list[dict[str, Any]]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database is down")
        real_store(self, events)

    monkeypatch.setattr(AuditWriter, "_store", flaky)
    for _ in range(3):
        audited.get("/fhir/Patient", headers=ALICE)
    assert writer.wait_idle(timeout=15)
    assert failures["left"] == 0 and writer.last_error is None
    assert len(audit_events(audited_hub)) == 3


def test_events_the_store_refused_at_shutdown_stay_journaled_and_are_stored_at_the_next_start(
    audited_hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(self: AuditWriter, events: list[dict[str, Any]]) -> None:
        raise RuntimeError("database is down")

    real_store = AuditWriter._store
    monkeypatch.setattr(AuditWriter, "_store", down)
    writer = AuditWriter(audited_hub, interval=0.01)
    record = {"access": None, "method": "GET", "path": "/fhir/Patient", "query": "", "status": 401}
    record |= {"remote": "1.2.3.4", "interaction": "search-type", "resource_type": "Patient"}
    record |= {"resource_id": None, "started": 1_700_000_000_000_000, "duration_ms": 1.0}
    writer.submit(record)
    writer.submit(dict(record, status=200))
    writer.stop(timeout=2)
    journal = tmp_path / "audit-journal"
    assert sum(len(p.read_bytes().splitlines()) for p in journal.glob("*.ndjson")) == 2

    monkeypatch.setattr(AuditWriter, "_store", real_store)
    again = AuditWriter(audited_hub)
    assert again.wait_idle()
    again.stop()
    assert list(journal.glob("*.ndjson")) == []
    outcomes = sorted(e["outcome"] for e in search(audited_hub, "AuditEvent"))
    assert outcomes == ["0", "4"]


def test_a_spool_of_an_earlier_version_is_stored_at_start(audited_hub: Hub, tmp_path: Path) -> None:
    record = {"access": None, "method": "GET", "path": "/fhir/Patient", "query": "", "status": 401}
    record |= {"remote": "1.2.3.4", "interaction": "search-type", "resource_type": "Patient"}
    record |= {"resource_id": None, "started": 1_700_000_000_000_000, "duration_ms": 1.0}
    spool = tmp_path / "audit-spool.ndjson"
    spool.write_bytes(orjson.dumps(audit_event(record, site="test")) + b"\n")
    writer = AuditWriter(audited_hub)
    assert writer.wait_idle()
    writer.stop()
    assert not spool.exists() and not spool.with_suffix(".loading").exists()
    assert [e["outcome"] for e in search(audited_hub, "AuditEvent")] == ["4"]
