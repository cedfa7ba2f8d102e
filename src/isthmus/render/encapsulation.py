"""Frames of encapsulated pixel data, found by walking item headers (PS3.5 A.4).

The value of an encapsulated Pixel Data element is a sequence of items: the Basic Offset
Table, then one or more fragments, then a Sequence Delimitation Item.  A frame is one or more
consecutive fragments.  Where a frame starts is known from, in order of preference:

1. the Extended Offset Table (7FE0,0001) and its lengths (7FE0,0002) (PS3.3 C.7.6.3.1.8),
2. the Basic Offset Table (PS3.5 A.4, Table A.4-1),
3. a single frame: every fragment belongs to it,
4. as many fragments as frames: one fragment per frame,
5. otherwise the start-of-frame markers of the codestreams (pydicom's generate_frames).

Only item headers and the wanted fragments are read, never the whole value (except in case 5).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from pydicom.encaps import generate_frames

from isthmus.render.errors import DecodeError
from isthmus.render.pixel_data import PixelData

ITEM = 0xFFFEE000
SEQUENCE_DELIMITER = 0xFFFEE0DD


def encapsulated_frame(pixels: PixelData, index: int) -> bytes:
    """The compressed bitstream of frame `index` (0-based), fragments joined."""
    ds = pixels.dataset
    offset_table, first_fragment = _basic_offset_table(pixels)
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        start = struct.unpack_from("<Q", ds.ExtendedOffsetTable, 8 * index)[0]
        length = struct.unpack_from("<Q", ds.ExtendedOffsetTableLengths, 8 * index)[0]
        return _read_exact(pixels, first_fragment + start + 8, length)
    if len(offset_table) == pixels.number_of_frames:
        start = first_fragment + offset_table[index]
        end = first_fragment + offset_table[index + 1] if index + 1 < len(offset_table) else None
        return b"".join(
            _read_exact(pixels, pos, size) for pos, size in _fragments(pixels, start, end)
        )
    if pixels.number_of_frames == 1:
        return b"".join(
            _read_exact(pixels, pos, size) for pos, size in _fragments(pixels, first_fragment, None)
        )
    fragments = list(_fragments(pixels, first_fragment, None))
    if len(fragments) == pixels.number_of_frames:
        return _read_exact(pixels, *fragments[index])
    return _by_markers(pixels, index)


def _basic_offset_table(pixels: PixelData) -> tuple[list[int], int]:
    """Offsets of the Basic Offset Table and the position of the first fragment's item."""
    tag, length = _item_header(pixels, pixels.offset)
    if tag != ITEM:
        raise DecodeError(
            f"encapsulated pixel data does not start with the Basic Offset "
            f"Table item (found {tag:08X})"
        )
    table = _read_exact(pixels, pixels.offset + 8, length) if length else b""
    offsets = list(struct.unpack(f"<{length // 4}L", table))
    return offsets, pixels.offset + 8 + length


def _fragments(pixels: PixelData, pos: int, end: int | None) -> Iterator[tuple[int, int]]:
    """(value position, length) of each fragment item from `pos` up to `end` or the delimiter."""
    while end is None or pos < end:
        tag, length = _item_header(pixels, pos)
        if tag == SEQUENCE_DELIMITER:
            return
        if tag != ITEM or length == 0xFFFFFFFF:
            raise DecodeError(f"unexpected element {tag:08X} among the pixel data fragments")
        yield pos + 8, length
        pos += 8 + length


def _item_header(pixels: PixelData, pos: int) -> tuple[int, int]:
    header = pixels.read(pos, 8)
    if len(header) < 8:
        raise DecodeError("encapsulated pixel data ends without a sequence delimiter")
    group, element, length = struct.unpack("<HHL", header)
    return (group << 16) | element, length


def _read_exact(pixels: PixelData, pos: int, length: int) -> bytes:
    data = pixels.read(pos, length)
    if len(data) < length:
        raise DecodeError("encapsulated pixel data is truncated")
    return bytes(data)


def _by_markers(pixels: PixelData, index: int) -> bytes:
    """Several fragments per frame and no offset table: let pydicom find frame boundaries."""
    value = _whole_value(pixels)
    try:
        for number, frame in enumerate(
            generate_frames(value, number_of_frames=pixels.number_of_frames)
        ):
            if number == index:
                return frame
    except Exception as exc:  # pydicom raises ValueError or struct errors on bad data
        raise DecodeError(f"cannot split the encapsulated pixel data into frames: {exc}") from exc
    raise DecodeError(f"encapsulated pixel data holds fewer than {index + 1} frames")


def _whole_value(pixels: PixelData) -> bytes:
    """The whole encapsulated value, through its sequence delimiter."""
    _, first = _basic_offset_table(pixels)
    end = first
    for pos, length in _fragments(pixels, first, None):
        end = pos + length
    return _read_exact(pixels, pixels.offset, end + 8 - pixels.offset)
