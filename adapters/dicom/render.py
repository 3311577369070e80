"""Rendered frames for WADO-RS (PS3.18 9.5 "Rendered Resources"): one frame as PNG or JPEG.

Grey-scale images go through the Modality LUT (Rescale Slope/Intercept: CT Hounsfield units)
and a linear VOI window (PS3.3 C.11.2.1.2): the request's ``window=center,width`` first, else a
named preset, else the instance's own Window Center/Width, else its full range. MONOCHROME1 is
inverted so that black means low values, as a viewer expects. Colour images are converted to
RGB and scaled to 8 bits.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, convert_color_space

#: Common CT windows as (center, width) in Hounsfield units (radiology convention).
CT_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40, 80),
    "subdural": (75, 215),
    "stroke": (32, 8),
    "lung": (-600, 1500),
    "mediastinum": (50, 350),
    "abdomen": (40, 400),
    "liver": (60, 160),
    "bone": (400, 1800),
}
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


class RenderError(ValueError):
    """The frame cannot be rendered (no pixel data, frame out of range, undecodable syntax)."""


@dataclass(frozen=True)
class Window:
    center: float
    width: float

    @classmethod
    def parse(cls, value: str) -> Window:
        """``center,width[,function]`` as in the WADO-RS ``window`` parameter (PS3.18 8.3.5.1.4)."""
        if value.lower() in CT_PRESETS:
            return cls(*CT_PRESETS[value.lower()])
        parts = value.split(",")
        try:
            center, width = float(parts[0]), float(parts[1])
        except (IndexError, ValueError) as exc:
            raise RenderError(f"window must be 'center,width' or a preset, not {value!r}") from exc
        if len(parts) > 2 and parts[2].strip().lower() not in ("linear", ""):
            raise RenderError(f"Only the linear VOI LUT function is supported, not {parts[2]!r}")
        if width < 1:
            raise RenderError("window width must be at least 1")
        return cls(center, width)


def _first(value: object) -> float:
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0]  # type: ignore[index]
    return float(value)  # type: ignore[arg-type]


def frame_count(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def render_frame(
    ds: Dataset,
    frame: int = 1,
    *,
    window: Window | None = None,
    fmt: str = "png",
    quality: int = 90,
) -> bytes:
    """Frame ``frame`` (1-based, PS3.18 frame numbers) of ``ds`` as PNG or JPEG bytes."""
    if "PixelData" not in ds:
        raise RenderError("The instance has no pixel data")
    frames = frame_count(ds)
    if not 1 <= frame <= frames:
        raise RenderError(f"Frame {frame} does not exist; the instance has {frames}")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # a missing decoder plugin, corrupt data
        raise RenderError(f"Cannot decode the pixel data: {exc}") from exc
    if frames > 1:
        pixels = pixels[frame - 1]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith("MONOCHROME") or pixels.ndim == 2:
        image = Image.fromarray(_grey(ds, pixels, window, photometric), mode="L")
    else:
        if photometric.startswith("YBR") and not _decoder_converted(ds):
            pixels = convert_color_space(pixels, photometric, "RGB")
        image = Image.fromarray(_to_uint8(pixels.astype(np.float64)), mode="RGB")
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, format="JPEG", quality=quality)
    elif fmt == "png":
        image.save(out, format="PNG")
    else:
        raise RenderError(f"Unsupported rendered media type {fmt!r}")
    return out.getvalue()


def _decoder_converted(ds: Dataset) -> bool:
    """pydicom's JPEG decoders already return RGB for YBR_FULL_422 baseline JPEG."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return syntax is not None and syntax.is_compressed


def _grey(ds: Dataset, pixels: np.ndarray, window: Window | None, photometric: str) -> np.ndarray:
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            window = Window(_first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0))
        except (TypeError, ValueError):
            window = None
    if window is not None:
        # PS3.3 C.11.2.1.2.1 linear function
        low = window.center - 0.5 - (window.width - 1) / 2
        scaled = (values - low) / max(window.width - 1, 1) * 255.0
        out = np.clip(scaled, 0, 255).astype(np.uint8)
    else:
        out = _to_uint8(values)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def _to_uint8(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return ((values - low) / (high - low) * 255.0).round().astype(np.uint8)
