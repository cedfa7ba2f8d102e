"""DIMSE messages: command sets (PS3.7 6.3, 9.3, E) and query/retrieve identifiers.

P-DATA framing and socket I/O are the upper layer's (PS3.8): `isthmus.dicom.ul`.

Command sets are always Implicit VR Little Endian, group 0000.  A command is
held as {element number: raw value bytes}; helpers read and build the few fields
the services use.
"""

from __future__ import annotations

import struct
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from isthmus.dicom import uids

# Command Field values (PS3.7 E.1-1)
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_GET_RQ, C_GET_RSP = 0x0010, 0x8010
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_CANCEL_RQ = 0x0FFF
N_EVENT_REPORT_RQ, N_EVENT_REPORT_RSP = 0x0100, 0x8100
N_GET_RQ, N_GET_RSP = 0x0110, 0x8110
N_SET_RQ, N_SET_RSP = 0x0120, 0x8120
N_ACTION_RQ, N_ACTION_RSP = 0x0130, 0x8130
N_CREATE_RQ, N_CREATE_RSP = 0x0140, 0x8140
N_DELETE_RQ, N_DELETE_RSP = 0x0150, 0x8150
NO_DATASET = 0x0101
HAS_DATASET = 0x0000

# Command elements (group 0000)
AFFECTED_SOP_CLASS = 0x0002
REQUESTED_SOP_CLASS = 0x0003
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_RESPONDED = 0x0120
MOVE_DESTINATION = 0x0600
PRIORITY = 0x0700
DATASET_TYPE = 0x0800
STATUS = 0x0900
OFFENDING_ELEMENT = 0x0901
ERROR_COMMENT = 0x0902
ERROR_ID = 0x0903
AFFECTED_SOP_INSTANCE = 0x1000
REQUESTED_SOP_INSTANCE = 0x1001
EVENT_TYPE_ID = 0x1002
ATTRIBUTE_IDENTIFIER_LIST = 0x1005
ACTION_TYPE_ID = 0x1008
REMAINING = 0x1020
COMPLETED = 0x1021
FAILED = 0x1022
WARNING = 0x1023
MOVE_ORIGINATOR_AET = 0x1030
MOVE_ORIGINATOR_ID = 0x1031

_US = {
    COMMAND_FIELD,
    MESSAGE_ID,
    MESSAGE_ID_RESPONDED,
    PRIORITY,
    DATASET_TYPE,
    STATUS,
    REMAINING,
    COMPLETED,
    FAILED,
    WARNING,
    MOVE_ORIGINATOR_ID,
    ERROR_ID,
    EVENT_TYPE_ID,
    ACTION_TYPE_ID,
}
_UI = {AFFECTED_SOP_CLASS, AFFECTED_SOP_INSTANCE, REQUESTED_SOP_CLASS, REQUESTED_SOP_INSTANCE}


class MalformedCommand(ValueError):
    """A command set that does not decode."""


Command = dict[int, bytes]


def decode_command(data: bytes | memoryview) -> Command:
    """Elements of a command set, by element number (PS3.7 6.3.1)."""
    out: Command = {}
    pos = 0
    while pos + 8 <= len(data):
        group, element, length = struct.unpack_from("<HHI", data, pos)
        if group != 0 or pos + 8 + length > len(data):
            raise MalformedCommand("element outside group 0000 or overrunning the command")
        out[element] = bytes(data[pos + 8 : pos + 8 + length])
        pos += 8 + length
    if pos != len(data) or COMMAND_FIELD not in out:
        raise MalformedCommand("command set without Command Field")
    return out


def attribute_tags(tags: tuple[int, ...]) -> bytes:
    """An AT value of `tags` as a command element holds it (Implicit VR Little Endian,
    PS3.7 6.3.1; PS3.5 6.2: each tag its group then its element, 16-bit each), e.g. an
    Offending Element (0000,0901)."""
    return b"".join(struct.pack("<HH", tag >> 16, tag & 0xFFFF) for tag in tags)


