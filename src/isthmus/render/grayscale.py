"""The grayscale pipeline: stored values → Modality LUT → VOI LUT → 8-bit display values.

PS3.4 N.2.1 (grayscale transformations) with:
- stored values masked to Bits Stored and sign-extended (PS3.5 8.1.1, PS3.3 C.7.6.3.1.1),
- the Modality LUT: Rescale Slope/Intercept or a Modality LUT Sequence (PS3.3 C.11.1),
- the VOI LUT: a requested window, else a VOI LUT Sequence, else the file's first
  Window Center/Width, with VOI LUT Function LINEAR, LINEAR_EXACT or SIGMOID
  (PS3.3 C.11.2.1.2); with none of these, the min..max range of the frame's modality values,
- MONOCHROME1 shown inverted (PS3.3 C.7.6.3.1.2: minimum value is white).
Enhanced multi-frame instances keep rescale and window per frame in functional groups
(PS3.3 C.7.6.16.2.9 Pixel Value Transformation, C.7.6.16.2.10 Frame VOI LUT).

Every step is pointwise except the min..max range (taken over the values present), so a
frame of 8- or 16-bit integers is mapped through a table of all the values its type can
hold: the pipeline runs on at most 65,536 values instead of every pixel, with the same
result, and a table is kept for the next frame with the same rescale, window and
photometric interpretation (the rest of a CT series).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import SupportsFloat

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi

from isthmus.render.errors import RenderError

FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
TABLES_KEPT = 16
# What a display table depends on (see _table_key): dtype, bits stored, signed,
# photometric interpretation, rescale slope and intercept, window center, width, function.
TableKey = tuple[str, int, bool, str, float, float, float, float, str]
_tables: OrderedDict[TableKey, np.ndarray] = OrderedDict()
_tables_lock = threading.Lock()


@dataclass
class Window:
    """A VOI window (PS3.3 C.11.2.1.2): center, width and function."""

    center: float
    width: float
    function: str = "LINEAR"

    def __post_init__(self) -> None:
        self.function = (self.function or "LINEAR").upper()
        if self.function not in FUNCTIONS:
            raise RenderError(f"unknown VOI LUT Function {self.function!r}")
        valid = self.width >= 1 if self.function == "LINEAR" else self.width > 0
        if not valid:
            raise RenderError(
                f"window width {self.width} is not valid for {self.function} (PS3.3 C.11.2.1.2)"
            )


def stored_values(array: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Keep the low Bits Stored bits; sign-extend when Pixel Representation is 1."""
    if not np.issubdtype(array.dtype, np.integer):
        return array
    values = array.astype(np.int64)
    if bits_stored >= 63:
        return values
    values &= (1 << bits_stored) - 1
    if signed:
        sign = 1 << (bits_stored - 1)
        values = np.where(values >= sign, values - (1 << bits_stored), values)
    return values


def modality_values(stored: np.ndarray, attrs: Dataset) -> np.ndarray:
    """Apply the Modality LUT (PS3.3 C.11.1): LUT sequence or rescale slope/intercept."""
    if attrs.get("ModalityLUTSequence"):
        return apply_modality_lut(stored, attrs).astype(np.float64)
    slope, intercept = _rescale(attrs)
    return stored.astype(np.float64) * slope + intercept


def _rescale(attrs: Dataset) -> tuple[float, float]:
    return float(attrs.get("RescaleSlope", 1) or 1), float(attrs.get("RescaleIntercept", 0) or 0)


def file_window(attrs: Dataset) -> Window | None:
    """The first Window Center/Width of the file (PS3.3 C.11.2.1.2: the first is default)."""
    center, width = attrs.get("WindowCenter"), attrs.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return None
    function = str(attrs.get("VOILUTFunction", "") or "LINEAR").strip()
    try:
        return Window(
            _first(center), _first(width), function if function in FUNCTIONS else "LINEAR"
        )
    except (RenderError, ValueError, TypeError, IndexError):
        return None  # an unusable window in the file: fall back to the value range


def _first(value: object) -> float:
    """The first of a multi-valued DS (several windows may be given; the first is default)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0]
    if not isinstance(value, (str, SupportsFloat)):
        raise TypeError(f"{type(value).__name__} is not a number")
    return float(value)


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Map modality values to 0..255 (float) with the window's function (PS3.3 C.11.2.1.2)."""
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
    if window.function == "LINEAR_EXACT":
        low, high = c - w / 2, c + w / 2
        inside = ((values - c) / w + 0.5) * 255.0
    else:
        low, high = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
        inside = ((values - (c - 0.5)) / max(w - 1, 1e-12) + 0.5) * 255.0
    return np.where(values <= low, 0.0, np.where(values > high, 255.0, inside))


