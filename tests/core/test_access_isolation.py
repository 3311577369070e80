"""Cross-tenant and cross-patient leak suite: every interaction type, with callers of each role
and scope shape, on both backends; nothing of another tenant or patient may show, not in
results, totals, includes, history, paging, operations or error messages.

Callers are built directly as :class:`Access` objects by a test authenticator (header
``X-Test-Caller``), so this suite checks the enforcement layer alone; the OAuth server that
issues real tokens is tested in ``tests/plugins/security``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.access import Access, parse_scopes
from fhirhub.core.hookspecs import hookimpl
from fhirhub.core.hub import Hub, build_hub
from fhirhub.fhir_store.tenancy import TENANT_SYSTEM
from tests.conftest import make_settings
from tests.core.fhir_samples import observation, patient
from tests.tenants import add_tenants

CALLERS: dict[str, Access] = {
    "clinician-a": Access(
        "user:clin-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "clinician-b": Access(
        "user:clin-b",
        tenant="org-b",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "patient-a1": Access(
        "user:pat-a1",
        tenant="org-a",
        roles=frozenset({"patient"}),
        scopes=parse_scopes("patient/*.rs"),
        patient="pa1",
    ),
    "obs-reader-a": Access(
        "client:obs", tenant="org-a", scopes=parse_scopes("system/Observation.rs")
    ),
    "obs-read-only-a": Access(
        "client:obs-r", tenant="org-a", scopes=parse_scopes("system/Observation.r")
    ),
    "v1-reader-a": Access("client:v1", tenant="org-a", scopes=parse_scopes("user/*.read")),
    "super": Access(
        "user:root", roles=frozenset({"super_admin"}), scopes=parse_scopes("user/*.cruds")
    ),
}


class HeaderAuthenticator:
    """Maps ``X-Test-Caller: name`` to one of :data:`CALLERS`."""

    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        name = request.headers.get("x-test-caller")
        return CALLERS.get(name) if name else None


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    settings = make_settings(database_url, tmp_path, auth="on", listeners=False)
    hub = build_hub(settings, extra_plugins=[HeaderAuthenticator()])
    add_tenants(hub, "org-a", "org-b")
    yield hub
    hub.close()


class Caller:
    def __init__(self, client: TestClient, name: str) -> None:
        self.client = client
        self.headers = {"X-Test-Caller": name}

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(f"/fhir/{url}", headers=self.headers, **kw)

    def post(self, url: str, body: Any) -> Any:
        return self.client.post(f"/fhir/{url}", json=body, headers=self.headers)

    def put(self, url: str, body: Any) -> Any:
        return self.client.put(f"/fhir/{url}", json=body, headers=self.headers)

    def patch(self, url: str, body: Any) -> Any:
        headers = {**self.headers, "Content-Type": "application/json-patch+json"}
        return self.client.patch(f"/fhir/{url}", json=body, headers=headers)

    def delete(self, url: str) -> Any:
        return self.client.delete(f"/fhir/{url}", headers=self.headers)

    def ids(self, url: str) -> set[str]:
        """Every resource (type/id) reachable from a search by following its next links."""
        found: set[str] = set()
        response = self.get(url)
        while True:
            assert response.status_code == 200, response.text
            bundle = response.json()
            for entry in bundle.get("entry", []):
                resource = entry["resource"]
                if resource["resourceType"] != "OperationOutcome":
                    found.add(f"{resource['resourceType']}/{resource['id']}")
            nxt = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
            if not nxt:
                return found
            response = self.client.get(nxt[0], headers=self.headers)


@pytest.fixture
def world(hub: Hub) -> Iterator[dict[str, Any]]:
    """Two tenants written through the API: org-a has patients pa1 and pa2, org-b has pb1;
    each patient has two Observations and an Encounter; each tenant a Practitioner. The
    Practitioners and Patients, whose ids the tests name, are put by the super admin with
    their tenant's label (a clinician, confined to its tenant, may not choose ids); the rest
    is created by each tenant's clinician."""
    from fhirhub.core.http.app import create_app

    with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
        a, b = Caller(client, "clinician-a"), Caller(client, "clinician-b")
        root = Caller(client, "super")
        ids: dict[str, str] = {}
        for caller, tenant, names in ((a, "a", ("pa1", "pa2")), (b, "b", ("pb1",))):
            label = {"security": [{"system": TENANT_SYSTEM, "code": f"org-{tenant}"}]}
            practitioner = root.put(
                f"Practitioner/pr-{tenant}",
                {
                    "resourceType": "Practitioner",
                    "id": f"pr-{tenant}",
                    "meta": label,
                    "name": [{"family": f"Doc{tenant}"}],
                },
            )
            assert practitioner.status_code == 201, practitioner.text
            for name in names:
                body = patient(family=f"Family{name}", mrn=f"mrn-{name}", id=name, meta=label)
                assert root.put(f"Patient/{name}", body).status_code == 201
                for code in ("8867-4", "8310-5"):
                    obs = observation(
                        f"Patient/{name}",
                        code=code,
                        performer=[{"reference": f"Practitioner/pr-{tenant}"}],
                    )
                    response = caller.post("Observation", obs)
                    assert response.status_code == 201, response.text
                    ids[f"{name}-{code}"] = response.json()["id"]
                encounter = {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "AMB",
                    },
                    "subject": {"reference": f"Patient/{name}"},
                }
                assert caller.post("Encounter", encounter).status_code == 201
        yield {"client": client, "ids": ids}


