"""The demo study: when the store holds the shipped demo patients (``make run``), one
synthetic chest phantom study for Amara Okafor-Lindqvist (MRN 100234) is stored in the DICOM
archive once, through the SDK like any STOW-RS upload, so the analysis pipeline produces a
preliminary report the UI page shows. Its pixels are made from a fixed seed
(:mod:`synthetic`), no file is shipped."""

from __future__ import annotations

import logging

import numpy as np
from pydicom.uid import UID

from fhirhub.plugins.imaging_ai import synthetic
from fhirhub.sdk import SYSTEM, FhirError, Hub, acting_as, match, store_dicom_instance

log = logging.getLogger("fhirhub.imaging_ai")

DEMO_MRN_SYSTEM = "https://fhirhub.example.org/demo/mrn"
DEMO_MRN = "100234"
#: Fixed UIDs under the "2.25" (UUID-derived) root, so seeding is idempotent.
DEMO_STUDY_UID = "2.25.275741889470211018906413716950281739611"
DEMO_SERIES_UID = "2.25.275741889470211018906413716950281739612"
DEMO_SEED = 11


def demo_datasets() -> list[bytes]:
    rng = np.random.default_rng(DEMO_SEED)
    items = [synthetic.phantom(rng, True, False), synthetic.phantom(rng, False, True)]
    files = []
    for number, item in enumerate(items, start=1):
        ds = synthetic.to_dataset(
            item,
            study_uid=DEMO_STUDY_UID,
            series_uid=DEMO_SERIES_UID,
            instance_number=number,
            patient_id=DEMO_MRN,
            patient_name="Okafor-Lindqvist^Amara",
            issuer=DEMO_MRN_SYSTEM,
            accession="DEMO-CXR-1",
        )
        sop_uid = UID(f"{DEMO_SERIES_UID}.{number}")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        files.append(synthetic.part10(ds))
    return files


def seed_demo_study(hub: Hub) -> str | None:
    """Store the demo study if the demo patients are there and it is not; returns the
    ImagingStudy id when it was stored now."""
    with acting_as(SYSTEM):
        if not match(hub, "Patient", f"identifier={DEMO_MRN_SYSTEM}|{DEMO_MRN}"):
            return None
        criteria = f"identifier=urn:dicom:uid|urn:oid:{DEMO_STUDY_UID}"
        if match(hub, "ImagingStudy", criteria):
            return None
        try:
            for data in demo_datasets():
                store_dicom_instance(hub, data)
        except FhirError as exc:
            log.warning("Demo imaging study not stored: %s", exc)
            return None
        ids = match(hub, "ImagingStudy", criteria)
    log.info("Demo imaging study stored: ImagingStudy/%s", ids[0] if ids else "?")
    return ids[0] if ids else None
