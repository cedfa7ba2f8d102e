"""The seven PDUs of the DICOM upper layer, encoded and decoded (PS3.8 9.3).

Every PDU is `type(1) reserved(1) PDU-length(4) ...`, PDU-length counting what
follows the length field (PS3.8 9.3.1) - `pdu_length` returns that, the one length
helper.  `decode` checks structure only (lengths, item nesting, which items may
appear); `validation` decides what PS3.8 allows.  Reserved fields are sent as zero
and not tested on receipt (PS3.8 9.3.1).

P-DATA-TF is decoded here for completeness (tests, tools); the DIMSE hot path
splits P-DATA bodies with `pdata.split_pdvs` and never builds these objects.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from isthmus.dicom.ul.errors import (
    INVALID_PARAMETER,
    UNEXPECTED_PARAMETER,
    UNRECOGNIZED_PARAMETER,
    UNRECOGNIZED_PDU,
)
from isthmus.dicom.ul.errors import PDUError as PDUError  # re-exported: pdu.PDUError
from isthmus.dicom.ul.items import (
    APPLICATION_CONTEXT,
    APPLICATION_CONTEXT_ITEM,
    PRESENTATION_CONTEXT_AC,
    PRESENTATION_CONTEXT_RQ,
    USER_INFORMATION,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UserInformation,
    item,
    iter_items,
    text,
)
from isthmus.dicom.ul.pdata import P_DATA_TF as P_DATA_TF  # re-exported: pdu.P_DATA_TF
from isthmus.dicom.ul.pdata import split_pdvs

# PDU types (PS3.8 9.3.2-9.3.8)
A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07
PDU_NAMES = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ",
    A_RELEASE_RP: "A-RELEASE-RP",
    A_ABORT: "A-ABORT",
}
PDU_HEADER = 6
# Protocol version, reserved, called and calling AE titles, 32 reserved bytes (table 9-11).
FIXED_LENGTH = 68
# Header, protocol version, reserved, called and calling AE titles: what routing needs.
TITLES_END = 42
# An A-ASSOCIATE-RQ carries at most 128 presentation contexts and some user items;
# anything much larger is not a real request.
MAX_ASSOCIATE_RQ = 1 << 20

# A-ASSOCIATE-RJ result/source/reason (PS3.8 9.3.4, table 9-21)
RESULT_PERMANENT = 1
RESULT_TRANSIENT = 2
SOURCE_SERVICE_USER = 1
SOURCE_SERVICE_PROVIDER_ACSE = 2
SOURCE_SERVICE_PROVIDER_PRESENTATION = 3
REASON_NO_REASON = 1
REASON_APPLICATION_CONTEXT_NOT_SUPPORTED = 2  # source 1
REASON_CALLING_AE_NOT_RECOGNIZED = 3  # source 1
REASON_CALLED_AE_NOT_RECOGNIZED = 7  # source 1
REASON_PROTOCOL_VERSION_NOT_SUPPORTED = 2  # source 2
REASON_LOCAL_LIMIT_EXCEEDED = 2  # source 3

# A-ABORT source (PS3.8 table 9-26)
ABORT_SOURCE_USER = 0
ABORT_SOURCE_PROVIDER = 2


def pdu_length(header: bytes | memoryview) -> int:
    """PDU-length from a PDU's first 6 bytes: the bytes after the header (PS3.8 9.3.1)."""
    if len(header) < PDU_HEADER:
        raise PDUError("PDU shorter than its header", UNRECOGNIZED_PDU)
    return int(struct.unpack_from(">I", header, 2)[0])


def header(pdu_type: int, length: int) -> bytes:
    """The 6-byte header of a PDU whose variable part is `length` bytes."""
    return struct.pack(">BBI", pdu_type, 0, length)


def _ae_title(raw: bytes | memoryview) -> str:
    """An AE title field: leading and trailing spaces are not significant (PS3.5 AE);
    trailing NULs, which some devices pad with, are dropped too."""
    return bytes(raw).decode("ascii", "replace").rstrip("\x00").strip(" ")