def encode_command(fields: dict[int, int | str | bytes]) -> bytes:
    """Encode a command set with its group length, elements in tag order."""
    body = []
    for element in sorted(fields):
        value = fields[element]
        if isinstance(value, int):
            raw = struct.pack("<H", value)
        elif isinstance(value, str):
            raw = value.encode("ascii", "replace")
            pad = b"\x00" if element in _UI else b" "
            raw += pad * (len(raw) % 2)
        else:
            raw = value
        body.append(struct.pack("<HHI", 0, element, len(raw)) + raw)
    payload = b"".join(body)
    return struct.pack("<HHII", 0, 0, 4, len(payload)) + payload


def c_store_rq(
    message_id: int, sop_class: str, sop_instance: str, originator: tuple[str, int] | None = None
) -> bytes:
    """An encoded C-STORE-RQ command set (PS3.7 9.3.1.1); `originator` is the Move
    Originator AE title and Message ID of a C-MOVE sub-operation."""
    fields: dict[int, int | str | bytes] = {
        AFFECTED_SOP_CLASS: sop_class,
        COMMAND_FIELD: C_STORE_RQ,
        MESSAGE_ID: message_id,
        PRIORITY: 0,
        DATASET_TYPE: HAS_DATASET,
        AFFECTED_SOP_INSTANCE: sop_instance,
    }
    if originator:
        fields[MOVE_ORIGINATOR_AET] = originator[0].ljust(16)[:16]
        fields[MOVE_ORIGINATOR_ID] = originator[1]
    return encode_command(fields)


def n_event_report_rq(
    message_id: int, sop_class: str, sop_instance: str, event_type: int, has_dataset: bool
) -> bytes:
    """An encoded N-EVENT-REPORT-RQ command set (PS3.7 10.3.1.1)."""
    return encode_command(
        {
            AFFECTED_SOP_CLASS: sop_class,
            COMMAND_FIELD: N_EVENT_REPORT_RQ,
            MESSAGE_ID: message_id,
            DATASET_TYPE: HAS_DATASET if has_dataset else NO_DATASET,
            AFFECTED_SOP_INSTANCE: sop_instance,
            EVENT_TYPE_ID: event_type,
        }
    )


def sop_class_of(command: Command) -> str:
    """The SOP class a request names: Affected (C-services, N-CREATE, N-EVENT-REPORT) or
    Requested (N-GET, N-SET, N-ACTION, N-DELETE), PS3.7 9.3 and 10.3."""
    return text(command, AFFECTED_SOP_CLASS) or text(command, REQUESTED_SOP_CLASS)


def sop_instance_of(command: Command) -> str:
    """The SOP instance a request names: Affected or Requested (PS3.7 10.3)."""
    return text(command, AFFECTED_SOP_INSTANCE) or text(command, REQUESTED_SOP_INSTANCE)


