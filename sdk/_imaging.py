"""Pixel access for imaging plugins: the hub's DICOM archive through a small, typed,
tenant-checked interface, so that a plugin (an AI model, a viewer) never imports the DICOM
adapter. The archive is found through the ``dicom_archive`` hook; every call runs with the
current caller (``current_access()``) and sees exactly what DICOMweb would show that caller:
its tenant's instances (every tenant's for the system), and only its Patient's for a
patient-facing app. Another tenant's study answers like a missing one (an empty list, 404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from fhirhub.core.hub import Hub
from fhirhub.fhir_store.errors import FhirError


@dataclass(frozen=True)
class DicomInstanceRef:
    """One stored instance as the archive catalogues it. ``calling_aet`` and ``called_aet``
    are the AE titles of the C-STORE association that brought it (the modality's and the one
    it addressed, PS3.8 7.1.1.5-6); None when it came another way (STOW-RS, an upload, a
    derived object a plugin stored)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    calling_aet: str | None = None
    called_aet: str | None = None


@runtime_checkable
class DicomArchiveAccess(Protocol):
    """What the DICOM adapter offers imaging plugins (the ``dicom_archive`` hook's answer).
    Every method applies the current caller's visibility."""

    def instances(self, study_uid: str, series_uid: str | None = None) -> list[DicomInstanceRef]:
        """The visible instances of a study (series), ordered by series and instance number."""
        ...

    def read(self, instance: DicomInstanceRef) -> bytes:
        """The Part 10 bytes of a visible instance, as received; ``FhirError`` 404 otherwise,
        503 when the object store is unreachable."""
        ...

    def store(self, part10: bytes) -> DicomInstanceRef:
        """Store a Part 10 file for the caller's tenant, as STOW-RS does (the FHIR side
        committed on return); ``FhirError`` 400/409 for a file the archive refuses."""
        ...


def dicom_archive(hub: Hub) -> DicomArchiveAccess:
    """The hub's DICOM archive; 501 when no plugin keeps one (the DICOM adapter disabled)."""
    archive = hub.hook.dicom_archive(hub=hub)
    if archive is None:
        raise FhirError(501, "This hub keeps no DICOM archive", code="not-supported")
    return archive  # type: ignore[no-any-return]


def dicom_instances(
    hub: Hub, study_uid: str, series_uid: str | None = None
) -> list[DicomInstanceRef]:
    """The instances of a study (one series) the current caller may see."""
    return dicom_archive(hub).instances(study_uid, series_uid)


def read_dicom_instance(hub: Hub, instance: DicomInstanceRef) -> bytes:
    """The Part 10 bytes of one instance the current caller may see (404 otherwise)."""
    return dicom_archive(hub).read(instance)


def store_dicom_instance(hub: Hub, part10: bytes) -> DicomInstanceRef:
    """Store a Part 10 file (a derived object: a segmentation, a report) for the current
    caller's tenant; the caller needs create on ImagingStudy, as for STOW-RS."""
    return dicom_archive(hub).store(part10)
