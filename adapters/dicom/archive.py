"""Storing one DICOM instance: the file, the FHIR resources, the catalogue row.

Every source of instances (C-STORE, STOW-RS, C-MOVE imports from a remote PACS) ends here, so
the rules hold for all of them:

1. the Part 10 bytes are checked (the UIDs the mapping needs, pixel data not cut short) before
   anything is written; a bad instance leaves no trace;
2. the bytes go to the content-addressed store (:mod:`content_store`: files under the data
   directory, or an S3-API object store by URL), whole or not at all;
3. one FHIR transaction (:func:`mapping.transaction_bundle`) records Patient, Practitioner,
   ServiceRequest, Endpoint and the merged ImagingStudy through the interactions layer, in
   process (adapters never call the hub over HTTP);
4. the catalogue row (C-FIND, QIDO, retrieve) says whether FHIR has recorded the instance.
   (A file without a row is harmless: the content store dedupes it.)

Every instance is stored for one tenant (the calling AE's, the uploader's, else
``FHIRHUB_DEFAULT_TENANT``): its catalogue row is keyed by (tenant, SOP Instance UID) and its
FHIR resources are written and matched inside that tenant, so the same UIDs stored by two
tenants are two objects and two ImagingStudies, and neither store touches the other's.

Step 3 runs on the :mod:`recorder` thread, in batches per study; step 4 is written before it
with ``recorded = 0`` and flagged when the transaction commits. The ``If-Match`` on the merged
ImagingStudy catches a writer in another process, and the merge is retried.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from fhirhub.adapters.dicom.config import dicom_settings, object_store_url
from fhirhub.adapters.dicom.content_store import StoreUnavailable
from fhirhub.adapters.dicom.content_stores import open_content_store
from fhirhub.adapters.dicom.instance_index import InstanceIndex, index_values
from fhirhub.adapters.dicom.mapping import (
    CurrentStudy,
    InstanceHeaders,
    MissingAttribute,
    headers_from_dataset,
    study_identifier,
    token,
    transaction_bundle,
)
from fhirhub.adapters.dicom.recorder import StudyRecorder
from fhirhub.sdk import (
    SYSTEM,
    FhirError,
    Hub,
    HubLocal,
    acting_as,
    process_bundle,
    search,
    snapshot,
    system_for,
)

log = logging.getLogger("fhirhub.dicom")

#: How often a merge is retried after a concurrent update of the same ImagingStudy (412).
MERGE_ATTEMPTS = 5


class InstanceRejected(ValueError):
    """The instance cannot be stored; ``status`` is the C-STORE failure status to answer
    (PS3.4 Annex B.2.3: 0xA900 data set does not match SOP class, 0xC000 cannot understand,
    0xA700 out of resources)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StoredResult:
    headers: InstanceHeaders
    digest: str
    imaging_study: str | None  # "ImagingStudy/<id>", None when not waited for
    changed: bool  # False when the same bytes were already recorded


def check_pixel_data(ds: Dataset) -> None:
    """Native (uncompressed) pixel data must be as long as the image attributes say
    (PS3.5 8.1.1); a shorter value is a truncated file (pydicom's ``MR_truncated.dcm``)."""
    if "PixelData" not in ds:
        return
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and UID(syntax).is_compressed:
        return
    try:
        expected = (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("SamplesPerPixel", 1))
            * int(ds.get("NumberOfFrames", 1) or 1)
            * int(ds.BitsAllocated)
            + 7
        ) // 8
    except (AttributeError, TypeError, ValueError) as exc:
        raise InstanceRejected(0xA900, f"Image pixel module incomplete: {exc}") from exc
    actual = len(ds.PixelData)
    if actual < expected:
        raise InstanceRejected(
            0xC000, f"Pixel Data holds {actual} bytes, the image needs {expected}: truncated"
        )


