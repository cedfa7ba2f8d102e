"""Part 10 files: building the file meta header and reading a header without pixel data.

Ingest never decodes pixel data (docs/architecture.md, "Ingest"): the header
is parsed up to (7FE0,0010) and the received bytes are kept as they are, less any
File Meta Information elements a data set should not hold (`_drop_file_meta`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Literal

from pydicom.dataset import FileMetaDataset  # noqa: F401  (type of split_part10's result)
from pydicom.filereader import _read_file_meta_info, read_dataset

from isthmus import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from isthmus.dicom import headers, uids
from isthmus.dicom.json import BULK_THRESHOLD, dataset_to_json, first_value, instance_path

PREAMBLE = b"\x00" * 128 + b"DICM"
_UNPACK = struct.unpack_from
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


class InvalidDicom(ValueError):
    """Bytes that are not a DICOM dataset Isthmus can keep; the message says why.

    `sop_class_uid`, `sop_instance_uid`: the instance's, when they were read before the
    refusal (a STOW-RS Failed SOP Sequence item names them, PS3.18 Annex I)."""

    def __init__(
        self, message: str, sop_class_uid: str | None = None, sop_instance_uid: str | None = None
    ) -> None:
        super().__init__(message)
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid


class UnknownTransferSyntax(InvalidDicom):
    """A dataset in a transfer syntax Isthmus does not know, so cannot read (a STOW-RS
    answers it with Failure Reason 0xC122, PS3.18 Table I.2-2)."""


@dataclass
class Header:
    """What ingest learns from the bytes before pixel data."""

    json: dict[str, Any]  # DICOM JSON of every element before pixel data
    transfer_syntax: str
    dataset_bytes: memoryview  # the dataset as received (no preamble, no meta)
    pixel_tag: int | None  # 7FE00010, 7FE00008, 7FE00009 or None
    pixel_vr: str | None
    pixel_offset: int | None  # offset of the pixel value inside dataset_bytes
    pixel_length: int | None  # 0xFFFFFFFF when encapsulated
    # File Meta Information elements the data set held, dropped from it (`_drop_file_meta`)
    discarded: tuple[int, ...] = ()

    def uid(self, keyword: str) -> str:
        """A UID of the instance (validated at parse time)."""
        return str(first_value(self.json.get(_TAGS[keyword])) or "")


_TAGS = {
    "SOPClassUID": "00080016",
    "SOPInstanceUID": "00080018",
    "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E",
}


def file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_aet: str | None = None
) -> bytes:
    """Preamble, 'DICM' and an encoded File Meta Information group (PS3.10 7.1).

    Encoded by hand (Explicit VR Little Endian, PS3.10 7.1): it runs once per stored
    instance and pydicom's general writer costs more than the rest of ingest.
    """
    body = b"".join(
        [
            _meta_element(0x0001, "OB", b"\x00\x01"),
            _meta_element(0x0002, "UI", _uid_bytes(sop_class_uid)),
            _meta_element(0x0003, "UI", _uid_bytes(sop_instance_uid)),
            _meta_element(0x0010, "UI", _uid_bytes(transfer_syntax)),
            _meta_element(0x0012, "UI", _uid_bytes(IMPLEMENTATION_CLASS_UID)),
            _meta_element(0x0013, "SH", _text_bytes(IMPLEMENTATION_VERSION_NAME)),
            _meta_element(0x0016, "AE", _text_bytes(source_aet.strip()))
            if source_aet and source_aet.strip()
            else b"",
        ]
    )
    return PREAMBLE + _meta_element(0x0000, "UL", struct.pack("<I", len(body))) + body


def _meta_element(element: int, vr: str, value: bytes) -> bytes:
    if vr in ("OB", "OW", "UN", "UT"):
        return struct.pack("<HH2sHI", 0x0002, element, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr.encode(), len(value)) + value


def _uid_bytes(uid: str) -> bytes:
    raw = uid.strip().encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _text_bytes(text: str) -> bytes:
    raw = text.encode("ascii", "replace")[:16]
    return raw + b" " if len(raw) % 2 else raw


def split_part10(data: bytes | memoryview) -> tuple[FileMetaDataset | None, memoryview]:
    """Separate preamble and file meta from the dataset bytes.

    Returns (None, data) when there is no 'DICM' prefix (a bare dataset).
    """
    view = memoryview(data)
    start = _meta_start(view)
    if start is not None:
        fp = BytesIO(view[start : start + 65536])  # the meta group only, not the pixel data
        try:
            meta = _read_file_meta_info(fp)
        except Exception as exc:  # pydicom raises several kinds on garbage
            raise InvalidDicom(f"unreadable file meta information: {exc}") from exc
        return meta, view[start + fp.tell() :]
    return None, view


def split_transfer_syntax(data: bytes | memoryview) -> tuple[str | None, memoryview]:
    """(Transfer Syntax UID of the file meta, the dataset's bytes) of a Part 10 file;
    (None, data) for a bare dataset, ("", dataset) for a meta without one.

    What ingest, rendering and transcoding need of the meta is its Transfer Syntax UID
    and where it ends: the meta elements are walked header by header (PS3.10 7.1,
    always Explicit VR Little Endian), not read into a pydicom Dataset, which cost a
    fifth of a millisecond per instance.  An unusual meta goes to `split_part10`."""
    view = memoryview(data)
    start = _meta_start(view)
    if start is None:
        return None, view
    walked = _walk_meta(view, start)
    if walked is not None:
        return walked[0], view[walked[1] :]
    meta, rest = split_part10(view)
    return (str(meta.get("TransferSyntaxUID", "")).strip() if meta is not None else ""), rest


def _meta_start(view: memoryview) -> int | None:
    if len(view) >= 132 and bytes(view[128:132]) == b"DICM":
        return 132
    if bytes(view[:4]) == b"DICM":
        return 4  # no preamble (pydicom writes such files unless asked not to)
    return None


def _walk_meta(view: memoryview, pos: int) -> tuple[str, int] | None:
    """(Transfer Syntax UID or "", where the dataset starts) walking group 0002's
    Explicit VR Little Endian elements; None for anything else (a meta in Implicit VR,
    an undefined length, a value past the end)."""
    syntax, end = "", len(view)
    while pos + 8 <= end:
        group, element = _UNPACK("<HH", view, pos)
        if group != 0x0002:
            break
        vr = bytes(view[pos + 4 : pos + 6])
        if not (vr.isalpha() and vr.isupper()):
            return None
        if vr.decode() in headers.LONG_VRS:
            if pos + 12 > end:
                return None
            length, value = _UNPACK("<I", view, pos + 8)[0], pos + 12
        else:
            length, value = _UNPACK("<H", view, pos + 6)[0], pos + 8
        if value + length > end:
            return None  # an undefined length (0xFFFFFFFF) too
        if element == 0x0010:
            syntax = bytes(view[value : value + length]).decode("ascii", "replace")
            syntax = syntax.rstrip("\x00 ")
        pos = value + length
    if len(view) - pos < 8 and pos < len(view):
        return None  # a fragment of a header: as pydicom decides
    return syntax, pos


def dataset_offset(part10: bytes | memoryview) -> int:
    """Where the dataset starts in a Part 10 file whose meta begins with its group
    length, as every file Isthmus writes does (PS3.10 7.1)."""
    if bytes(part10[128:132]) != b"DICM":
        if bytes(part10[:4]) == b"DICM":  # no preamble
            _meta, rest = split_part10(part10)
            return len(part10) - len(rest)
        return 0
    if bytes(part10[132:138]) != b"\x02\x00\x00\x00UL":
        _meta, rest = split_part10(part10)
        return len(part10) - len(rest)
    group_length: int = struct.unpack_from("<I", part10, 140)[0]
    return 144 + group_length


def guess_transfer_syntax(data: memoryview) -> str:
    """For a bare dataset: Explicit VR LE if the 5th-6th bytes look like a VR, else Implicit."""
    if len(data) < 8:
        raise InvalidDicom("too short to be a DICOM dataset")
    vr = bytes(data[4:6])
    if vr.isalpha() and vr.isupper():
        return uids.EXPLICIT_VR_LITTLE_ENDIAN
    return uids.IMPLICIT_VR_LITTLE_ENDIAN


def read_header(dataset_bytes: bytes | memoryview, transfer_syntax: str) -> Header:
    """Parse every element before pixel data into DICOM JSON; never touches pixel values.

    Little Endian encodings take the fast parser (isthmus.dicom.headers); anything
    it declines goes through pydicom.
    """
    try:
        implicit, little, deflated = uids.encoding(transfer_syntax)
    except ValueError as exc:
        raise UnknownTransferSyntax(str(exc)) from exc
    raw = memoryview(dataset_bytes)
    parse_bytes: bytes | memoryview = raw
    if deflated:
        try:
            parse_bytes = zlib.decompress(bytes(raw), -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise InvalidDicom(f"deflated dataset does not inflate: {exc}") from exc
    header = None
    if little:
        header = _fast_header(parse_bytes, implicit, transfer_syntax, raw, deflated)
    if header is None:
        header = _pydicom_header(parse_bytes, implicit, little, transfer_syntax, raw, deflated)
    _drop_file_meta(header, parse_bytes, implicit, little, deflated)
    _check_identity(header.json)
    _check_pixel_encoding(header)
    return header


def _fast_header(
    data: bytes | memoryview, implicit: bool, ts: str, raw: memoryview, deflated: bool
) -> Header | None:
    try:
        parsed = headers.parse(data, implicit, BULK_PLACEHOLDER)
    except headers.Truncated as exc:
        raise InvalidDicom(f"the dataset is truncated: {exc}") from exc
    except headers.Unsupported:
        return None
    except ValueError as exc:
        raise InvalidDicom(str(exc)) from exc
    header = Header(
        parsed.json,
        ts,
        raw,
        parsed.pixel_tag,
        parsed.pixel_vr,
        None if deflated else parsed.pixel_offset,
        parsed.pixel_length,
    )
    _fill_bulk_prefix(header)
    return header


def _pydicom_header(
    data: bytes | memoryview, implicit: bool, little: bool, ts: str, raw: memoryview, deflated: bool
) -> Header:
    fp = BytesIO(data)
    try:
        ds = read_dataset(fp, implicit, little, stop_when=_at_pixels)
        json_model = dataset_to_json(ds, BULK_THRESHOLD, BULK_PLACEHOLDER)
    except Exception as exc:
        raise InvalidDicom(f"dataset cannot be parsed: {exc}") from exc
    header = Header(json_model, ts, raw, None, None, None, None)
    _locate_pixels(
        header, data, fp.tell(), implicit, little, deflated, int(ds.get("BitsAllocated", 16) or 16)
    )
    if header.pixel_tag is not None:
        key = f"{header.pixel_tag:08X}"
        header.json[key] = {"vr": header.pixel_vr, "BulkDataURI": BULK_PLACEHOLDER + key}
    _fill_bulk_prefix(header)
    return header


BULK_PLACEHOLDER = "\x00bulk/"


def _fill_bulk_prefix(header: Header) -> None:
    """Replace the placeholder by /studies/…/instances/…/bulkdata/ once UIDs are known."""
    prefix = None
    for entry in header.json.values():
        uri = entry.get("BulkDataURI")
        if uri and uri.startswith(BULK_PLACEHOLDER):
            if prefix is None:
                prefix = (
                    instance_path(
                        header.uid("StudyInstanceUID"),
                        header.uid("SeriesInstanceUID"),
                        header.uid("SOPInstanceUID"),
                    )
                    + "/bulkdata/"
                )
            entry["BulkDataURI"] = prefix + uri[len(BULK_PLACEHOLDER) :]


def _at_pixels(tag: int, vr: str | None, length: int) -> bool:
    return tag in PIXEL_TAGS


PIXEL_VRS = (b"OB", b"OW", b"OF", b"OD", b"UN")


@dataclass(frozen=True)
class PixelElement:
    """The header of a pixel data element (PS3.5 7.1): where its value starts."""

    tag: int
    vr: str | None  # None when the element is implicit VR
    length: int  # 0xFFFFFFFF when encapsulated
    start: int  # offset of the value


def pixel_element(
    data: bytes | memoryview, pos: int, implicit: bool, little: bool
) -> PixelElement | None:
    """The pixel element whose header starts at `pos`, or None if it is not one.

    Some files whose meta says Explicit VR are Implicit VR (pydicom copes too): without
    a pixel VR after the tag, the element is read as implicit.
    """
    if len(data) - pos < 8:
        return None
    order: Literal["little", "big"] = "little" if little else "big"
    tag = (int.from_bytes(data[pos : pos + 2], order) << 16) | int.from_bytes(
        data[pos + 2 : pos + 4], order
    )
    if tag not in PIXEL_TAGS:
        return None
    vr_bytes = bytes(data[pos + 4 : pos + 6])
    if implicit or vr_bytes not in PIXEL_VRS:
        return PixelElement(tag, None, int.from_bytes(data[pos + 4 : pos + 8], order), pos + 8)
    return PixelElement(
        tag, vr_bytes.decode("ascii"), int.from_bytes(data[pos + 8 : pos + 12], order), pos + 12
    )


def default_pixel_vr(tag: int, bits_allocated: int) -> str:
    """The VR of an implicit-VR pixel element (PS3.5 8.2 and A.1)."""
    return {0x7FE00008: "OF", 0x7FE00009: "OD"}.get(tag, "OW" if bits_allocated > 8 else "OB")


def _locate_pixels(
    header: Header,
    data: bytes | memoryview,
    pos: int,
    implicit: bool,
    little: bool,
    deflated: bool,
    bits: int,
) -> None:
    """Record the pixel element's tag, VR, value offset and length (PS3.5 7.1)."""
    element = pixel_element(data, pos, implicit, little)
    if element is None:
        return
    header.pixel_tag = element.tag
    header.pixel_vr = element.vr or default_pixel_vr(element.tag, bits)
    header.pixel_length = element.length
    header.pixel_offset = None if deflated else element.start
    if element.length != 0xFFFFFFFF and element.start + element.length > len(data):
        raise InvalidDicom("pixel data is truncated")


def _drop_file_meta(
    header: Header, data: bytes | memoryview, implicit: bool, little: bool, deflated: bool
) -> None:
    """Drop File Meta Information elements (group 0002) from a data set: they belong to a
    Part 10 file's meta only, never to a data set (PS3.10 7.1, PS3.5 7.1), and the meta
    Isthmus writes is its own, from the transfer syntax the data set came in and its SOP
    Class/Instance UIDs.  Kept, they would follow that meta, and a reader takes them for
    it (a second Transfer Syntax UID, say another encoding than the data's).

    They are no attribute of the SOP Instance, so nothing of it is lost.  In ascending
    tag order (PS3.5 7.1) they lead the data set: the stored bytes start after them (a
    view, no copy; a deflated data set is deflated again).  One anywhere else is a data
    set out of order (or one with an undefined length), refused.  The common case costs
    two comparisons."""
    leading = len(data) >= 2 and _UNPACK("<H" if little else ">H", data, 0)[0] == 0x0002
    if not leading and not next(iter(header.json), "").startswith("0002"):
        return
    end, tags = _file_meta_prefix(data, implicit, little)
    keys = [key for key in header.json if key.startswith("0002")]
    if set(keys) - {f"{tag:08X}" for tag in tags}:
        raise InvalidDicom(
            "File Meta Information element misplaced in the data set",
            header.uid("SOPClassUID") or None,
            header.uid("SOPInstanceUID") or None,
        )
    for key in keys:
        del header.json[key]
    header.discarded = tuple(tags)
    if deflated:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        header.dataset_bytes = memoryview(packer.compress(data[end:]) + packer.flush())
        return
    header.dataset_bytes = header.dataset_bytes[end:]
    if header.pixel_offset is not None:
        header.pixel_offset -= end


def _file_meta_prefix(
    data: bytes | memoryview, implicit: bool, little: bool
) -> tuple[int, list[int]]:
    """(where the group 0002 elements that lead `data` end, their tags)."""
    order = "<" if little else ">"
    pos, end, tags = 0, len(data), []
    try:
        while pos + 8 <= end:
            group, element = _UNPACK(order + "HH", data, pos)
            if group != 0x0002:
                break
            if implicit:
                length, value = _UNPACK(order + "I", data, pos + 4)[0], pos + 8
            elif bytes(data[pos + 4 : pos + 6]).decode("latin-1") in headers.LONG_VRS:
                length, value = _UNPACK(order + "I", data, pos + 8)[0], pos + 12
            else:
                length, value = _UNPACK(order + "H", data, pos + 6)[0], pos + 8
            if value + length > end:  # an undefined length too
                break
            tags.append(0x00020000 | element)
            pos = value + length
    except struct.error:
        pass  # the last header is cut short: what follows is not group 0002 of the data set
    return pos, tags


def _check_pixel_encoding(header: Header) -> None:
    """Refuse Pixel Data whose encoding contradicts the transfer syntax: encapsulated
    (undefined length) in a native syntax, or native (defined length) in an encapsulated
    one (PS3.5 A.4 and 8.2).  Such an instance can be neither decoded nor transcoded, so
    it is not understood (0xC000, PS3.4 B.2.3).  Two comparisons on what the header parse
    found already; syntaxes that carry no pixel data of their own are not judged."""
    if header.pixel_tag != 0x7FE00010 or header.pixel_length is None:
        return
    syntax = header.transfer_syntax
    if syntax in uids.WITHOUT_PIXEL_DATA:
        return
    encapsulated = header.pixel_length == 0xFFFFFFFF
    if encapsulated == uids.is_encapsulated(syntax):
        return
    message = (
        "Pixel Data is encapsulated, the transfer syntax is native"
        if encapsulated
        else "Pixel Data is native, the transfer syntax is encapsulated"
    )
    raise InvalidDicom(message, header.uid("SOPClassUID"), header.uid("SOPInstanceUID"))


REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _check_identity(model: dict[str, Any]) -> None:
    values = {k: str(first_value(model.get(_TAGS[k])) or "").strip() for k in REQUIRED}
    known = {k: v if uids.looks_like_uid(v) else None for k, v in values.items()}
    for keyword, value in values.items():
        if not value:
            message = f"missing {keyword}"
        elif known[keyword] is None:
            message = f"{keyword} {value[:70]!r} is not a valid UID"
        else:
            continue
        raise InvalidDicom(message, known["SOPClassUID"], known["SOPInstanceUID"])