def display_values(
    array: np.ndarray,
    attrs: Dataset,
    bits_stored: int,
    signed: bool,
    photometric: str,
    window: Window | None = None,
) -> np.ndarray:
    """8-bit display values (0 = black) of one grayscale frame."""
    if (
        array.dtype.kind in "iu"
        and array.dtype.itemsize <= 2
        and array.size >= (1 << (8 * array.dtype.itemsize)) // 4
    ):
        return _through_table(array, attrs, bits_stored, signed, photometric, window)
    return _display(array, attrs, bits_stored, signed, photometric, window)


def _display(
    array: np.ndarray,
    attrs: Dataset,
    bits_stored: int,
    signed: bool,
    photometric: str,
    window: Window | None,
    present: np.ndarray | None = None,
) -> np.ndarray:
    """The pipeline on `array`; `present` (a mask over it) limits the min..max range to the
    values a frame holds when `array` is a table's domain."""
    stored = stored_values(array, bits_stored, signed)
    if window is None and attrs.get("VOILUTSequence"):
        shown = _voi_lut(stored, attrs)
    else:
        values = modality_values(stored, attrs)
        window = window or file_window(attrs)
        shown = apply_window(values, window) if window else _full_range(values, present)
    if photometric == "MONOCHROME1":
        shown = 255.0 - shown
    display: np.ndarray = np.clip(np.rint(shown), 0, 255).astype(np.uint8)
    return display


def _through_table(
    array: np.ndarray,
    attrs: Dataset,
    bits_stored: int,
    signed: bool,
    photometric: str,
    window: Window | None,
) -> np.ndarray:
    """`_display` of every value the frame's integer type can hold, indexed by the frame."""
    unsigned = np.dtype(f"u{array.dtype.itemsize}")
    indices = array.view(unsigned)
    key = _table_key(array.dtype, attrs, bits_stored, signed, photometric, window)
    table: np.ndarray | None = None
    if key is not None:
        with _tables_lock:
            table = _tables.get(key)
            if table is not None:
                _tables.move_to_end(key)
    if table is None:
        domain = np.arange(1 << (8 * array.dtype.itemsize), dtype=unsigned).view(array.dtype)
        present = None
        if key is None:  # perhaps the min..max range: over the values of this frame
            present = np.zeros(domain.size, dtype=bool)
            present[indices] = True
        table = _display(domain, attrs, bits_stored, signed, photometric, window, present)
        table.flags.writeable = False
        if key is not None:
            with _tables_lock:
                _tables[key] = table
                while len(_tables) > TABLES_KEPT:
                    _tables.popitem(last=False)
    shown: np.ndarray = np.take(table, indices)  # twice as fast as table[indices]
    return shown


def _table_key(
    dtype: np.dtype,
    attrs: Dataset,
    bits_stored: int,
    signed: bool,
    photometric: str,
    window: Window | None,
) -> TableKey | None:
    """What a table depends on, or None when it holds LUT data or depends on the frame."""
    if attrs.get("ModalityLUTSequence") or (window is None and attrs.get("VOILUTSequence")):
        return None
    window = window or file_window(attrs)
    if window is None:
        return None
    return (
        dtype.str,
        bits_stored,
        signed,
        photometric,
        *_rescale(attrs),
        window.center,
        window.width,
        window.function,
    )


def _voi_lut(stored: np.ndarray, attrs: Dataset) -> np.ndarray:
    """The first VOI LUT of the VOI LUT Sequence, scaled from its bit depth to 0..255."""
    values = stored
    if attrs.get("ModalityLUTSequence") or "RescaleSlope" in attrs:
        values = np.rint(modality_values(stored, attrs)).astype(np.int64)
    try:
        out = apply_voi(values, attrs, 0)
    except Exception as exc:  # bad LUT descriptors
        raise RenderError(f"VOI LUT Sequence cannot be applied: {exc}") from exc
    bits = int(attrs.VOILUTSequence[0].LUTDescriptor[2])
    return out.astype(np.float64) * 255.0 / ((1 << bits) - 1)


def _full_range(values: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """No window anywhere: min..max of the frame's modality values to 0..255."""
    held = values if present is None else values[present]
    low, high = float(held.min()), float(held.max())
    if high <= low:
        return np.zeros_like(values)
    return (values - low) * (255.0 / (high - low))