def tags(command: Command, element: int) -> list[int]:
    """An AT list of a command, e.g. Attribute Identifier List (PS3.7 10.3.2.1)."""
    raw = command.get(element, b"")
    return [
        (group << 16) | elem for group, elem in struct.iter_unpack("<HH", raw[: len(raw) // 4 * 4])
    ]


def us(command: Command, element: int) -> int:
    value = command.get(element, b"")
    return struct.unpack("<H", value[:2])[0] if len(value) >= 2 else 0


def text(command: Command, element: int) -> str:
    return command.get(element, b"").decode("ascii", "replace").strip(" \x00")


def decode_identifier(
    data: bytes | memoryview, transfer_syntax: str, check: bool = True
) -> Dataset:
    """A query/retrieve identifier (or any request's data set) from its encoded bytes;
    ValueError unless they are whole data elements (`_check_structure`: a request cut
    short is not read as another one).  `check=False` for what a peer answered, read
    as leniently as pydicom reads."""
    implicit, little, deflated = uids.encoding(transfer_syntax)
    raw = bytes(data)
    if deflated:
        import zlib

        raw = zlib.decompress(raw, -zlib.MAX_WBITS)
    if check:
        _check_structure(raw, implicit, little)
    return read_dataset(BytesIO(raw), implicit, little)


_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


def _check_structure(raw: bytes, implicit: bool, little: bool) -> None:
    """Raise ValueError unless `raw` is whole data elements (PS3.5 7.1), each value and
    sequence item within the bytes given and every undefined length closed by its
    delimiter (PS3.5 7.5).  pydicom's reader takes what there is: a value cut short
    became the bytes that came, so a truncated identifier was matched as another one."""
    _elements(raw, 0, len(raw), implicit, "<" if little else ">", None)


def _elements(raw: bytes, pos: int, end: int, implicit: bool, order: str, until: int | None) -> int:
    """Walk the elements in raw[pos:end] up to the delimiter `until` (None: to `end`);
    the position after them."""
    while pos < end:
        tag, vr, length, pos = _header(raw, pos, end, implicit, order)
        if tag == until:
            return pos
        if length == _UNDEFINED:
            pos = _items(
                raw, pos, end, implicit or vr == b"UN", order, vr not in (b"SQ", b"UN", None)
            )
        elif pos + length > end:
            raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) ends beyond the data set")
        else:
            if vr == b"SQ":
                _items(raw, pos, pos + length, implicit, order, False)
            pos += length
    if until is not None:
        raise ValueError("an item of undefined length without its delimitation item")
    return pos


def _items(raw: bytes, pos: int, end: int, implicit: bool, order: str, fragments: bool) -> int:
    """Walk the items of a sequence in raw[pos:end] (of undefined length: up to its
    Sequence Delimitation Item); the position after them."""
    while pos < end:
        tag, _vr, length, pos = _header(raw, pos, end, True, order)
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) where an item was due")
        if length == _UNDEFINED and not fragments:
            pos = _elements(raw, pos, end, implicit, order, _ITEM_END)
        elif length == _UNDEFINED or pos + length > end:
            raise ValueError("a sequence item ends beyond the data set")
        else:
            if not fragments:
                _elements(raw, pos, pos + length, implicit, order, None)
            pos += length
    return pos


def _header(
    raw: bytes, pos: int, end: int, implicit: bool, order: str
) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, value length, position of the value) of the element at `pos`;
    delimiters and items have no VR in any syntax (PS3.5 7.5)."""
    if pos + 8 > end:
        raise ValueError("a data element header cut short")
    group, element = struct.unpack_from(order + "HH", raw, pos)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:
        return tag, None, struct.unpack_from(order + "I", raw, pos + 4)[0], pos + 8
    vr = raw[pos + 4 : pos + 6]
    if vr not in _LONG_VRS:
        return tag, vr, struct.unpack_from(order + "H", raw, pos + 6)[0], pos + 8
    if pos + 12 > end:
        raise ValueError("a data element header cut short")
    return tag, vr, struct.unpack_from(order + "I", raw, pos + 8)[0], pos + 12


def failed_sop_instance_uids(identifier: Dataset | None) -> list[str]:
    """The Failed SOP Instance UID List (0008,0058) of a C-MOVE or C-GET response
    (PS3.4 C.4.2.1.4.2, C.4.3.1.3.2).  A list longer than the 64 KiB a UI value's 16-bit
    length holds comes as UN in an explicit VR syntax (PS3.5 6.2.2): its bytes are the
    UIDs, backslash-separated, padded with NUL."""
    if identifier is None or "FailedSOPInstanceUIDList" not in identifier:
        return []
    value = identifier["FailedSOPInstanceUIDList"].value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").rstrip("\x00 ").split("\\")
    elif value is None or isinstance(value, str):
        value = [value] if value else []
    return [str(uid).strip("\x00 ") for uid in value if str(uid).strip("\x00 ")]


def encode_identifier(ds: Dataset, transfer_syntax: str) -> bytes:
    implicit, little, deflated = uids.encoding(transfer_syntax)
    buf = DicomBytesIO()
    buf.is_implicit_VR = implicit
    buf.is_little_endian = little
    write_dataset(buf, ds)
    raw = buf.getvalue()
    return deflate(raw) if deflated else raw


def deflate(raw: bytes) -> bytes:
    """An encoded data set in Deflated Explicit VR Little Endian (PS3.5 A.5)."""
    import zlib

    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw = compressor.compress(raw) + compressor.flush()
    return raw + b"\x00" * (len(raw) % 2)  # PS3.5 A.5: an odd deflated stream gets a NULL byte
