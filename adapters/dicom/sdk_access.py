"""The archive as imaging plugins see it (``fhirhub.sdk.DicomArchiveAccess``), answered to
the ``dicom_archive`` hook: the same visibility as DICOMweb (:func:`dicomweb.caller_view`),
the same store path as STOW-RS (:func:`dicomweb.stow_tenant`)."""

from __future__ import annotations

from fhirhub.adapters.dicom.archive import DicomArchive, InstanceRejected, read_part10
from fhirhub.adapters.dicom.content_store import StoreUnavailable
from fhirhub.adapters.dicom.dicomweb import caller_view, stow_tenant
from fhirhub.adapters.dicom.instance_index import StoredInstance
from fhirhub.sdk import DicomInstanceRef, FhirError, not_found


def _ref(instance: StoredInstance) -> DicomInstanceRef:
    return DicomInstanceRef(
        study_uid=instance.study_uid,
        series_uid=instance.series_uid,
        sop_uid=instance.sop_uid,
        sop_class_uid=instance.sop_class_uid,
        transfer_syntax=instance.transfer_syntax,
        calling_aet=instance.calling_aet,
        called_aet=instance.called_aet,
    )


class ArchiveAccess:
    """:class:`fhirhub.sdk.DicomArchiveAccess` over one :class:`DicomArchive`."""

    def __init__(self, archive: DicomArchive) -> None:
        self.archive = archive

    def instances(self, study_uid: str, series_uid: str | None = None) -> list[DicomInstanceRef]:
        return [_ref(i) for i in self.archive.index.instances(caller_view(), study_uid, series_uid)]

    def read(self, instance: DicomInstanceRef) -> bytes:
        found = self.archive.index.instances(
            caller_view(), instance.study_uid, instance.series_uid, instance.sop_uid
        )
        if not found:
            raise not_found(f"No instance {instance.sop_uid} in this archive")
        try:
            return self.archive.read_file(found[0].digest)
        except StoreUnavailable as exc:
            raise FhirError(503, f"The DICOM object store is unavailable: {exc}") from exc

    def store(self, part10: bytes) -> DicomInstanceRef:
        tenant = stow_tenant()
        try:
            ds = read_part10(part10)
            result = self.archive.store_part10(part10, ds, tenant=tenant)
        except InstanceRejected as exc:
            status = 503 if exc.status == 0xA700 else 400
            raise FhirError(status, f"DICOM instance refused: {exc}", code="invalid") from exc
        h = result.headers
        syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
        return DicomInstanceRef(h.study_uid, h.series_uid, h.sop_uid, h.sop_class_uid, syntax)
