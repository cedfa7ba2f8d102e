"""Bulk data values of stored instances (PS3.18 10.4.1.1.4), read by byte range.

Ingest replaces every large binary value in an instance's DICOM JSON with a
BulkDataURI; `Archive.bulk_data` answers such a URI.  Native little-endian pixel data
is one byte range of the stored file and is read from it piece by piece (a large
multi-frame instance is never read whole); any other value comes from the header.
Pixel data that is not one byte range (encapsulated, deflated, big endian) is served
as frames instead (`pixel_data_as_frames`, PS3.18 10.4.1.1.4 and 10.4.1.1.5).
"""

from __future__ import annotations

from typing import BinaryIO

from pydicom import dcmread
from pydicom.uid import UID

from isthmus.archive.index import InstanceRow

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float


class NoBulkData(KeyError):
    """The instance has no binary value at that tag."""


def pixel_data_as_frames(row: InstanceRow, tag: int) -> bool:
    """True for pixel data that cannot be sliced from the stored file (compressed,
    deflated, big endian, or of undefined length): it is answered frame by frame."""
    if tag not in PIXEL_TAGS:
        return False
    ts = UID(row.transfer_syntax_uid)
    return (
        row.pixel_offset is None
        or row.pixel_length in (None, 0xFFFFFFFF)
        or ts.is_encapsulated
        or not ts.is_little_endian
    )


class BulkData:
    """One bulk data value: `length` bytes, read with `read(first, size)`; close() it.

    Either a byte range of an open blob (pixel data, read lazily) or bytes already
    read from the header (other values, small by nature)."""

    def __init__(
        self, length: int, fh: BinaryIO | None = None, start: int = 0, value: bytes = b""
    ) -> None:
        self.length = length
        self._fh, self._start, self._value = fh, start, value

    def read(self, first: int, size: int) -> bytes:
        """At most `size` bytes from offset `first` of the value."""
        size = max(0, min(size, self.length - first))
        if self._fh is None:
            return self._value[first : first + size]
        self._fh.seek(self._start + first)
        return self._fh.read(size)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> BulkData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_bulk_data(row: InstanceRow, tag: int, fh: BinaryIO) -> BulkData:
    """The value at `tag` of the stored file `fh` (which the BulkData then owns)."""
    if tag in PIXEL_TAGS and row.pixel_offset is not None:
        return BulkData(row.pixel_length or 0, fh, row.pixel_offset)
    with fh:
        ds = dcmread(fh, stop_before_pixels=True, force=True)
    element = ds.get(tag)
    if element is None or element.VR == "SQ" or not isinstance(element.value, (bytes, bytearray)):
        raise NoBulkData(f"instance {row.sop_instance_uid} has no bulk data at {tag:08X}")
    value = bytes(element.value)
    return BulkData(len(value), value=value)
