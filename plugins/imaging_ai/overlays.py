"""The model's regions as DICOM Segmentation objects (``highdicom``), stored back in the
archive beside the images so that any DICOM viewer shows them: one SEG per analysed image
that carries a finding's region, one binary segment per finding (its bounding box), in a new
series of the same study, with the model as the segment algorithm."""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from fhirhub.plugins.imaging_ai.fhir_output import Finding
from fhirhub.plugins.imaging_ai.models import ModelCard

log = logging.getLogger("fhirhub.imaging_ai")

#: Type 2 attributes highdicom copies from the source image (empty when the source has none).
_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
)
SERIES_NUMBER = 9901


def segmentation(card: ModelCard, source: Dataset, findings: list[Finding]) -> tuple[str, bytes]:
    """A SEG for ``findings`` (each with a box) on ``source``; returns its SOP Instance UID and
    Part 10 bytes. Segment *n* is ``findings[n - 1]``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    image = Dataset()
    image.update(source)
    image.file_meta = source.file_meta
    for keyword in _COPIED:
        if keyword not in image:
            setattr(image, keyword, "")
    rows, columns = int(source.Rows), int(source.Columns)
    mask = np.zeros((1, rows, columns, len(findings)), dtype=bool)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=card.id, version=card.version, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = []
    for number, finding in enumerate(findings, start=1):
        assert finding.box is not None
        x0, y0, x1, y1 = finding.box
        mask[0, y0 : y1 + 1, x0 : x1 + 1, number - 1] = True
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=f"{finding.label.display} {finding.probability * 100:.0f} %",
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=codes.SCT.Lesion,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
        )
    sop_uid = generate_uid()
    seg = hd.seg.Segmentation(
        source_images=[image],
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer="fhirhub imaging_ai",
        manufacturer_model_name=card.id,
        software_versions=card.version,
        device_serial_number="none",
        series_description=f"AI regions ({card.id} {card.version})",
    )
    buffer = io.BytesIO()
    seg.save_as(buffer)
    return sop_uid, buffer.getvalue()


def segmentations(
    card: ModelCard, sources: dict[str, Dataset], findings: list[Finding]
) -> list[tuple[str, bytes, list[Finding]]]:
    """One SEG per source image among the findings with a box; a SEG highdicom refuses is
    logged and left out (the findings keep their boxes in FHIR)."""
    by_image: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.box is not None and finding.sop_uid in sources:
            by_image.setdefault(finding.sop_uid, []).append(finding)
    made: list[tuple[str, bytes, list[Finding]]] = []
    for sop_uid, group in by_image.items():
        try:
            seg_uid, data = segmentation(card, sources[sop_uid], group)
        except Exception as exc:  # highdicom's checks on an unusual source image
            log.warning("No SEG for instance %s: %s", sop_uid, exc)
            continue
        made.append((seg_uid, data, group))
    return made


def describe(made: list[tuple[str, bytes, list[Finding]]]) -> dict[int, Any]:
    """finding id() -> (SEG SOP Instance UID, segment number), for the Observations."""
    return {
        id(finding): (seg_uid, number)
        for seg_uid, _data, group in made
        for number, finding in enumerate(group, start=1)
    }