def caller(world: dict[str, Any], name: str) -> Caller:
    return Caller(world["client"], name)


def test_writes_are_labelled_with_the_callers_tenant_whatever_the_client_sent(
    world: dict[str, Any],
) -> None:
    a = caller(world, "clinician-a")
    spoofed = patient(mrn="spoof", meta={"security": [{"system": TENANT_SYSTEM, "code": "org-b"}]})
    created = a.post("Patient", spoofed)
    assert created.status_code == 201
    labels = created.json()["meta"]["security"]
    assert labels == [{"system": TENANT_SYSTEM, "code": "org-a"}]
    assert caller(world, "clinician-b").get(f"Patient/{created.json()['id']}").status_code == 404


def test_another_tenants_resources_look_exactly_like_missing_ones(world: dict[str, Any]) -> None:
    a = caller(world, "clinician-a")
    hidden, missing = a.get("Patient/pb1"), a.get("Patient/nope")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["issue"][0]["diagnostics"].replace("pb1", "X") == missing.json()["issue"][
        0
    ]["diagnostics"].replace("nope", "X")
    assert a.get("Patient/pb1/_history/1").status_code == 404
    assert a.get("Patient/pb1/_history").status_code == 404
    assert a.get("Patient/pb1/$everything").status_code == 404
    assert a.get(f"Observation/{world['ids']['pb1-8867-4']}").status_code == 404


def test_searches_totals_and_paging_stay_inside_the_tenant(world: dict[str, Any]) -> None:
    a = caller(world, "clinician-a")
    assert a.get("Patient?_summary=count").json()["total"] == 2
    assert a.get("Observation?_total=accurate").json()["total"] == 4
    every = a.ids("Observation?_count=1")
    assert len(every) == 4 and all("pb1" not in i for i in every)
    assert a.get("Observation?subject=Patient/pb1").json()["total"] == 0
    assert a.get("Observation?subject:Patient.family=Familypb1").json()["total"] == 0
    assert a.get("Patient/pb1/Observation").status_code == 404  # the owner is invisible
    system = a.ids("?_type=Patient,Observation,Encounter,Practitioner&_count=3")
    assert len(system) == 2 + 4 + 2 + 1
    assert not any(i.endswith(("pb1", "pr-b")) for i in system)
    # The super admin sees both tenants.
    assert caller(world, "super").get("Patient?_summary=count").json()["total"] == 3


def test_includes_never_cross_the_tenant(world: dict[str, Any]) -> None:
    a = caller(world, "clinician-a")
    everything = a.ids("Patient?_revinclude=Observation:subject&_revinclude=Encounter:subject")
    assert {"Patient/pa1", "Patient/pa2"} <= everything
    assert not any("pb1" in i for i in everything)
    included = a.ids("Observation?_include=Observation:performer&_include=Observation:subject")
    assert "Practitioner/pr-a" in included and "Practitioner/pr-b" not in included


def test_history_at_every_level_is_filtered_with_its_total(world: dict[str, Any]) -> None:
    a = caller(world, "clinician-a")
    system = a.get("_history?_count=500").json()
    assert system["total"] == len(system["entry"])
    urls = [e["fullUrl"].rsplit("/fhir/", 1)[1] for e in system["entry"]]
    clinical = [u for u in urls if not u.startswith(("Provenance/", "AuditEvent/"))]
    assert len(clinical) == 1 + 2 * (1 + 2 + 1)
    assert "Patient/pb1" not in urls and "Practitioner/pr-b" not in urls
    # Provenance written for org-b's writes stays in org-b.
    for entry in system["entry"]:
        if "resource" in entry:
            assert entry["resource"]["meta"]["security"] == [
                {"system": TENANT_SYSTEM, "code": "org-a"}
            ], entry["fullUrl"]
    typed = a.get("Patient/_history").json()
    assert typed["total"] == 2
    # A deleted resource's tombstone keeps its tenant.
    b = caller(world, "clinician-b")
    assert b.delete(f"Observation/{world['ids']['pb1-8867-4']}").status_code in (200, 204)
    later = a.get("_history?_count=500").json()["entry"]
    assert not any(e["fullUrl"].endswith(world["ids"]["pb1-8867-4"]) for e in later)


