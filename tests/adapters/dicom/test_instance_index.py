"""The instance catalogue answers C-FIND / QIDO matching (PS3.4 C.2.2.2) at every level."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from fhirhub.adapters.dicom.instance_index import InstanceIndex, QueryError, index_values
from fhirhub.adapters.dicom.mapping import headers_from_dataset
from tests.adapters.dicom.conftest import dicomdir_files


@pytest.fixture
def index(tmp_path: Path) -> InstanceIndex:
    index = InstanceIndex(tmp_path / "index.db")
    for path in dicomdir_files():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        h = headers_from_dataset(ds)
        index.upsert(
            index_values(ds, h), transfer_syntax="1.2.840.10008.1.2.1", digest="d" * 64, size=1
        )
    return index


def test_levels_and_counts(index: InstanceIndex) -> None:
    total = len(dicomdir_files())
    assert index.count() == total
    patients = index.find("PATIENT", {})
    assert {p["PatientID"] for p in patients} == {"77654033", "98890234", "12345678"}
    studies = index.find("STUDY", {})
    assert sum(s["NumberOfStudyRelatedInstances"] for s in studies) == total
    study = next(
        s for s in studies if s["PatientID"] == "77654033" and "CR" in s["ModalitiesInStudy"]
    )
    series = index.find("SERIES", {"StudyInstanceUID": study["StudyInstanceUID"]})
    assert len(series) == study["NumberOfStudyRelatedSeries"] == 3
    assert all(s["Modality"] == "CR" for s in series)
    images = index.find("IMAGE", {"SeriesInstanceUID": series[0]["SeriesInstanceUID"]})
    assert len(images) == series[0]["NumberOfSeriesRelatedInstances"]


def test_matching_kinds(index: InstanceIndex) -> None:
    assert {s["PatientID"] for s in index.find("STUDY", {"PatientID": "7765*"})} == {"77654033"}
    assert index.find("STUDY", {"PatientID": "7765403?"})
    assert not index.find("STUDY", {"PatientID": "7765"})
    studies = index.find("STUDY", {})
    two = "\\".join(s["StudyInstanceUID"] for s in studies[:2])
    assert len(index.find("STUDY", {"StudyInstanceUID": two})) == 2
    dates = sorted(s["StudyDate"] for s in studies if s["StudyDate"])
    low = dates[0]
    assert index.find("STUDY", {"StudyDate": f"{low}-"})
    assert index.find("STUDY", {"StudyDate": f"-{low}"})
    assert not index.find("STUDY", {"StudyDate": "30000101-"})
    assert len(index.find("STUDY", {}, limit=1)) == 1
    with pytest.raises(QueryError):
        index.find("STUDY", {"SOPInstanceUID": "1.2"})
    with pytest.raises(QueryError):
        index.find("SERIES", {"SeriesNumber": "x"})


def test_instances_for_retrieve(index: InstanceIndex) -> None:
    study = index.find("STUDY", {"PatientID": "12345678"})[0]
    found = index.instances_matching("STUDY", {"StudyInstanceUID": study["StudyInstanceUID"]})
    assert len(found) == study["NumberOfStudyRelatedInstances"]
    assert index.instances(study["StudyInstanceUID"])[0].digest == "d" * 64
