"""Color frames to 8-bit RGB for display (PS3.3 C.7.6.3.1.2 Photometric Interpretation).

RGB is kept; YBR_FULL and YBR_FULL_422 arrive already converted by the decoder (pydicom's
as_rgb, PS3.3 C.7.6.3.1.2 equations); YBR_RCT/YBR_ICT are undone by the JPEG 2000 decoder.
PALETTE COLOR goes through its Red/Green/Blue Palette Color Lookup Tables (PS3.3 C.7.6.3.1.5/6,
segmented tables included) with pydicom's apply_color_lut.  Samples deeper than 8 bits are
scaled from Bits Stored (or the LUT entry depth) to 0..255.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut

from isthmus.render.errors import RenderError
from isthmus.render.grayscale import stored_values

RGB_LIKE = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420")


def rgb8(array: np.ndarray, photometric: str, bits_stored: int, attrs: Dataset) -> np.ndarray:
    """(rows, columns, 3) uint8 for a decoded color or palette frame."""
    if photometric == "PALETTE COLOR":
        return _palette(array, attrs)
    if photometric in RGB_LIKE:
        if array.ndim != 3 or array.shape[-1] != 3:
            raise RenderError(f"{photometric} frame has shape {array.shape}, expected 3 samples")
        return _scale(stored_values(array, bits_stored, False), bits_stored)
    raise RenderError(f"Photometric Interpretation {photometric!r} cannot be rendered")


def _palette(array: np.ndarray, attrs: Dataset) -> np.ndarray:
    try:
        rgb = apply_color_lut(array, attrs)
        bits = int(attrs.RedPaletteColorLookupTableDescriptor[2])
    except Exception as exc:  # missing or malformed LUTs
        raise RenderError(f"palette color lookup tables cannot be applied: {exc}") from exc
    return _scale(rgb.astype(np.int64), bits)


def _scale(values: np.ndarray, bits: int) -> np.ndarray:
    """Scale samples of `bits` bits to 0..255 (rounded)."""
    if bits == 8:
        scaled: np.ndarray = np.clip(values, 0, 255).astype(np.uint8)
        return scaled
    top = (1 << bits) - 1
    scaled = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    return scaled
