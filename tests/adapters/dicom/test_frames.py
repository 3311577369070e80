"""WADO-RS frame retrieval (PS3.18 10.4.1.1.3): what OHIF and cornerstone load images with."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from fhirhub.adapters.dicom.archive import DicomArchive, archive_for
from fhirhub.adapters.dicom.dicomweb import parse_multipart
from fhirhub.core.hub import Hub, build_hub
from tests.adapters.dicom.conftest import TEST_FILES, node_settings
from tests.adapters.dicom.test_dicomweb import BASE, multipart

ANY = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.fixture
def web(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Hub, DicomArchive]]:
    from fhirhub.core.http.app import create_app

    hub = build_hub(node_settings(sqlite_url, tmp_path, port="off"))
    with TestClient(create_app(hub=hub)) as client:
        yield client, hub, archive_for(hub)
    hub.store.engine.dispose()


def store(client: TestClient, data: bytes) -> str:
    body, content_type = multipart([data])
    stored = client.post(f"{BASE}/studies", content=body, headers={"content-type": content_type})
    assert stored.status_code == 200, stored.text
    return str(stored.json()["00081199"]["Value"][0]["00081190"]["Value"][0])


def frames(client: TestClient, url: str, numbers: str, accept: str = ANY) -> list[bytes]:
    answer = client.get(f"{url}/frames/{numbers}", headers={"accept": accept})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("multipart/related")
    return parse_multipart(answer.content, answer.headers["content-type"])


def part_types(body: bytes) -> list[str]:
    return [
        line.split(b":", 1)[1].strip().decode()
        for line in body.split(b"\r\n")
        if line.lower().startswith(b"content-type:")
    ]


def test_native_frames_are_slices_of_the_pixel_data(
    web: tuple[TestClient, Hub, DicomArchive],
) -> None:
    client, _hub, _archive = web
    data = (TEST_FILES / "rtdose.dcm").read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    count = int(ds.NumberOfFrames)
    url = store(client, data).removeprefix("http://testserver")
    size = ds.Rows * ds.Columns * ds.BitsAllocated // 8
    parts = frames(client, url, f"1,{count}")
    assert parts == [ds.PixelData[:size], ds.PixelData[(count - 1) * size : count * size]]
    answer = client.get(f"{url}/frames/2", headers={"accept": ANY})
    types = part_types(answer.content)
    assert types == [f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"]
    # the frames decode to what pydicom decodes
    decoded = np.frombuffer(parts[0], dtype=ds.pixel_array.dtype)
    assert np.array_equal(decoded.reshape(ds.Rows, ds.Columns), ds.pixel_array[0])

    assert client.get(f"{url}/frames/{count + 1}").status_code == 400
    assert client.get(f"{url}/frames/0").status_code == 400
    assert client.get(f"{url}/frames/x").status_code == 400
    missing = url.rsplit("/", 1)[0] + "/1.2.3.4"
    assert client.get(f"{missing}/frames/1").status_code == 404


def test_compressed_frames_as_stored_or_decoded(web: tuple[TestClient, Hub, DicomArchive]) -> None:
    client, _hub, _archive = web
    data = (TEST_FILES / "SC_rgb_rle_2frame.dcm").read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    url = store(client, data).removeprefix("http://testserver")
    stored = list(generate_frames(ds.PixelData, number_of_frames=2))
    answer = client.get(f"{url}/frames/2", headers={"accept": ANY})
    assert parse_multipart(answer.content, answer.headers["content-type"]) == [stored[1]]
    assert part_types(answer.content) == ["image/x-dicom-rle; transfer-syntax=1.2.840.10008.1.2.5"]
    # a client that wants uncompressed frames gets them decoded
    native = "multipart/related; type=application/octet-stream"
    (frame,) = frames(client, url, "2", accept=native)
    assert frame == ds.pixel_array[1].astype(ds.pixel_array.dtype.newbyteorder("<")).tobytes()


def test_single_bit_frames_start_on_a_byte(web: tuple[TestClient, Hub, DicomArchive]) -> None:
    """Bits Allocated 1 (Segmentation): 3 frames of 5 x 3 = 15 bits each are packed
    back to back in Pixel Data; each frame is sent re-packed from bit 0."""
    client, _hub, _archive = web
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 2, size=(3, 5, 3)).astype(np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = "BITS-1", "SEG"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 5, 3, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = ds.PixelRepresentation = 0
    ds.PixelData = np.packbits(masks.reshape(-1), bitorder="little").tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    url = store(client, buffer.getvalue()).removeprefix("http://testserver")
    parts = frames(client, url, "1,2,3")
    for part, mask in zip(parts, masks, strict=True):
        bits = np.unpackbits(np.frombuffer(part, dtype=np.uint8), bitorder="little")
        assert np.array_equal(bits[:15].reshape(5, 3), mask)
