"""Instances arriving after a study was analysed: it is analysed again once quiet. The earlier
preliminary report (and its findings) is withdrawn as entered-in-error and named by the new
report's Provenance; a signed report is never changed, a new preliminary one is written beside
it. Nothing new (the plugin's own SEG/SR stored back, a quiet study): no second run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.plugins.imaging_ai.helpers import (
    imaging_hub,
    phantom_study,
    study_id,
    wait_for_runs,
    write,
)
from tests.security.dicom_hub import ServedHub, storescu


def _fhir(client: httpx.Client, reference: str) -> dict[str, Any]:
    response = client.get(f"/fhir/{reference}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _settle(served: ServedHub, study: str, runs: int) -> None:
    """Several quiet periods pass and no further run starts."""
    time.sleep(2.5)
    assert len(wait_for_runs(served, study, runs)) == runs


def test_new_instances_supersede_a_preliminary_report_never_a_signed_one(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with imaging_hub(sqlite_url, tmp_path, monkeypatch, offer_threshold="0") as served:
        datasets = phantom_study(4)
        batches = [datasets[:2], datasets[2:3], datasets[3:]]
        assert storescu(served, "CT_A", write(tmp_path / "1", batches[0])).returncode == 0
        study = study_id(served, str(datasets[0].StudyInstanceUID))
        (first,) = wait_for_runs(served, study)
        assert first.status == "done", first.reason
        # its SEG and SR went back into the study (new ImagingStudy versions): no second run
        _settle(served, study, 1)

        # a late instance: analysed again, the unsigned report withdrawn
        assert storescu(served, "CT_A", write(tmp_path / "2", batches[1])).returncode == 0
        second = next(r for r in wait_for_runs(served, study, 2) if r.id != first.id)
        assert second.status == "done", second.reason
        assert second.instances == 3 and second.report != first.report
        with served.http("clinician-a") as a:
            old = _fhir(a, f"DiagnosticReport/{first.report}")
            assert old["status"] == "entered-in-error"
            assert {"superseded"} <= {t["code"] for t in old["meta"]["tag"]}
            for entry in old["result"]:
                assert _fhir(a, entry["reference"])["status"] == "entered-in-error"
            new = _fhir(a, f"DiagnosticReport/{second.report}")
            assert new["status"] == "preliminary"
            provenance = a.get(
                "/fhir/Provenance", params={"target": f"DiagnosticReport/{second.report}"}
            ).json()["entry"][0]["resource"]
            revisions = [e for e in provenance["entity"] if e["role"] == "revision"]
            assert revisions == [
                {"role": "revision", "what": {"reference": f"DiagnosticReport/{first.report}"}}
            ]
            current = a.get(
                "/fhir/DiagnosticReport",
                params={"_tag": "urn:fhirhub:imaging-ai|report", "status": "preliminary"},
            ).json()
            assert [e["resource"]["id"] for e in current["entry"]] == [second.report]

            # the radiologist decides and signs the second report
            doctor = a.post(
                "/fhir/Practitioner",
                json={"resourceType": "Practitioner", "name": [{"text": "Dr A"}]},
            ).json()
            for entry in new["result"]:
                finding = _fhir(a, entry["reference"])
                finding["status"] = "final"
                assert a.put(f"/fhir/{entry['reference']}", json=finding).status_code == 200
            new["status"] = "final"
            new["resultsInterpreter"] = [{"reference": f"Practitioner/{doctor['id']}"}]
            signed = a.put(f"/fhir/DiagnosticReport/{second.report}", json=new)
            assert signed.status_code == 200, signed.text
            signed_version = signed.json()["meta"]["versionId"]

        # another late instance: the signed report stays as signed, a new preliminary beside it
        assert storescu(served, "CT_A", write(tmp_path / "3", batches[2])).returncode == 0
        runs = wait_for_runs(served, study, 3)
        third = next(r for r in runs if r.id not in (first.id, second.id))
        assert third.status == "done", third.reason
        assert third.instances == 4
        with served.http("clinician-a") as a:
            kept = _fhir(a, f"DiagnosticReport/{second.report}")
            assert kept["status"] == "final" and kept["meta"]["versionId"] == signed_version
            for entry in kept["result"]:
                assert _fhir(a, entry["reference"])["status"] == "final"
            latest = _fhir(a, f"DiagnosticReport/{third.report}")
            assert latest["status"] == "preliminary"
            provenance = a.get(
                "/fhir/Provenance", params={"target": f"DiagnosticReport/{third.report}"}
            ).json()["entry"][0]["resource"]
            assert not [e for e in provenance["entity"] if e["role"] == "revision"]
        _settle(served, study, 3)