def _ae_field(title: str) -> bytes:
    return title.encode("ascii", "replace").ljust(16)[:16]


@dataclass(frozen=True)
class AAssociate:
    """The fields A-ASSOCIATE-RQ (9.3.2) and A-ASSOCIATE-AC (9.3.3) share.

    In an AC the AE titles are echoed and "shall not be tested" (PS3.8 9.3.3).
    `application_context` is "" when the item is missing; `user` is None then too.
    """

    called_aet: str
    calling_aet: str
    protocol_version: int = 1
    application_context: str = APPLICATION_CONTEXT
    user: UserInformation | None = None
    pdu_type: ClassVar[int] = 0

    @property
    def max_length(self) -> int:
        """The peer's Maximum Length Received (PS3.8 D.1); 0: unlimited or not sent."""
        return (self.user.max_length or 0) if self.user else 0

    def _encode(self, contexts: list[bytes]) -> bytes:
        body = b"".join(
            [
                struct.pack(">HH", self.protocol_version, 0),
                _ae_field(self.called_aet),
                _ae_field(self.calling_aet),
                bytes(32),
                item(APPLICATION_CONTEXT_ITEM, self.application_context.encode()),
                *contexts,
                self.user.encode() if self.user else b"",
            ]
        )
        return header(self.pdu_type, len(body)) + body


def _decode_associate(
    data: bytes | memoryview, pdu_type: int, context_item: int
) -> tuple[dict[str, object], list[bytes]]:
    """Fixed fields and items of an A-ASSOCIATE-RQ/AC; the context items' values apart."""
    name = PDU_NAMES[pdu_type]
    end = _checked_length(data, pdu_type)
    if end < PDU_HEADER + FIXED_LENGTH:
        raise PDUError(f"{name} shorter than its fixed fields", INVALID_PARAMETER)
    fields: dict[str, object] = {
        "protocol_version": struct.unpack_from(">H", data, 6)[0],
        "called_aet": _ae_title(data[10:26]),
        "calling_aet": _ae_title(data[26:42]),
        "application_context": "",
    }
    contexts: list[bytes] = []
    seen: set[int] = set()
    for item_type, value in iter_items(data, PDU_HEADER + FIXED_LENGTH, end):
        if item_type == context_item:
            contexts.append(value)
        elif item_type in (APPLICATION_CONTEXT_ITEM, USER_INFORMATION) and item_type not in seen:
            seen.add(item_type)
            if item_type == APPLICATION_CONTEXT_ITEM:
                fields["application_context"] = text(value)
            else:
                fields["user"] = UserInformation.decode(value)
        elif item_type in (APPLICATION_CONTEXT_ITEM, USER_INFORMATION, 0x20, 0x21):
            raise PDUError(f"unexpected item 0x{item_type:02X} in {name}", UNEXPECTED_PARAMETER)
        else:
            raise PDUError(f"unknown item 0x{item_type:02X} in {name}", UNRECOGNIZED_PARAMETER)
    return fields, contexts