def test_writes_to_another_tenant_are_refused_and_change_nothing(world: dict[str, Any]) -> None:
    a, b = caller(world, "clinician-a"), caller(world, "clinician-b")
    before = b.get("Patient/pb1").json()
    takeover = patient(family="Stolen", mrn="mrn-pb1", id="pb1")
    taken, free = a.put("Patient/pb1", takeover), a.put("Patient/nope", {**takeover, "id": "nope"})
    assert taken.status_code == free.status_code == 405  # tests/security/test_rest_isolation.py
    assert (
        a.patch("Patient/pb1", [{"op": "replace", "path": "/gender", "value": "other"}]).status_code
        == 404
    )
    assert a.delete("Patient/pb1").status_code == 404
    # Conditional interactions match only inside the caller's tenant.
    conditional = a.put(
        "Patient?identifier=http://hospital.example/mrn|mrn-pb1", patient(mrn="mrn-pb1")
    )
    assert conditional.status_code == 201  # a new patient in org-a, not an update of pb1
    assert a.delete("Patient?identifier=http://hospital.example/mrn|mrn-pb1").status_code in (
        200,
        204,
    )
    # References may not point into another tenant.
    cross = a.post("Observation", observation("Patient/pb1"))
    assert cross.status_code == 422
    assert "Patient/pb1" in cross.text and "does not resolve" in cross.text
    # Bundles: a transaction reading another tenant's resource fails as a whole.
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(mrn="tx"), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/pb1"}},
        ],
    }
    assert a.post("", transaction).status_code == 404
    batch = {**transaction, "type": "batch"}
    responses = a.post("", batch).json()["entry"]
    assert responses[1]["response"]["status"].startswith("404")
    after = b.get("Patient/pb1").json()
    assert after == before


def test_patient_context_sees_only_its_own_compartment(world: dict[str, Any]) -> None:
    p = caller(world, "patient-a1")
    assert p.get("Patient/pa1").status_code == 200
    assert p.get("Patient/pa2").status_code == 404
    assert p.ids("Patient") == {"Patient/pa1"}
    observations = p.ids("Observation?_count=1")
    assert observations == {f"Observation/{world['ids'][f'pa1-{c}']}" for c in ("8867-4", "8310-5")}
    assert p.get(f"Observation/{world['ids']['pa2-8867-4']}").status_code == 404
    assert p.get("Observation?subject=Patient/pa2").json()["total"] == 0
    assert p.get("Patient/pa2/$everything").status_code == 404
    everything = p.ids("Patient/pa1/$everything")
    assert "Patient/pa1" in everything and not any("pa2" in i for i in everything)
    revinclude = p.ids("Practitioner?_revinclude=Observation:performer")
    assert all(not i.startswith("Observation/") or i in observations for i in revinclude), (
        revinclude
    )
    assert "Practitioner/pr-b" not in revinclude  # still inside the tenant
    assert p.get("Patient?_has:Observation:subject:code=8867-4").json()["total"] == 1
    history = p.get("Observation/_history").json()
    assert history["total"] == 2
    assert p.get("Observation/_history?_count=1").json()["total"] == 2
    assert p.post("Observation", observation("Patient/pa1")).status_code == 403  # .rs only


def test_scopes_limit_types_and_interactions(world: dict[str, Any]) -> None:
    reader = caller(world, "obs-reader-a")
    assert reader.get("Observation").status_code == 200
    assert reader.get("Patient/pa1").status_code == 403
    assert reader.get("Condition").status_code == 403
    # Included resources of types outside the scopes are left out.
    included = reader.ids("Observation?_include=Observation:subject")
    assert included and all(i.startswith("Observation/") for i in included)
    assert reader.post("Observation", observation("Patient/pa1")).status_code == 403
    assert reader.delete(f"Observation/{world['ids']['pa1-8867-4']}").status_code == 403
    assert reader.get("Patient/pa1/$everything").status_code == 403
    system = reader.ids("?_type=Patient,Observation")
    assert system and all(i.startswith("Observation/") for i in system)
    # 'r' without 's': read by id yes, search no (SMART v2).
    read_only = caller(world, "obs-read-only-a")
    assert read_only.get(f"Observation/{world['ids']['pa1-8867-4']}").status_code == 200
    assert read_only.get("Observation").status_code == 403
    # v1 'read' is 'rs'.
    v1 = caller(world, "v1-reader-a")
    assert v1.get("Patient").status_code == 200
    assert v1.post("Patient", patient()).status_code == 403
    assert v1.post("$reindex", {"resourceType": "Parameters"}).status_code == 403


