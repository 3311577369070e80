"""WADO-RS frame retrieval (PS3.18 10.4.1.1.3, "Frame Pixel Data"): the pixel data of chosen
frames, one part each, as browser viewers (cornerstone, OHIF) fetch images.

A frame of an uncompressed instance is its slice of Pixel Data, sent as
``application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1`` (little endian); a frame of
a compressed instance is its encapsulated fragment(s) as stored, sent with the media type and
Transfer Syntax of its encoding (PS3.18 table 8.7.3-5), when the Accept header allows it
(``transfer-syntax=*`` or that syntax, as viewers send); else it is decoded (pydicom) and sent
uncompressed. Bits Allocated 1 (Segmentation) frames are re-packed so that each starts on a
byte (PS3.5 8.1.1).
"""

from __future__ import annotations

import re

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import UID, ExplicitVRLittleEndian

from fhirhub.adapters.dicom.render import RenderError

#: Transfer Syntax -> media type of its frames (PS3.18 table 8.7.3-5).
COMPRESSED_MEDIA = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
}
NATIVE = f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"


def parse_frame_list(text: str) -> list[int]:
    """``1,3,5`` -> [1, 3, 5] (frame numbers start at 1)."""
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise RenderError("Frame numbers must be integers") from exc
    if not numbers or min(numbers) < 1:
        raise RenderError("Frame numbers start at 1")
    return numbers


def accepts_as_stored(accept: str, syntax: str) -> bool:
    """Whether the Accept header takes frames in ``syntax`` as they are stored."""
    if not accept or accept.strip() == "*/*":
        return False
    for value in re.findall(r"transfer-syntax\s*=\s*\"?([0-9.*]+)", accept):
        if value in ("*", syntax):
            return True
    return False


def frame_parts(ds: Dataset, numbers: list[int], accept: str = "") -> list[tuple[str, bytes]]:
    """(Content-Type, bytes) of each requested frame of ``ds``."""
    if "PixelData" not in ds:
        raise RenderError("The instance has no pixel data")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if max(numbers) > count:
        raise RenderError(f"The instance has {count} frame(s)")
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    if syntax.is_compressed and syntax in COMPRESSED_MEDIA and accepts_as_stored(accept, syntax):
        media = f"{COMPRESSED_MEDIA[syntax]}; transfer-syntax={syntax}"
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [(media, frames[n - 1]) for n in numbers]
    if syntax.is_compressed:
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # no decoder for this syntax here
            raise RenderError(f"Frames in {syntax.name} cannot be decoded here: {exc}") from exc
        array = np.asarray(pixels)
        stack = array[np.newaxis] if count == 1 else array
        little = stack.astype(stack.dtype.newbyteorder("<"))
        return [(NATIVE, little[n - 1].tobytes()) for n in numbers]
    data = bytes(ds.PixelData)
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.BitsAllocated)
    if bits == 1:
        per_frame = rows * columns * samples
        unpacked = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        return [
            (
                NATIVE,
                np.packbits(
                    unpacked[(n - 1) * per_frame : n * per_frame], bitorder="little"
                ).tobytes(),
            )
            for n in numbers
        ]
    size = rows * columns * samples * (bits // 8)
    if len(data) < size * count:
        raise RenderError("The pixel data is shorter than its frames")
    if not syntax.is_little_endian:
        raise RenderError("Big endian pixel data is not served as frames")
    return [(NATIVE, data[(n - 1) * size : n * size]) for n in numbers]
