"""Instances arriving after a study was analysed: it is analysed again once quiet. The earlier
preliminary report (and its findings) is withdrawn as entered-in-error and named by the new
report's Provenance; a signed report is never changed, a new preliminary one is written beside
it. The radiologist's decisions on the superseded findings are carried over to the matching
new ones. Nothing new (the plugin's own SEG/SR stored back, a quiet study): no second run."""

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


#: The study's quiet period here: long enough that one storescu's instances, sent back to back
#: on a loaded machine, are one arrival (a shorter one analyses the first instance alone and
#: then, correctly, the study again).
QUIET = 2.0


def _settle(served: ServedHub, study: str, runs: int) -> None:
    """Several quiet periods pass and no further run starts."""
    time.sleep(2.5 * QUIET)
    assert len(wait_for_runs(served, study, runs)) == runs


def test_new_instances_supersede_a_preliminary_report_never_a_signed_one(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with imaging_hub(
        sqlite_url, tmp_path, monkeypatch, offer_threshold="0", quiet_seconds=str(QUIET)
    ) as served:
        datasets = phantom_study(4)
        batches = [datasets[:2], datasets[2:3], datasets[3:]]
        assert storescu(served, "CT_A", write(tmp_path / "1", batches[0])).returncode == 0
        study = study_id(served, str(datasets[0].StudyInstanceUID))
        (first,) = wait_for_runs(served, study)
        assert first.status == "done", first.reason
        assert first.instances == 2, "the first storescu's instances were analysed apart"
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


def _region(finding: dict[str, Any]) -> tuple[str, str | None, str | None]:
    parts = {c["code"]["coding"][0]["code"]: c["valueString"] for c in finding["component"]}
    box = parts.get("bounding-box")
    return finding["code"]["coding"][0]["code"], parts["sop-instance-uid"] if box else None, box


def test_decisions_on_a_superseded_report_are_carried_over(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with imaging_hub(
        sqlite_url, tmp_path, monkeypatch, offer_threshold="0", quiet_seconds=str(QUIET)
    ) as served:
        datasets = phantom_study(3)
        assert storescu(served, "CT_A", write(tmp_path / "1", datasets[:2])).returncode == 0
        study = study_id(served, str(datasets[0].StudyInstanceUID))
        (first,) = wait_for_runs(served, study)
        assert first.status == "done", first.reason
        decided: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
        with served.http("clinician-a") as a:
            old = _fhir(a, f"DiagnosticReport/{first.report}")
            assert len(old["result"]) == 2  # both labels offered (threshold 0)
            approve, decline = (_fhir(a, e["reference"]) for e in old["result"])
            approve["status"] = "final"
            decline["status"] = "cancelled"
            decline["note"] = [{"text": "rib shadow"}]
            for finding in (approve, decline):
                updated = a.put(f"/fhir/Observation/{finding['id']}", json=finding)
                assert updated.status_code == 200, updated.text
                decided[_region(finding)] = updated.json()
                stamp = updated.json()["extension"][0]
                assert stamp["extension"][0] == {"url": "by", "valueString": "user:clin-a"}
            # the record of who decided is the hub's: an update cannot rewrite it
            forged = decided[_region(approve)]
            original = forged["extension"]
            forged = {**forged, "extension": [{"url": original[0]["url"], "valueString": "x"}]}
            updated = a.put(f"/fhir/Observation/{forged['id']}", json=forged)
            assert updated.status_code == 200, updated.text
            assert updated.json()["extension"] == original
            decided[_region(approve)] = updated.json()

        # a late instance: the unsigned report is superseded; matching findings keep their
        # decisions, with a note naming the superseded report and who decided
        assert storescu(served, "CT_A", write(tmp_path / "2", datasets[2:])).returncode == 0
        second = next(r for r in wait_for_runs(served, study, 2) if r.id != first.id)
        assert second.status == "done", second.reason
        with served.http("clinician-a") as a:
            new = _fhir(a, f"DiagnosticReport/{second.report}")
            assert new["status"] == "preliminary"
            findings = [_fhir(a, e["reference"]) for e in new["result"]]
            provenance = a.get(
                "/fhir/Provenance", params={"target": f"DiagnosticReport/{second.report}"}
            ).json()["entry"][0]["resource"]
            for earlier in decided.values():
                assert _fhir(a, f"Observation/{earlier['id']}")["status"] == "entered-in-error"
        sources = {
            e["what"]["reference"]: e["what"]["display"]
            for e in provenance["entity"]
            if e["what"]["reference"].startswith("Observation/")
        }
        carried = 0
        for finding in findings:
            earlier = decided.get(_region(finding))
            if earlier is None:  # a new finding (another image or box): to be decided afresh
                assert finding["status"] == "preliminary" and "note" not in finding
                continue
            carried += 1
            assert finding["status"] == earlier["status"]
            notes = [n["text"] for n in finding["note"]]
            assert notes[:-1] == [n["text"] for n in earlier.get("note", [])]
            assert f"DiagnosticReport/{first.report}" in notes[-1]
            assert f"Observation/{earlier['id']}" in notes[-1] and "user:clin-a" in notes[-1]
            assert finding["extension"] == earlier["extension"]  # who decided, and when
            version = f"Observation/{earlier['id']}/_history/{earlier['meta']['versionId']}"
            assert sources[version] == (
                f"decision ({earlier['status']}) carried over to Observation/{finding['id']}"
            )
        assert carried >= 1  # the diffuse opacity of the first image is found again
        assert len(sources) == carried


def test_a_decision_carries_over_only_to_the_same_code_image_and_box() -> None:
    from fhirhub.plugins.imaging_ai.fhir_output import Decision, carry_over

    def finding(code: str, sop: str, box: str | None) -> dict[str, Any]:
        components = [("sop-instance-uid", sop)] + ([("bounding-box", box)] if box else [])
        return {
            "status": "preliminary",
            "code": {"coding": [{"system": "urn:x", "code": code}]},
            "component": [
                {"code": {"coding": [{"code": name}]}, "valueString": value}
                for name, value in components
            ],
        }

    def decision(region: tuple[str, str | None, str | None]) -> Decision:
        return Decision(
            "Observation/1/_history/2", "9", region, "cancelled", [{"text": "no"}], None
        )

    # another box, another image, another code: a new finding, left undecided
    for region in [
        ("urn:x|a", "1.2", "0 0 9 9"),
        ("urn:x|a", "1.3", "0 0 5 5"),
        ("urn:x|b", "1.2", "0 0 5 5"),
    ]:
        resource = finding("a", "1.2", "0 0 5 5")
        assert carry_over(resource, [decision(region)]) is None
        assert resource["status"] == "preliminary"
    # the same code, image and box; the same code when neither has a region
    for resource, region in [
        (finding("a", "1.2", "0 0 5 5"), ("urn:x|a", "1.2", "0 0 5 5")),
        (finding("a", "1.4", None), ("urn:x|a", None, None)),
    ]:
        carried = [decision(region)]
        assert carry_over(resource, carried) is not None and carried == []
        assert resource["status"] == "cancelled"
        assert resource["note"][1]["authorString"] == "fhirhub imaging_ai"
        assert (
            resource["note"][0] == {"text": "no"}
            and "DiagnosticReport/9" in resource["note"][1]["text"]
        )


def test_the_signed_report_gives_the_reason_not_the_carry_over_note() -> None:
    from fhirhub.plugins.imaging_ai.fhir_output import Decision, carry_over
    from fhirhub.plugins.imaging_ai.render import render_html

    finding: dict[str, Any] = {
        "status": "preliminary",
        "code": {"coding": [{"system": "urn:x", "code": "a"}], "text": "Focal opacity"},
        "valueQuantity": {"value": 61.0, "unit": "%"},
        "component": [],
    }
    decision = Decision(
        "Observation/1/_history/2",
        "9",
        ("urn:x|a", None, None),
        "cancelled",
        [{"text": "rib shadow"}],
        None,
    )
    assert carry_over(finding, [decision]) is decision
    html = render_html({"status": "final"}, [finding], "Dr A", "2026-12-07T10:00:00Z")
    assert "rib shadow" in html and "carried over" not in html
