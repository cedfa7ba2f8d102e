"""One top-level element's value, found by walking element headers (PS3.5 7.1).

The relay counts every instance it moves by study for the audit trail (PS3.15
A.5.3.7), and needs only the Study Instance UID: pydicom's reader builds a Dataset
to get it, a millisecond per instance, more than sealing the instance costs.  This
walks the Little Endian encodings header by header, skipping values (sequences of
undefined length item by item, PS3.5 7.5), and stops at the tag or the first tag past
it (top-level elements are in ascending order, PS3.5 7.1).  Anything it cannot walk
raises `headers.Unsupported`; the caller then asks pydicom.
"""

from __future__ import annotations

import struct

from isthmus.dicom.headers import ITEM, ITEM_END, LONG_VRS, SEQUENCE_END, UNDEFINED, Unsupported
from isthmus.dicom.part10 import dataset_offset
from isthmus.dicom.uids import encoding

_UNPACK = struct.unpack_from


def top_level_text(part10: bytes | memoryview, transfer_syntax: str, tag: int) -> str | None:
    """The text value of top-level element `tag` of a Part 10 instance (trailing
    padding removed), or None when the dataset has no such element."""
    implicit, little, deflated = encoding(transfer_syntax)
    if not little or deflated:
        raise Unsupported("only the Little Endian encodings are walked")
    data = memoryview(part10)
    pos = dataset_offset(data)
    while pos + 8 <= len(data):
        found, length, value_at = _element(data, pos, implicit)
        if found >= tag:
            if found != tag or length == UNDEFINED:
                return None
            return bytes(data[value_at : value_at + length]).decode("ascii").rstrip("\x00 ")
        pos = _skip(data, value_at, length, implicit)
    return None


def _element(data: memoryview, pos: int, implicit: bool) -> tuple[int, int, int]:
    """(tag, value length, where the value starts) of the element at `pos`."""
    group, elem = _UNPACK("<HH", data, pos)
    tag = (group << 16) | elem
    if implicit or group == 0xFFFE:  # items and delimiters have no VR (PS3.5 7.5)
        return tag, _UNPACK("<I", data, pos + 4)[0], pos + 8
    vr = bytes(data[pos + 4 : pos + 6]).decode("ascii", "replace")
    if vr in LONG_VRS:
        return tag, _UNPACK("<I", data, pos + 8)[0], pos + 12
    if not (vr.isalpha() and vr.isupper()):
        raise Unsupported(f"bad VR {vr!r} at byte {pos}")
    return tag, _UNPACK("<H", data, pos + 6)[0], pos + 8


def _skip(data: memoryview, pos: int, length: int, implicit: bool) -> int:
    """Where the element whose value starts at `pos` ends."""
    if length != UNDEFINED:
        if pos + length > len(data):
            raise Unsupported("the data ends inside a value")
        return pos + length
    return _skip_sequence(data, pos, implicit)  # SQ or UN of undefined length (PS3.5 7.5.1)


def _skip_sequence(data: memoryview, pos: int, implicit: bool) -> int:
    """Past the Sequence Delimitation Item of the sequence whose items start at `pos`;
    elements inside items are walked with the dataset's VR encoding."""
    while pos + 8 <= len(data):
        tag, length, pos = _element(data, pos, True)
        if tag == SEQUENCE_END:
            return pos
        if tag != ITEM:
            raise Unsupported(f"not an item in a sequence at byte {pos - 8}")
        if length != UNDEFINED:
            pos = _skip(data, pos, length, implicit)
            continue
        while True:  # an item of undefined length: its elements, up to the Item Delimiter
            if pos + 8 > len(data):
                raise Unsupported("the data ends inside an item")
            inner, inner_length, value_at = _element(data, pos, implicit)
            if inner == ITEM_END:
                pos = value_at
                break
            pos = _skip(data, value_at, inner_length, implicit)
    raise Unsupported("the data ends inside a sequence")
