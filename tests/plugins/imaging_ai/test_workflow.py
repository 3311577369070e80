"""The radiologist's decisions as plain FHIR updates: approve, decline, sign (409 while a
finding is undecided), the signed report's form and signature, and who may do what."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from fhirhub.sdk import validation_issues
from tests.plugins.imaging_ai.helpers import (
    imaging_hub,
    phantom_study,
    study_id,
    wait_for_runs,
    write,
)
from tests.security.dicom_hub import ServedHub, storescu

#: The tests share one served hub (one study analysed once): keep them on one xdist worker.
pytestmark = pytest.mark.xdist_group("imaging_ai_workflow")


@pytest.fixture(scope="module")
def world(
    sqlite_url_module: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServedHub, str]]:
    tmp_path = tmp_path_factory.mktemp("imaging")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("FHIRHUB_IMAGING_AI_OFFER_THRESHOLD", "0")  # both labels offered
        with imaging_hub(sqlite_url_module, tmp_path, monkeypatch) as served:
            datasets = phantom_study(2, patient_id="PAT-W")
            assert storescu(served, "CT_A", write(tmp_path / "in", datasets)).returncode == 0
            (run,) = wait_for_runs(served, study_id(served, str(datasets[0].StudyInstanceUID)))
            assert run.status == "done", run.reason
            yield served, run.report


def put(client: httpx.Client, resource: dict[str, Any]) -> httpx.Response:
    return client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)


def set_status(client: httpx.Client, reference: str, status: str, **extra: Any) -> httpx.Response:
    resource = client.get(f"/fhir/{reference}").json()
    resource["status"] = status
    resource.update(extra)
    return put(client, resource)


def test_decide_then_sign(world: tuple[ServedHub, str]) -> None:
    served, report_id = world
    with served.http("clinician-a") as a:
        report = a.get(f"/fhir/DiagnosticReport/{report_id}").json()
        first, second = (r["reference"] for r in report["result"])
        doctor = a.post(
            "/fhir/Practitioner", json={"resourceType": "Practitioner", "name": [{"text": "Dr A"}]}
        ).json()
        signer = [{"reference": f"Practitioner/{doctor['id']}", "display": "Dr A"}]

        # another tenant cannot see, decide or sign
        finding = a.get(f"/fhir/{first}").json()
        with served.http("clinician-b") as b:
            assert b.get(f"/fhir/{first}").status_code == 404
            assert put(b, {**finding, "status": "final"}).status_code in (403, 404, 405, 409)
            assert put(b, {**report, "status": "final"}).status_code in (403, 404, 405, 409)
        assert a.get(f"/fhir/{first}").json()["status"] == "preliminary"

        # the model's output is not editable
        finding = a.get(f"/fhir/{first}").json()
        finding["valueQuantity"]["value"] = 99.9
        assert put(a, finding).status_code == 409

        assert set_status(a, first, "final").status_code == 200
        report["status"] = "final"
        report["resultsInterpreter"] = signer
        refused = put(a, report)
        assert refused.status_code == 409
        assert second in refused.text  # says which finding is undecided

        note = [{"text": "artefact"}]
        assert set_status(a, second, "cancelled", note=note).status_code == 200
        del report["resultsInterpreter"]
        assert put(a, report).status_code == 400  # no signer

        report["resultsInterpreter"] = signer
        report["conclusion"] = "One focal opacity."
        signed = put(a, report)
        assert signed.status_code == 200, signed.text
        final = a.get(f"/fhir/DiagnosticReport/{report_id}").json()
        assert final["status"] == "final"
        assert final["resultsInterpreter"] == signer
        assert not validation_issues(final), validation_issues(final)
        html = base64.b64decode(final["presentedForm"][0]["data"]).decode()
        assert "One focal opacity." in html and "artefact" in html and "Dr A" in html
        pdf_form = final["presentedForm"][1]
        assert pdf_form["contentType"] == "application/pdf"
        pdf = base64.b64decode(pdf_form["data"])
        assert pdf.startswith(b"%PDF-")
        assert pdf_form["hash"] == base64.b64encode(hashlib.sha1(pdf).digest()).decode()
        reader = PdfReader(io.BytesIO(pdf))
        text = " ".join(page.extract_text() for page in reader.pages)
        assert "One focal opacity." in text and "artefact" in text and "Dr A" in text
        approved = a.get(f"/fhir/{first}").json()["code"]["text"]
        assert approved in text and reader.metadata.author == "Dr A"

        provenances = a.get(
            "/fhir/Provenance", params={"_tag": "urn:fhirhub:imaging-ai|signature"}
        ).json()
        (entry,) = provenances["entry"]
        signature = entry["resource"]
        assert not validation_issues(signature)
        assert signature["target"][0]["reference"].startswith(
            f"DiagnosticReport/{report_id}/_history/"
        )
        assert signature["signature"][0]["who"]["reference"] == signer[0]["reference"]

        patient = final["subject"]["reference"]
        found = a.get("/fhir/DiagnosticReport", params={"status": "final", "patient": patient})
        assert [e["resource"]["id"] for e in found.json()["entry"]] == [report_id]

        # signed: findings frozen, the report changes only as amended
        assert set_status(a, second, "final").status_code == 409
        final["conclusion"] = "Changed my mind."
        assert put(a, final).status_code == 409
        final["status"] = "amended"
        assert put(a, final).status_code == 200
    with served.http("clinician-b") as b:
        found = b.get("/fhir/DiagnosticReport", params={"status": "final", "patient": patient})
        assert not found.json().get("entry")


def test_models_are_listed_with_their_cards(world: tuple[ServedHub, str]) -> None:
    served, _ = world
    with served.http("clinician-b") as b:
        listed = b.get("/plugins/imaging_ai/models").json()
    (card,) = listed["models"]
    assert card["id"] == "synthetic-opacity"
    assert card["modalities"] == ["DX", "CR"] and card["body_parts"] == ["CHEST"]
    assert [label["id"] for label in card["labels"]] == ["focal-opacity", "diffuse-opacity"]
    assert "NOT a clinical model" in card["intended_use"]
    assert "file" not in card
