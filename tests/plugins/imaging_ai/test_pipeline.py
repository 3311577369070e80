"""A study in by dcmtk's storescu, a preliminary report out, for the tenant that stored it."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

from fhirhub.sdk import (
    acting_as,
    dicom_instances,
    read_dicom_instance,
    system_for,
    validation_issues,
)
from tests.plugins.imaging_ai.helpers import (
    imaging_hub,
    phantom_study,
    study_id,
    wait_for_runs,
    write,
)
from tests.security.dicom_hub import storescu


def test_storescu_study_gets_a_preliminary_report_for_its_tenant_only(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A quiet period long enough that one storescu's three instances are one arrival on a
    # loaded machine (0.5 s split them once: a second run stored a second presentation state).
    with imaging_hub(sqlite_url, tmp_path, monkeypatch, quiet_seconds="2") as served:
        datasets = phantom_study(3)
        sent = storescu(served, "CT_A", write(tmp_path / "in", datasets))
        assert sent.returncode == 0, sent.stderr
        study = study_id(served, str(datasets[0].StudyInstanceUID))
        (run,) = wait_for_runs(served, study)
        assert run.status == "done", run.reason
        assert run.instances == 3
        with served.http("clinician-a") as a:
            report = a.get(f"/fhir/DiagnosticReport/{run.report}").json()
            assert report["status"] == "preliminary"
            assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study}"}]
            findings = [a.get(f"/fhir/{r['reference']}").json() for r in report["result"]]
            provenance = a.get(
                "/fhir/Provenance", params={"target": f"DiagnosticReport/{run.report}"}
            ).json()
        assert not validation_issues(report)
        assert len(findings) >= 1
        for finding in findings:
            assert not validation_issues(finding), validation_issues(finding)
            assert finding["status"] == "preliminary"
            assert finding["derivedFrom"] == [{"reference": f"ImagingStudy/{study}"}]
            assert finding["valueQuantity"]["unit"] == "%"
            assert finding["device"]["reference"].startswith("Device/")
        assert len(provenance["entry"]) == 1
        # the SDK's archive access: the study's tenant reads the pixels, the other one sees nothing
        with acting_as(system_for("org-a")):
            first = dicom_instances(served.hub, str(datasets[0].StudyInstanceUID))[0]
            stored = pydicom.dcmread(io.BytesIO(read_dicom_instance(served.hub, first)))
        assert stored.SOPInstanceUID in {str(ds.SOPInstanceUID) for ds in datasets}
        with acting_as(system_for("org-b")):
            assert dicom_instances(served.hub, str(datasets[0].StudyInstanceUID)) == []
        # the regions went back to the archive as DICOM SEG, named by the findings, and as
        # one SR measurement report
        segs = {
            c["valueString"].split()[0]
            for f in findings
            for c in f["component"]
            if c["code"]["coding"][0]["code"] == "segmentation"
        }
        assert segs
        uid = str(datasets[0].StudyInstanceUID)
        series = served.dicomweb("clinician-a", f"/studies/{uid}/series").json()
        modalities = {s["00080060"]["Value"][0] for s in series}
        assert modalities == {"DX", "SEG", "SR", "PR"}
        # the GSPS: stored for org-a only, drawing each boxed finding over its image
        (gsps_series,) = [s for s in series if s["00080060"]["Value"][0] == "PR"]
        gsps_uid = gsps_series["0020000E"]["Value"][0]
        with acting_as(system_for("org-a")):
            (gsps_ref,) = dicom_instances(served.hub, uid, gsps_uid)
            gsps = pydicom.dcmread(io.BytesIO(read_dicom_instance(served.hub, gsps_ref)))
        with acting_as(system_for("org-b")):
            assert dicom_instances(served.hub, uid, gsps_uid) == []
        assert gsps.SOPClassUID == "1.2.840.10008.5.1.4.1.1.11.1"
        drawn = {
            (
                a.ReferencedImageSequence[0].ReferencedSOPInstanceUID,
                tuple(int(v) for v in g.GraphicData),
            )
            for a in gsps.GraphicAnnotationSequence
            for g in a.GraphicObjectSequence
        }
        boxed = set()
        for f in findings:
            parts = {c["code"]["coding"][0]["code"]: c["valueString"] for c in f["component"]}
            if "bounding-box" in parts:
                x0, y0, x1, y1 = map(int, parts["bounding-box"].split())
                outline = (x0, y0, x1 + 1, y0, x1 + 1, y1 + 1, x0, y1 + 1, x0, y0)
                boxed.add((parts["sop-instance-uid"], outline))
        assert boxed and drawn == boxed
        referenced = {
            i.ReferencedSOPInstanceUID
            for s in gsps.ReferencedSeriesSequence
            for i in s.ReferencedImageSequence
        }
        assert referenced == {sop for sop, _ in boxed}
        for seg_uid in segs:
            found = served.dicomweb("clinician-a", "/instances", SOPInstanceUID=seg_uid)
            assert found.status_code == 200
            assert (
                served.dicomweb("clinician-b", "/instances", SOPInstanceUID=seg_uid).status_code
                == 204
            )
        with served.http("clinician-b") as b:
            assert b.get(f"/fhir/DiagnosticReport/{run.report}").status_code == 404
            assert b.get("/plugins/imaging_ai/runs").json()["runs"] == []
        with served.http("clinician-a") as a:
            assert [r["id"] for r in a.get("/plugins/imaging_ai/runs").json()["runs"]] == [run.id]
        patient = report["subject"]["reference"].rpartition("/")[2]
        served.add_patient_caller("app-a", "org-a", patient, "patient/*.rs")
        with served.http("app-a") as app:
            assert app.get("/plugins/imaging_ai/runs").status_code == 403
            # the patient's own app reads its report like any other
            assert app.get(f"/fhir/DiagnosticReport/{run.report}").status_code == 200


def test_routes_select_by_modality_body_part_aet_and_tenant() -> None:
    from fhirhub.plugins.imaging_ai.analysis import SeriesInput, plan
    from fhirhub.plugins.imaging_ai.models import SHIPPED, OnnxModel, load_card
    from fhirhub.plugins.imaging_ai.settings import Route

    model = OnnxModel(load_card(SHIPPED))

    def series(modality: str, aet: str, body: str = "CHEST") -> SeriesInput:
        return SeriesInput(f"1.2.{modality}.{aet}", modality, body, aet, None, [])

    chest = [series("DX", "WARD3"), series("DX", "ER"), series("CT", "WARD3")]
    everything = plan(model, [Route()], chest, "org-a")
    assert [s.uid for s in everything[0]] == ["1.2.DX.WARD3", "1.2.DX.ER"] and not everything[1]
    by_aet = plan(model, [Route(model="*", aets=["WARD3"])], chest, "org-a")
    assert [s.uid for s in by_aet[0]] == ["1.2.DX.WARD3"] and not by_aet[1]
    named = plan(model, [Route(model="synthetic-opacity", aets=["WARD3"])], chest, "org-a")
    assert [s.uid for s in named[0]] == ["1.2.DX.WARD3"]
    assert len(named[1]) == 1 and "modality CT" in named[1][0]
    assert plan(model, [Route(tenants=["org-b"])], chest, "org-a") == ([], [])
    assert plan(model, [Route(body_parts=["HEAD"])], chest, "org-a") == ([], [])
    assert plan(model, [Route(model="other")], chest, "org-a") == ([], [])
