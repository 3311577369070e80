"""Synthetic chest-radiograph-like phantoms, made deterministically from a seed.

Why synthetic: no openly licensed, labelled radiographs ship inside any registry package this
project may install, and nothing may be downloaded at run time. The shipped demonstration model
(``models/synthetic-opacity``) is trained and validated on these phantoms by
``tools/train_imaging_model.py``; the tests, the demo study and the benchmark use them too.
They look only roughly like a chest radiograph (two dark lung fields in a brighter body, rib
shadows, noise) and carry two independent findings:

* ``focal-opacity``: a small round bright spot (a nodule-like shape, 4-8 px sigma at 256 px);
* ``diffuse-opacity``: a large faint blurred bright area (20-34 px sigma).

A model trained on them says nothing about real patients.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

SIZE = 256
LABELS = ("focal-opacity", "diffuse-opacity")
#: Digital X-Ray Image Storage - For Presentation (PS3.4 B.5)
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


@dataclass(frozen=True)
class Phantom:
    image: np.ndarray  # float32, SIZE x SIZE, values in [0, 1]
    labels: tuple[bool, bool]  # (focal, diffuse)
    centres: tuple[tuple[int, int] | None, tuple[int, int] | None]  # (row, col) per finding


def _lungness(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """1 inside the two lung fields, 0 outside, with soft (sigmoid) edges as on a film."""
    r2 = np.minimum(
        ((yy - 130) / 85) ** 2 + ((xx - 64) / 38) ** 2,
        ((yy - 130) / 85) ** 2 + ((xx - 192) / 38) ** 2,
    )
    return (1 / (1 + np.exp(-(1 - r2) / 0.3))).astype(np.float32)


def phantom(rng: np.random.Generator, focal: bool, diffuse: bool) -> Phantom:
    """One phantom with the findings asked for, shapes and contrasts drawn from ``rng``."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    lungs = _lungness(yy, xx)
    image = 0.62 - 0.32 * lungs
    # soft edges, ribs, a gradient and noise
    image += 0.04 * np.sin(yy / rng.uniform(9, 13) + rng.uniform(0, 6.28)) * lungs
    image += rng.uniform(-0.05, 0.05) * (xx / SIZE - 0.5)
    centres: list[tuple[int, int] | None] = [None, None]
    lung_points = np.argwhere(lungs > 0.9)
    if focal:
        r, c = lung_points[rng.integers(len(lung_points))]
        sigma, amplitude = rng.uniform(4, 8), rng.uniform(0.05, 0.22)
        image += amplitude * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * sigma**2))
        centres[0] = (int(r), int(c))
    if diffuse:
        r, c = lung_points[rng.integers(len(lung_points))]
        sigma, amplitude = rng.uniform(20, 34), rng.uniform(0.06, 0.18)
        image += amplitude * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * sigma**2))
        centres[1] = (int(r), int(c))
    image += rng.normal(0, 0.03, size=image.shape).astype(np.float32)
    return Phantom(
        np.clip(image, 0, 1).astype(np.float32), (focal, diffuse), (centres[0], centres[1])
    )


def phantom_set(seed: int, count: int) -> list[Phantom]:
    """``count`` phantoms, each finding present with probability one half, independently."""
    rng = np.random.default_rng(seed)
    return [phantom(rng, bool(rng.integers(2)), bool(rng.integers(2))) for _ in range(count)]


def to_dataset(
    item: Phantom,
    *,
    study_uid: str,
    series_uid: str,
    instance_number: int = 1,
    patient_id: str = "SYNTH-1",
    patient_name: str = "Synthetic^Phantom",
    issuer: str | None = None,
    accession: str | None = None,
) -> Dataset:
    """A DX "for presentation" instance holding the phantom as 12-bit pixels (MONOCHROME2,
    window centre 2048 width 4096), body part CHEST."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(DX_FOR_PRESENTATION)
    sop_uid = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.PatientID = patient_id
    if issuer:
        ds.IssuerOfPatientID = issuer
    ds.PatientName = patient_name
    ds.StudyDate = "20261201"
    ds.StudyDescription = "Synthetic chest phantom"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    if accession:
        ds.AccessionNumber = accession
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.Rows = ds.Columns = SIZE
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.PixelData = np.round(item.image * 4095).astype(np.uint16).tobytes()
    return ds


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()
