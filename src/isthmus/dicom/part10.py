"""Part 10 files: building the file meta header and reading a header without pixel data.

Ingest never decodes pixel data (DESIGN.md, "Paths that must be fast"): the header
is parsed up to (7FE0,0010) and the received bytes are kept as they are.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from io import BytesIO
from typing import Iterable

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset
from pydicom.filewriter import write_file_meta_info

from isthmus import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from isthmus.dicom import uids

PREAMBLE = b"\x00" * 128 + b"DICM"
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


class InvalidDicom(ValueError):
    """Bytes that are not a DICOM dataset Isthmus can keep; the message says why."""


@dataclass
class Header:
    """What ingest learns from the bytes before pixel data."""

    dataset: Dataset                  # all elements before pixel data
    transfer_syntax: str
    dataset_bytes: memoryview         # the dataset as received (no preamble, no meta)
    pixel_tag: int | None             # 7FE00010, 7FE00008, 7FE00009 or None
    pixel_vr: str | None
    pixel_offset: int | None          # offset of the pixel value inside dataset_bytes
    pixel_length: int | None          # 0xFFFFFFFF when encapsulated


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str,
              source_aet: str | None = None) -> bytes:
    """Preamble, 'DICM' and an encoded File Meta Information group (PS3.10 7.1)."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    if source_aet:
        meta.SourceApplicationEntityTitle = source_aet.strip()
    buf = DicomBytesIO()
    buf.is_little_endian = True
    buf.is_implicit_VR = False
    write_file_meta_info(buf, meta, enforce_standard=True)
    return PREAMBLE + buf.getvalue()


def split_part10(data: bytes | memoryview) -> tuple[FileMetaDataset | None, memoryview]:
    """Separate preamble and file meta from the dataset bytes.

    Returns (None, data) when there is no 'DICM' prefix (a bare dataset).
    """
    view = memoryview(data)
    if len(view) >= 132 and bytes(view[128:132]) == b"DICM":
        fp = BytesIO(view[132:])
        try:
            meta = _read_file_meta_info(fp)
        except Exception as exc:  # pydicom raises several kinds on garbage
            raise InvalidDicom(f"unreadable file meta information: {exc}") from exc
        return meta, view[132 + fp.tell():]
    return None, view


def guess_transfer_syntax(data: memoryview) -> str:
    """For a bare dataset: Explicit VR LE if the 5th-6th bytes look like a VR, else Implicit."""
    if len(data) < 8:
        raise InvalidDicom("too short to be a DICOM dataset")
    vr = bytes(data[4:6])
    if vr.isalpha() and vr.isupper():
        return uids.EXPLICIT_VR_LITTLE_ENDIAN
    return uids.IMPLICIT_VR_LITTLE_ENDIAN


def read_header(dataset_bytes: bytes | memoryview, transfer_syntax: str) -> Header:
    """Parse every element before pixel data; never touches pixel values."""
    try:
        implicit, little, deflated = uids.encoding(transfer_syntax)
    except ValueError as exc:
        raise InvalidDicom(str(exc)) from exc
    raw = memoryview(dataset_bytes)
    parse_bytes: bytes | memoryview = raw
    if deflated:
        try:
            parse_bytes = zlib.decompress(bytes(raw), -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise InvalidDicom(f"deflated dataset does not inflate: {exc}") from exc
    fp = BytesIO(parse_bytes)
    try:
        ds = read_dataset(fp, implicit, little, stop_when=_at_pixels)
    except Exception as exc:
        raise InvalidDicom(f"dataset cannot be parsed: {exc}") from exc
    header = Header(ds, transfer_syntax, raw, None, None, None, None)
    _locate_pixels(header, parse_bytes, fp.tell(), implicit, little, deflated)
    _check_identity(ds)
    return header


def _at_pixels(tag: int, vr: str | None, length: int) -> bool:
    return tag in PIXEL_TAGS


def _locate_pixels(header: Header, data: bytes | memoryview, pos: int, implicit: bool,
                   little: bool, deflated: bool) -> None:
    """Record the pixel element's tag, VR, value offset and length (PS3.5 7.1)."""
    if len(data) - pos < 8:
        return
    order = "little" if little else "big"
    group = int.from_bytes(data[pos:pos + 2], order)
    elem = int.from_bytes(data[pos + 2:pos + 4], order)
    tag = (group << 16) | elem
    if tag not in PIXEL_TAGS:
        return
    if implicit:
        vr, length, start = None, int.from_bytes(data[pos + 4:pos + 8], order), pos + 8
    else:
        vr = bytes(data[pos + 4:pos + 6]).decode("ascii", "replace")
        length, start = int.from_bytes(data[pos + 8:pos + 12], order), pos + 12
    bits = header.dataset.get("BitsAllocated", 16) or 16
    header.pixel_tag = tag
    header.pixel_vr = vr or {0x7FE00008: "OF", 0x7FE00009: "OD"}.get(tag, "OW" if bits > 8 else "OB")
    header.pixel_length = length
    header.pixel_offset = None if deflated else start
    if length != 0xFFFFFFFF and start + length > len(data):
        raise InvalidDicom("pixel data is truncated")


REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _check_identity(ds: Dataset) -> None:
    missing = [kw for kw in REQUIRED if not str(ds.get(kw, "") or "").strip()]
    if missing:
        raise InvalidDicom("missing " + ", ".join(missing))
    for kw in REQUIRED:
        value = str(ds.get(kw)).strip()
        if len(value) > 64 or not all(c.isdigit() or c == "." for c in value):
            raise InvalidDicom(f"{kw} {value[:70]!r} is not a valid UID")


def part10_chunks(meta: bytes, dataset_bytes: bytes | memoryview) -> Iterable[bytes | memoryview]:
    """The chunks of a Part 10 file: preamble + meta, then the dataset as received."""
    return (meta, dataset_bytes)
