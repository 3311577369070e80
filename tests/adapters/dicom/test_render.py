"""Rendered frames (PS3.18 9.5): modality LUT, linear VOI window, presets, PNG and JPEG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from fhirhub.adapters.dicom.render import CT_PRESETS, RenderError, Window, render_frame
from tests.adapters.dicom.conftest import TEST_FILES


def image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_ct_window_level(ct_small: Path) -> None:
    ds = pydicom.dcmread(ct_small)
    png = image(render_frame(ds, 1))
    assert png.format == "PNG" and png.size == (ds.Columns, ds.Rows) and png.mode == "L"
    narrow = np.asarray(image(render_frame(ds, 1, window=Window(40, 80))))
    wide = np.asarray(image(render_frame(ds, 1, window=Window.parse("bone"))))
    # a narrow brain window saturates far more pixels than a bone window
    saturated = lambda a: int(((a == 0) | (a == 255)).sum())  # noqa: E731
    assert saturated(narrow) > saturated(wide)
    assert Window.parse("lung") == Window(*CT_PRESETS["lung"])
    assert Window.parse("40,400,LINEAR") == Window(40, 400)
    with pytest.raises(RenderError):
        Window.parse("40,400,SIGMOID")


def test_jpeg_and_frames() -> None:
    ds = pydicom.dcmread(TEST_FILES / "SC_rgb_rle_2frame.dcm")
    second = image(render_frame(ds, 2, fmt="jpeg"))
    assert second.format == "JPEG" and second.mode == "RGB"
    with pytest.raises(RenderError, match="Frame 3"):
        render_frame(ds, 3)


def test_no_pixels() -> None:
    ds = pydicom.dcmread(TEST_FILES / "rtplan.dcm")
    with pytest.raises(RenderError, match="no pixel data"):
        render_frame(ds)
