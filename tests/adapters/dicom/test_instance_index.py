"""The instance catalogue answers C-FIND / QIDO matching (PS3.4 C.2.2.2) at every level."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from fhirhub.adapters.dicom.instance_index import (
    ALL_TENANTS,
    InstanceIndex,
    QueryError,
    TenantView,
    index_values,
)
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
    patients = index.find(ALL_TENANTS, "PATIENT", {})
    assert {p["PatientID"] for p in patients} == {"77654033", "98890234", "12345678"}
    studies = index.find(ALL_TENANTS, "STUDY", {})
    assert sum(s["NumberOfStudyRelatedInstances"] for s in studies) == total
    study = next(
        s for s in studies if s["PatientID"] == "77654033" and "CR" in s["ModalitiesInStudy"]
    )
    series = index.find(ALL_TENANTS, "SERIES", {"StudyInstanceUID": study["StudyInstanceUID"]})
    assert len(series) == study["NumberOfStudyRelatedSeries"] == 3
    assert all(s["Modality"] == "CR" for s in series)
    images = index.find(ALL_TENANTS, "IMAGE", {"SeriesInstanceUID": series[0]["SeriesInstanceUID"]})
    assert len(images) == series[0]["NumberOfSeriesRelatedInstances"]


def test_matching_kinds(index: InstanceIndex) -> None:
    assert {s["PatientID"] for s in index.find(ALL_TENANTS, "STUDY", {"PatientID": "7765*"})} == {
        "77654033"
    }
    assert index.find(ALL_TENANTS, "STUDY", {"PatientID": "7765403?"})
    assert not index.find(ALL_TENANTS, "STUDY", {"PatientID": "7765"})
    studies = index.find(ALL_TENANTS, "STUDY", {})
    two = "\\".join(s["StudyInstanceUID"] for s in studies[:2])
    assert len(index.find(ALL_TENANTS, "STUDY", {"StudyInstanceUID": two})) == 2
    dates = sorted(s["StudyDate"] for s in studies if s["StudyDate"])
    low = dates[0]
    assert index.find(ALL_TENANTS, "STUDY", {"StudyDate": f"{low}-"})
    assert index.find(ALL_TENANTS, "STUDY", {"StudyDate": f"-{low}"})
    assert not index.find(ALL_TENANTS, "STUDY", {"StudyDate": "30000101-"})
    assert len(index.find(ALL_TENANTS, "STUDY", {}, limit=1)) == 1
    with pytest.raises(QueryError):
        index.find(ALL_TENANTS, "STUDY", {"SOPInstanceUID": "1.2"})
    with pytest.raises(QueryError):
        index.find(ALL_TENANTS, "SERIES", {"SeriesNumber": "x"})


def test_instances_for_retrieve(index: InstanceIndex) -> None:
    study = index.find(ALL_TENANTS, "STUDY", {"PatientID": "12345678"})[0]
    found = index.instances_matching(
        ALL_TENANTS, "STUDY", {"StudyInstanceUID": study["StudyInstanceUID"]}
    )
    assert len(found) == study["NumberOfStudyRelatedInstances"]
    assert index.instances(ALL_TENANTS, study["StudyInstanceUID"])[0].digest == "d" * 64


def test_each_tenant_has_its_own_row_for_one_sop_instance(tmp_path: Path) -> None:
    """Keyed by (tenant, SOP Instance UID): a second tenant's copy is a second row."""
    index = InstanceIndex(tmp_path / "index.db")
    path = dicomdir_files()[0]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    values = index_values(ds, headers_from_dataset(ds))
    for tenant, digest in (("org-a", "a" * 64), ("org-b", "b" * 64)):
        index.upsert(
            values, transfer_syntax="1.2.840.10008.1.2.1", digest=digest, size=1, tenant=tenant
        )
    study = str(ds.StudyInstanceUID)
    assert [i.digest for i in index.instances(TenantView("org-a"), study)] == ["a" * 64]
    assert [i.digest for i in index.instances(TenantView("org-b"), study)] == ["b" * 64]
    assert index.instances(TenantView("org-c"), study) == []
    assert len(index.instances(ALL_TENANTS, study)) == 2
    assert index.find(TenantView("org-a"), "STUDY", {})[0]["NumberOfStudyRelatedInstances"] == 1


def test_a_catalogue_keyed_by_sop_instance_alone_is_migrated(tmp_path: Path) -> None:
    """Rows of the old layout keep their tenant, or get the default tenant they were
    recorded for in FHIR."""
    import sqlite3

    path = tmp_path / "index.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE instance (study_uid TEXT, series_uid TEXT, sop_class_uid TEXT, "
            "sop_uid TEXT PRIMARY KEY, transfer_syntax TEXT NOT NULL, digest TEXT NOT NULL, "
            "size INTEGER NOT NULL, recorded INTEGER NOT NULL DEFAULT 0, tenant TEXT, "
            "stored_at REAL NOT NULL DEFAULT (julianday('now')))"
        )
        conn.executemany(
            "INSERT INTO instance (study_uid, series_uid, sop_class_uid, sop_uid, "
            "transfer_syntax, digest, size, recorded, tenant) VALUES (?,?,?,?,?,?,?,1,?)",
            [
                ("1.2", "1.2.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.1.1", "x", "d" * 64, 1, None),
                ("1.3", "1.3.1", "1.2.840.10008.5.1.4.1.1.2", "1.3.1.1", "x", "e" * 64, 1, "org-b"),
            ],
        )
    index = InstanceIndex(path, default_tenant="org-a")
    assert [i.sop_uid for i in index.instances(TenantView("org-a"), "1.2")] == ["1.2.1.1"]
    assert [i.sop_uid for i in index.instances(TenantView("org-b"), "1.3")] == ["1.3.1.1"]
    assert index.instances(TenantView("org-a"), "1.3") == []
    index.close()
    assert InstanceIndex(path).count() == 2  # opened again: nothing migrated twice


def test_the_association_ae_titles_are_catalogued_and_added_to_an_older_catalogue(
    tmp_path: Path,
) -> None:
    """C-STORE's calling and called AE titles travel with the row (routing reads them); a
    catalogue from before they were kept gains the columns, its rows knowing none."""
    import sqlite3

    path = tmp_path / "index.db"
    ds = pydicom.dcmread(dicomdir_files()[0], stop_before_pixels=True)
    values = index_values(ds, headers_from_dataset(ds))
    study = str(ds.StudyInstanceUID)
    index = InstanceIndex(path)
    index.upsert(values, transfer_syntax="x", digest="a" * 64, size=1, tenant="org-a")
    index.close()
    with sqlite3.connect(path) as conn:  # the layout before the AE titles were kept
        conn.execute("ALTER TABLE instance DROP COLUMN calling_aet")
        conn.execute("ALTER TABLE instance DROP COLUMN called_aet")
    index = InstanceIndex(path)
    (old,) = index.instances(TenantView("org-a"), study)
    assert (old.calling_aet, old.called_aet) == (None, None)
    index.upsert(
        values,
        transfer_syntax="x",
        digest="b" * 64,
        size=1,
        tenant="org-b",
        calling_aet="XRAY_WARD3",
        called_aet="AI_CHEST",
    )
    (new,) = index.instances(TenantView("org-b"), study)
    assert (new.calling_aet, new.called_aet, new.digest) == ("XRAY_WARD3", "AI_CHEST", "b" * 64)
    index.close()