def read_part10(data: bytes) -> Dataset:
    """Parse a Part 10 file (or a bare dataset with a meta header added by the caller)."""
    try:
        return pydicom.dcmread(io.BytesIO(data), force=False)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as exc:
        raise InstanceRejected(0xC000, f"Not a readable DICOM file: {exc}") from exc


class DicomArchive:
    """The DICOM node's storage: files, catalogue and FHIR, kept in step."""

    def __init__(self, hub: Hub, root: Path | None = None, *, dicomweb_address: str | None = None):
        self.hub = hub
        self.root = Path(root or Path(hub.settings.data_dir) / "dicom")
        # Same durability class as the store's SQLite WAL with synchronous=NORMAL:
        # survives a process kill, not a power loss; ``fsync = true`` buys the latter.
        self.files = open_content_store(
            object_store_url(hub.settings),
            self.root / "files",
            fsync=dicom_settings(hub.settings).fsync,
        )
        log.info("DICOM files in %s", self.files.describe())  # describe(): no credentials
        #: Whose instances arrive without a tenant (a "*" AE, a hub-wide admin's STOW-RS).
        self.default_tenant = str(hub.settings.default_tenant or "")
        self.index = InstanceIndex(self.root / "index.db", default_tenant=self.default_tenant)
        self.dicomweb_address = dicomweb_address
        self._study_ids: dict[tuple[str, str], str] = {}  # (tenant, Study UID) -> resource id
        self.recorder = StudyRecorder(self.record)
        self._requeue_unrecorded()

    def close(self) -> None:
        self.recorder.close()
        self.index.close()
        self.files.close()

    # -- writing ------------------------------------------------------------------------------

    def store_part10(
        self,
        data: bytes,
        ds: Dataset | None = None,
        *,
        wait: bool = True,
        tenant: str | None = None,
        calling_aet: str | None = None,
        called_aet: str | None = None,
    ) -> StoredResult:
        """Store a Part 10 file given as bytes for ``tenant`` (None or "": the default
        tenant); ``ds`` saves a second parse if the caller has already decoded it;
        ``calling_aet``/``called_aet`` name the C-STORE association it came by (catalogued
        with it). Raises
        :class:`InstanceRejected` for bad input. With ``wait`` the FHIR transaction has
        committed on return (its failure raises and un-stores the instance); without, it is
        queued (see :mod:`recorder`)."""
        if ds is None:
            ds = read_part10(data)
        try:
            headers = headers_from_dataset(ds)
        except MissingAttribute as exc:
            raise InstanceRejected(0xA900, str(exc)) from exc
        headers = dataclasses.replace(headers, tenant=tenant or self.default_tenant)
        try:
            check_pixel_data(ds)
            values = index_values(ds, headers)
        except InstanceRejected:
            raise
        except Exception as exc:  # a malformed element surfaces when its value is read
            raise InstanceRejected(0xC000, f"Cannot decode the data set: {exc}") from exc
        syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
        try:
            digest = hashlib.sha256(data).hexdigest()
            recorded = self.index.recorded_digest(headers.tenant, headers.sop_uid)
            if recorded == digest and self.files.exists(digest):
                return StoredResult(headers, digest, None, False)  # the same bytes again
            digest = self.files.put(data)
        except StoreUnavailable as exc:
            raise InstanceRejected(0xA700, f"Object store unavailable: {exc}") from exc
        except OSError as exc:
            raise InstanceRejected(0xA700, f"Cannot write the file: {exc}") from exc
        self.index.upsert(
            values,
            transfer_syntax=syntax,
            digest=digest,
            size=len(data),
            recorded=False,
            tenant=headers.tenant,
            calling_aet=calling_aet,
            called_aet=called_aet,
        )
        pending = self.recorder.submit(headers)
        if not wait:
            return StoredResult(headers, digest, None, True)
        try:
            reference = pending.wait()
        except Exception:
            self.index.delete(headers.tenant, headers.sop_uid)
            raise
        return StoredResult(headers, digest, reference, True)

    def drain(self, timeout: float = 120) -> bool:
        """Wait until every queued instance is recorded in FHIR."""
        return self.recorder.drain(timeout)

    def record(self, instances: Sequence[InstanceHeaders]) -> str:
        """Run the FHIR transaction for instances of one study and tenant, then flag their
        catalogue rows recorded under the study's Patient; return the ImagingStudy
        reference. Called by the recorder thread only."""
        tenant = instances[0].tenant
        if tenant:
            # Written for that tenant: labelled with it, and conditional matches (the patient
            # by its identifier, the study by its UID) stay inside it.
            with acting_as(system_for(tenant)):
                reference, patient = self._record(instances)
        else:
            reference, patient = self._record(instances)
        self.index.mark_recorded(tenant, [h.sop_uid for h in instances], patient)
        return reference

    def _record(self, instances: Sequence[InstanceHeaders]) -> tuple[str, str | None]:
        """(ImagingStudy reference, id of the Patient it names) after the transaction."""
        study_uid, tenant = instances[0].study_uid, instances[0].tenant
        for attempt in range(MERGE_ATTEMPTS):
            current = self.current_study(study_uid, tenant)
            # Untenanted, the system's conditional PUT would match another tenant's study
            # with this UID and replace it: create ours outright instead.
            conditional = (
                bool(tenant) or current is not None or not self._study_elsewhere(study_uid)
            )
            bundle = transaction_bundle(
                instances, current, self.dicomweb_address, conditional=conditional
            )
            if bundle is None:
                assert current is not None
                return f"ImagingStudy/{current.resource_id}", _patient_id(current.resource)
            try:
                response = process_bundle(self.hub, bundle)
            except FhirError as error:
                if error.status == 412 and attempt + 1 < MERGE_ATTEMPTS:
                    self._study_ids.pop((tenant, study_uid), None)
                    continue
                raise
            study_entry = next(
                entry
                for entry in bundle["entry"]
                if entry["resource"]["resourceType"] == "ImagingStudy"
            )
            location = next(
                entry["response"]["location"]
                for entry in response["entry"]
                if entry["response"].get("location", "").startswith("ImagingStudy/")
            )
            study_id = location.split("/")[1]
            self._study_ids[(tenant, study_uid)] = study_id
            subject = str(study_entry["resource"]["subject"]["reference"])
            if subject.startswith("urn:uuid:"):  # the Patient created or matched just now
                subject = _location_of(bundle, response, subject)
            return f"ImagingStudy/{study_id}", _patient_id({"subject": {"reference": subject}})
        raise AssertionError("unreachable")

    def _study_elsewhere(self, study_uid: str) -> bool:
        """Whether any ImagingStudy (any tenant: the system's view) has this UID."""
        identifier = ("identifier", token(study_identifier(study_uid)))
        with acting_as(SYSTEM):
            return bool(search(self.hub, "ImagingStudy", [identifier, ("_count", "1")]))

    def _requeue_unrecorded(self) -> None:
        """Instances stored before a crash but never recorded in FHIR go through again. An
        object store that cannot be reached now keeps them for the next opening: the bytes
        are not lost, only out of reach."""
        for sop_uid, digest, tenant in self.index.unrecorded():
            try:
                headers = headers_from_dataset(self.dataset(digest, stop_before_pixels=True))
                headers = dataclasses.replace(headers, tenant=tenant)
            except StoreUnavailable as exc:
                log.error("Unrecorded instance %s kept for the next start: %s", sop_uid, exc)
                continue
            except Exception as exc:
                log.error("Unrecorded instance %s unreadable, dropped: %s", sop_uid, exc)
                self.index.delete(tenant, sop_uid)
                continue
            self.recorder.submit(headers)

    def current_study(self, study_uid: str, tenant: str) -> CurrentStudy | None:
        """``tenant``'s stored ImagingStudy for a Study Instance UID (by cached id, else by
        search). Another tenant's study with the same UID is never returned, whoever asks."""
        owner = tenant or None  # the store's tenant column: NULL for no tenant
        key = (tenant, study_uid)
        with snapshot(self.hub) as tx:
            cached = self._study_ids.get(key)
            if cached is not None:
                candidates = [cached]
            else:
                query = f"identifier={token(study_identifier(study_uid))}"
                candidates = tx.match("ImagingStudy", query)
            for study_id in candidates:
                version = tx.current("ImagingStudy", study_id)
                if version is None or version.deleted or version.content is None:
                    continue
                if version.tenant != owner:
                    continue
                self._study_ids[key] = study_id
                return CurrentStudy(study_id, version.version_id, orjson.loads(version.content))
        self._study_ids.pop(key, None)
        return None

    # -- reading ------------------------------------------------------------------------------

    def read_file(self, digest: str) -> bytes:
        return self.files.get(digest)

    def dataset(self, digest: str, *, stop_before_pixels: bool = False) -> Dataset:
        with self.files.open(digest) as handle:
            return pydicom.dcmread(handle, stop_before_pixels=stop_before_pixels)

    def rebuild_index(self) -> int:
        """Re-create the catalogue from the stored files (after losing or moving it). An
        object store that cannot be reached fails it before the old catalogue is dropped."""
        if not self.files.check():
            raise StoreUnavailable(f"{self.files.describe()} cannot be reached")

        # The files do not say which tenant stored them: all go to the default tenant.
        def rows() -> Any:
            for digest, size in self.files.stored():
                try:
                    ds = self.dataset(digest, stop_before_pixels=True)
                    headers = headers_from_dataset(ds)
                except StoreUnavailable:
                    raise  # a partial catalogue would silently hide instances
                except Exception as exc:
                    log.warning("Skipping %s while rebuilding the DICOM index: %s", digest, exc)
                    continue
                syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
                yield index_values(ds, headers), syntax, digest, size

        return self.index.rebuild(rows(), tenant=self.default_tenant)