def test_requests_without_credentials_are_refused_but_discovery_is_public(
    world: dict[str, Any],
) -> None:
    client: TestClient = world["client"]
    refused = client.get("/fhir/Patient")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/metadata").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/fhir/Patient", headers={"X-Test-Caller": "nobody"}).status_code == 401


def test_chains_and_has_do_not_probe_other_tenants_or_patients(world: dict[str, Any]) -> None:
    a, b = caller(world, "clinician-a"), caller(world, "clinician-b")
    # org-b's practitioner Docb performs org-b's observations; org-a may not chain onto it.
    assert a.get("Observation?performer:Practitioner.family=Docb").json()["total"] == 0
    assert b.get("Observation?performer:Practitioner.family=Docb").json()["total"] == 2
    assert a.get("Practitioner?_has:Observation:performer:subject=Patient/pb1").json()["total"] == 0
    p = caller(world, "patient-a1")
    # pa2's observations must not reveal themselves through _has on the shared practitioner.
    assert p.get("Practitioner?_has:Observation:performer:subject=Patient/pa2").json()["total"] == 0
    assert p.get("Practitioner?_has:Observation:performer:subject=Patient/pa1").json()["total"] == 1


def test_system_writes_belong_to_the_default_tenant(database_url: str, tmp_path: Path) -> None:
    """An HL7 feed writes as the system; with FHIRHUB_DEFAULT_TENANT its patients belong to
    that tenant, so its clinicians see them and others do not."""
    from fhirhub.adapters.hl7.processing import process
    from fhirhub.core.http.app import create_app
    from tests.adapters.hl7.conftest import fixture

    settings = make_settings(
        database_url,
        tmp_path,
        auth="on",
        listeners=False,
        default_tenant="org-a",
    )
    hub = build_hub(settings, extra_plugins=[HeaderAuthenticator()])
    try:
        assert b"MSA|AA" in process(hub, fixture("adt_a01.hl7"))
        with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
            a, b = Caller(client, "clinician-a"), Caller(client, "clinician-b")
            patients = a.get("Patient").json()
            assert patients["total"] == 1
            labels = patients["entry"][0]["resource"]["meta"]["security"]
            assert {"system": TENANT_SYSTEM, "code": "org-a"} in labels
            assert b.get("Patient").json()["total"] == 0
            assert a.get("Provenance").json()["total"] == 1  # the message's own Provenance
    finally:
        hub.close()


def test_identifier_of_type_stays_inside_the_tenant(world: dict[str, Any]) -> None:
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    mrn = {
        "system": "http://hospital.example/mrn",
        "value": "of-type-1",
        "type": {"coding": [{"system": v2, "code": "MR"}]},
    }
    mine: dict[str, str] = {}
    for name in ("clinician-a", "clinician-b"):
        response = caller(world, name).post("Patient", patient(identifier=[mrn]))
        assert response.status_code == 201, response.text
        mine[name] = f"Patient/{response.json()['id']}"
    for name in ("clinician-a", "clinician-b"):
        found = caller(world, name).ids(f"Patient?identifier:of-type={v2}|MR|of-type-1")
        assert found == {mine[name]}


def test_instance_validate_sees_only_what_the_caller_may_read(world: dict[str, Any]) -> None:
    """``[type]/[id]/$validate`` reads the stored resource as the caller: another tenant's or
    another patient's resource is not known (404), in every mode, and says nothing of it."""
    a, b = caller(world, "clinician-a"), caller(world, "clinician-b")
    patient_a1 = caller(world, "patient-a1")
    assert a.post("Patient/pa1/$validate", {"resourceType": "Parameters"}).status_code == 200
    for url in ("Patient/pa1/$validate", "Patient/pa1/$validate?mode=delete"):
        refused = b.post(url, {"resourceType": "Parameters"})
        assert refused.status_code == 404, refused.text
        assert "Familypa1" not in refused.text
    own = patient_a1.post("Patient/pa1/$validate", {"resourceType": "Parameters"})
    assert own.status_code == 200, own.text
    other = patient_a1.post("Patient/pa2/$validate", {"resourceType": "Parameters"})
    assert other.status_code == 404 and "Familypa2" not in other.text