@dataclass(frozen=True)
class AAssociateRQ(AAssociate):
    """A-ASSOCIATE-RQ (PS3.8 9.3.2)."""

    contexts: tuple[PresentationContextRQ, ...] = ()
    pdu_type: ClassVar[int] = A_ASSOCIATE_RQ

    @property
    def roles(self) -> tuple[RoleSelection, ...]:
        """The SCP/SCU role selections proposed (PS3.7 D.3.3.4)."""
        return self.user.roles if self.user else ()

    def encode(self) -> bytes:
        return self._encode([cx.encode() for cx in self.contexts])

    @classmethod
    def decode(cls, data: bytes | memoryview) -> AAssociateRQ:
        fields, contexts = _decode_associate(data, A_ASSOCIATE_RQ, PRESENTATION_CONTEXT_RQ)
        rq = tuple(PresentationContextRQ.decode(value) for value in contexts)
        return cls(contexts=rq, **fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AAssociateAC(AAssociate):
    """A-ASSOCIATE-AC (PS3.8 9.3.3)."""

    contexts: tuple[PresentationContextAC, ...] = ()
    pdu_type: ClassVar[int] = A_ASSOCIATE_AC

    def encode(self) -> bytes:
        return self._encode([cx.encode() for cx in self.contexts])

    @classmethod
    def decode(cls, data: bytes | memoryview) -> AAssociateAC:
        fields, contexts = _decode_associate(data, A_ASSOCIATE_AC, PRESENTATION_CONTEXT_AC)
        ac = tuple(PresentationContextAC.decode(value) for value in contexts)
        return cls(contexts=ac, **fields)  # type: ignore[arg-type]


def _checked_length(data: bytes | memoryview, pdu_type: int) -> int:
    """The end of the PDU in `data`, checking its type and that its length is what came."""
    if len(data) < PDU_HEADER or data[0] != pdu_type:
        raise PDUError(f"not an {PDU_NAMES[pdu_type]} PDU", UNRECOGNIZED_PDU)
    end = PDU_HEADER + pdu_length(data)
    if end != len(data):
        raise PDUError(
            f"{PDU_NAMES[pdu_type]} length field says {end - PDU_HEADER}, "
            f"carries {len(data) - PDU_HEADER}",
            INVALID_PARAMETER,
        )
    return end


def check_fixed_length(pdu_type: int, length: int) -> None:
    """A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT have a 4-byte body (PS3.8 9.3.4-9.3.8)."""
    if length != 4:
        raise PDUError(f"{PDU_NAMES[pdu_type]} must be 10 bytes, not {PDU_HEADER + length}")


def _fixed_body(data: bytes | memoryview, pdu_type: int) -> bytes:
    """The 4-byte body of A-ASSOCIATE-RJ, A-RELEASE-RQ/RP or A-ABORT."""
    _checked_length(data, pdu_type)
    check_fixed_length(pdu_type, len(data) - PDU_HEADER)
    return bytes(data[PDU_HEADER:])


@dataclass(frozen=True)
class AAssociateRJ:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4): result, source, reason/diagnostic (table 9-21)."""

    result: int
    source: int
    reason: int
    pdu_type: ClassVar[int] = A_ASSOCIATE_RJ

    def encode(self) -> bytes:
        return header(A_ASSOCIATE_RJ, 4) + bytes([0, self.result, self.source, self.reason])

    @classmethod
    def decode(cls, data: bytes | memoryview) -> AAssociateRJ:
        body = _fixed_body(data, A_ASSOCIATE_RJ)
        return cls(body[1], body[2], body[3])


@dataclass(frozen=True)
class AReleaseRQ:
    """A-RELEASE-RQ (PS3.8 9.3.6)."""

    pdu_type: ClassVar[int] = A_RELEASE_RQ

    def encode(self) -> bytes:
        return header(self.pdu_type, 4) + bytes(4)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> AReleaseRQ:
        _fixed_body(data, cls.pdu_type)
        return cls()


@dataclass(frozen=True)
class AReleaseRP:
    """A-RELEASE-RP (PS3.8 9.3.7)."""

    pdu_type: ClassVar[int] = A_RELEASE_RP

    def encode(self) -> bytes:
        return header(self.pdu_type, 4) + bytes(4)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> AReleaseRP:
        _fixed_body(data, cls.pdu_type)
        return cls()


@dataclass(frozen=True)
class AAbort:
    """A-ABORT (PS3.8 9.3.8): source 0 service user, 2 service provider; the reason is
    significant for source 2 only (table 9-26)."""

    source: int = ABORT_SOURCE_PROVIDER
    reason: int = 0
    pdu_type: ClassVar[int] = A_ABORT

    def encode(self) -> bytes:
        return header(A_ABORT, 4) + bytes([0, 0, self.source, self.reason])

    @classmethod
    def decode(cls, data: bytes | memoryview) -> AAbort:
        body = _fixed_body(data, A_ABORT)
        return cls(body[2], body[3])


@dataclass(frozen=True)
class PDV:
    """A presentation data value item (PS3.8 9.3.5.1, E.2): message control header bit 0
    is command (1) or data set (0), bit 1 last fragment."""

    context_id: int
    control: int
    data: bytes

    @property
    def is_command(self) -> bool:
        return bool(self.control & 1)

    @property
    def is_last(self) -> bool:
        return bool(self.control & 2)


@dataclass(frozen=True)
class PDataTF:
    """P-DATA-TF (PS3.8 9.3.5): one or more PDVs."""

    pdvs: tuple[PDV, ...] = field(default=())
    pdu_type: ClassVar[int] = P_DATA_TF

    def encode(self) -> bytes:
        body = b"".join(
            struct.pack(">IBB", len(v.data) + 2, v.context_id, v.control) + v.data
            for v in self.pdvs
        )
        return header(P_DATA_TF, len(body)) + body

    @classmethod
    def decode(cls, data: bytes | memoryview) -> PDataTF:
        _checked_length(data, P_DATA_TF)
        pdvs = split_pdvs(memoryview(data)[PDU_HEADER:])
        return cls(tuple(PDV(cid, control, bytes(value)) for cid, control, value in pdvs))


PDU = AAssociateRQ | AAssociateAC | AAssociateRJ | PDataTF | AReleaseRQ | AReleaseRP | AAbort
_CLASSES: dict[int, type[PDU]] = {
    A_ASSOCIATE_RQ: AAssociateRQ,
    A_ASSOCIATE_AC: AAssociateAC,
    A_ASSOCIATE_RJ: AAssociateRJ,
    P_DATA_TF: PDataTF,
    A_RELEASE_RQ: AReleaseRQ,
    A_RELEASE_RP: AReleaseRP,
    A_ABORT: AAbort,
}


def decode_pdu(data: bytes | memoryview) -> PDU:
    """Any PDU from its complete bytes (header included)."""
    if len(data) < PDU_HEADER:
        raise PDUError("PDU shorter than its header", UNRECOGNIZED_PDU)
    cls = _CLASSES.get(data[0])
    if cls is None:
        raise PDUError(f"unknown PDU type 0x{data[0]:02X}", UNRECOGNIZED_PDU)
    return cls.decode(data)


def abort(source: int = ABORT_SOURCE_PROVIDER, reason: int = 0) -> bytes:
    """An encoded A-ABORT (PS3.8 9.3.8)."""
    return AAbort(source, reason).encode()


def associate_rj(result: int, source: int, reason: int) -> bytes:
    """An encoded A-ASSOCIATE-RJ (PS3.8 9.3.4)."""
    return AAssociateRJ(result, source, reason).encode()


RELEASE_RQ = AReleaseRQ().encode()
RELEASE_RP = AReleaseRP().encode()


def parse_titles(data: bytes | memoryview) -> AAssociateRQ:
    """The AE titles of an A-ASSOCIATE-RQ from its first TITLES_END bytes (PS3.8 9.3.2),
    for routing before the whole request, which can exceed a socket buffer, has arrived."""
    if len(data) < TITLES_END or data[0] != A_ASSOCIATE_RQ:
        raise PDUError("not an A-ASSOCIATE-RQ PDU", UNRECOGNIZED_PDU)
    if pdu_length(data) < FIXED_LENGTH:
        raise PDUError("A-ASSOCIATE-RQ shorter than its fixed fields")
    return AAssociateRQ(
        _ae_title(data[10:26]),
        _ae_title(data[26:42]),
        protocol_version=struct.unpack_from(">H", data, 6)[0],
    )
