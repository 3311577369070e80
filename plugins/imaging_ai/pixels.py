"""From a DICOM instance to a model's input: modality LUT, VOI window, resampling (pydicom
and Pillow). Every failure is an :class:`UnusableImage` with a reason a radiologist can read;
the analysis records it as a failed run instead of crashing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut


class UnusableImage(ValueError):
    """The instance cannot be given to the model (no pixels, undecodable, wrong kind)."""


@dataclass(frozen=True)
class Window:
    center: float
    width: float


def _first(value: Any) -> float:
    """A DS value, or the first of a multi-valued one (PS3.3 C.11.2.1.2: several windows)."""
    if not isinstance(value, (str, bytes, int, float)) and hasattr(value, "__getitem__"):
        value = value[0]
    return float(value)


def header_window(ds: Dataset) -> Window | None:
    if "WindowCenter" in ds and "WindowWidth" in ds:
        return Window(_first(ds.WindowCenter), _first(ds.WindowWidth))
    return None


def frame_pixels(ds: Dataset) -> np.ndarray:
    """The first frame's values after the modality LUT (e.g. Hounsfield units for CT)."""
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise UnusableImage("the instance has no pixel data (not an image)")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise UnusableImage("colour images are not supported (SamplesPerPixel != 1)")
    try:
        array = ds.pixel_array
    except Exception as exc:  # pydicom raises many kinds for a bad stream
        raise UnusableImage(f"the pixel data cannot be decoded: {exc}") from exc
    if array.ndim == 3:
        array = array[0]
    if array.ndim != 2 or min(array.shape) < 8:
        raise UnusableImage(f"unexpected pixel array shape {array.shape}")
    return np.asarray(apply_modality_lut(array, ds), dtype=np.float32)


def windowed(values: np.ndarray, window: Window | None, *, invert: bool = False) -> np.ndarray:
    """Linear VOI window (PS3.3 C.11.2.1.2.1) to [0, 1]; without a window, min-max."""
    if window is None:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    else:
        width = max(window.width, 1.0)
        scaled = (values - (window.center - 0.5)) / (width - 1) + 0.5
    scaled = np.clip(scaled, 0.0, 1.0).astype(np.float32)
    return 1.0 - scaled if invert else scaled


def resampled(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resampling (antialiased when shrinking) to the model's input size."""
    if image.shape == (height, width):
        return image.astype(np.float32)
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.float32)


def model_input(ds: Dataset, height: int, width: int, window: Window | None = None) -> np.ndarray:
    """The instance as a ``height`` x ``width`` float32 image in [0, 1]; MONOCHROME1 is
    inverted so that bright means dense for every model."""
    values = frame_pixels(ds)
    invert = str(ds.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1"
    return resampled(windowed(values, window or header_window(ds), invert=invert), height, width)