def _patient_id(resource: dict[str, Any]) -> str | None:
    """The id of the Patient an ImagingStudy's ``subject`` names (``Patient/<id>``)."""
    reference = str(resource.get("subject", {}).get("reference", ""))
    kind, _, rest = reference.partition("/")
    return rest.split("/")[0] if kind == "Patient" and rest else None


def _location_of(bundle: dict[str, Any], response: dict[str, Any], full_url: str) -> str:
    """Where a transaction put the entry with ``full_url`` (its response ``location``)."""
    for entry, answer in zip(bundle["entry"], response["entry"], strict=True):
        if entry.get("fullUrl") == full_url:
            return str(answer["response"].get("location", ""))
    return ""


#: Where the plugin's routes are mounted (core/http/app.py: /plugins/<name>) plus ours.
DICOMWEB_PATH = "/plugins/dicom/dicomweb"


def dicomweb_address(settings: Any) -> str:
    """The DICOMweb base URL ImagingStudy.endpoint advertises: the public base (FHIR base
    without ``/fhir``) if configured, else the listening host and port."""
    base = str(settings.base_url or "").rstrip("/")
    if base.endswith("/fhir"):
        base = base[: -len("/fhir")]
    if not base:
        base = f"http://{settings.host}:{settings.port}"
    return base + DICOMWEB_PATH


_ARCHIVE: HubLocal[DicomArchive] = HubLocal("dicom.archive")


def archive_for(hub: Hub) -> DicomArchive:
    """The hub's one archive (created on first use; shared by the SCP, DICOMweb and SCU)."""
    return _ARCHIVE.setdefault(
        hub, lambda: DicomArchive(hub, dicomweb_address=dicomweb_address(hub.settings))
    )


def existing_archive(hub: Hub) -> DicomArchive | None:
    """The hub's archive if something has used it, without creating one."""
    return _ARCHIVE.get(hub)


def close_archive(hub: Hub) -> None:
    archive = _ARCHIVE.pop(hub)
    if archive is not None:
        archive.close()
