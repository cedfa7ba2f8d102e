"""Clean Pixel Data (PS3.15 E.3.1): blank the regions where burned-in text is.

Text burned into pixels can only be found reliably by knowing where a given kind of
device writes it, so cleaning is driven by rules, as RSNA CTP's pixel anonymizer does:
a rule names the images it applies to (Modality, Manufacturer, Rows, Columns; what is
not given matches anything) and the rectangles to fill with zero.  Only native
(uncompressed) pixel data is rewritten; an encapsulated instance flagged with burned-in
annotation is excluded rather than decoded and re-encoded behind the user's back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset


class PixelRuleError(ValueError):
    """A rule that cannot be applied (bad rectangle, unknown key)."""


@dataclass(frozen=True)
class PixelRule:
    """Where burned-in text is on one kind of image: rectangles (x, y, width, height)."""

    rectangles: tuple[tuple[int, int, int, int], ...]
    modality: str | None = None
    manufacturer: str | None = None
    rows: int | None = None
    columns: int | None = None

    def matches(self, ds: Dataset) -> bool:
        for name, wanted in (
            ("Modality", self.modality),
            ("Manufacturer", self.manufacturer),
            ("Rows", self.rows),
            ("Columns", self.columns),
        ):
            if wanted is not None and ds.get(name) != wanted:
                return False
        return True

    @classmethod
    def from_mapping(cls, raw: Any) -> PixelRule:
        if not isinstance(raw, Mapping):
            raise PixelRuleError("a pixel rule is an object with rectangles")
        unknown = set(raw) - {"rectangles", "modality", "manufacturer", "rows", "columns"}
        if unknown:
            raise PixelRuleError(f"unknown pixel rule keys {sorted(unknown)}")
        rects = raw.get("rectangles")
        if not isinstance(rects, list) or not rects:
            raise PixelRuleError("a pixel rule needs rectangles: [[x, y, width, height], …]")
        out = []
        for rect in rects:
            if (
                not isinstance(rect, list | tuple)
                or len(rect) != 4
                or not all(isinstance(v, int) and v >= 0 for v in rect)
            ):
                raise PixelRuleError(f"rectangle {rect!r} is not [x, y, width, height] ≥ 0")
            out.append((rect[0], rect[1], rect[2], rect[3]))
        return cls(
            tuple(out),
            raw.get("modality"),
            raw.get("manufacturer"),
            raw.get("rows"),
            raw.get("columns"),
        )


def clean(ds: Dataset, rule: PixelRule) -> None:
    """Fill the rule's rectangles with zero in every frame (native pixel data only).

    Raises PixelRuleError when the pixel data is encapsulated or cannot be decoded."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        raise PixelRuleError("the transfer syntax is unknown (no file meta)")
    if syntax.is_compressed or not syntax.is_little_endian:
        raise PixelRuleError(f"pixel data is {syntax.name}: only native little endian is cleaned")
    if ds.get("BitsAllocated") not in (8, 16, 32) or ds.get("PhotometricInterpretation") in (
        "YBR_FULL_422",
    ):
        raise PixelRuleError("pixel data of this layout (bits allocated, colour) is not cleaned")
    try:
        pixels = ds.pixel_array.copy()
    except Exception as exc:  # pydicom raises several kinds for undecodable data
        raise PixelRuleError(f"pixel data cannot be read: {exc}") from None
    frames = pixels if int(ds.get("NumberOfFrames", 1) or 1) > 1 else pixels[None, ...]
    for x, y, width, height in rule.rectangles:
        frames[:, y : y + height, x : x + width, ...] = 0
    data = frames.reshape(pixels.shape).tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        ds.PlanarConfiguration = 0  # pixel_array gives colour-by-pixel, as written back
