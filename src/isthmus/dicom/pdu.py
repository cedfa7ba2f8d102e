"""The few PDU facts the association router needs before pynetdicom takes over (PS3.8 9.3)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_RJ = 0x03
A_ABORT = 0x07
PDU_HEADER = 6
# An A-ASSOCIATE-RQ carries at most 128 presentation contexts and some user items;
# anything much larger is not a real request.
MAX_ASSOCIATE_RQ = 1 << 20
# Header, protocol version, reserved, called and calling AE titles: what routing needs.
TITLES_END = 42
# The fixed fields of an A-ASSOCIATE-RQ after its 6-byte header (PS3.8 table 9-11).
FIXED_LENGTH = 68
# The smallest Maximum Length Received (PS3.8 D.1) through which a P-DATA-TF can carry
# data: a PDV item is 4 bytes of length, a context ID, a control header and a fragment,
# whose length must be even (DCMTK aborts on odd fragments): 2 bytes at least.
MIN_PEER_MAX_LENGTH = 8

# A-ASSOCIATE-RJ result/source/reason (PS3.8 9.3.4, table 9-21)
RESULT_PERMANENT = 1
RESULT_TRANSIENT = 2
SOURCE_SERVICE_USER = 1
SOURCE_SERVICE_PROVIDER_ACSE = 2
SOURCE_SERVICE_PROVIDER_PRESENTATION = 3
REASON_NO_REASON = 1
REASON_CALLING_AE_NOT_RECOGNIZED = 3
REASON_CALLED_AE_NOT_RECOGNIZED = 7
REASON_LOCAL_LIMIT_EXCEEDED = 2  # with source 3: presentation-related


class PDUError(ValueError):
    """Bytes that are not the PDU they claim to be."""


A_ASSOCIATE_AC = 0x02
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
PDU_TYPES = (
    A_ASSOCIATE_RQ,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    P_DATA_TF,
    A_RELEASE_RQ,
    A_RELEASE_RP,
    A_ABORT,
)
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # PS3.7 A.2.1

# A-ABORT reasons when the source is the service provider (PS3.8 9.3.8, table 9-26)
ABORT_UNRECOGNIZED_PDU = 1
ABORT_UNEXPECTED_PDU = 2
ABORT_UNRECOGNIZED_PARAMETER = 4
ABORT_UNEXPECTED_PARAMETER = 5
ABORT_INVALID_PARAMETER = 6


@dataclass(frozen=True)
class PresentationContextRQ:
    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class RoleSelection:
    sop_class: str
    scu_role: bool
    scp_role: bool


@dataclass(frozen=True)
class AssociateRequest:
    """The parts of an A-ASSOCIATE-RQ (PS3.8 9.3.2) routing and acceptance need."""

    called_aet: str
    calling_aet: str
    protocol_version: int = 1
    application_context: str = APPLICATION_CONTEXT
    contexts: tuple[PresentationContextRQ, ...] = ()
    max_length: int = 0
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    roles: tuple[RoleSelection, ...] = ()
    async_window: bool = False


def pdu_length(header: bytes) -> int:
    """Total length of a PDU (header included) from its first 6 bytes."""
    if len(header) < PDU_HEADER:
        raise PDUError("short PDU header")
    return PDU_HEADER + struct.unpack(">I", header[2:6])[0]


def parse_associate_rq(pdu: bytes) -> AssociateRequest:
    """Parse an A-ASSOCIATE-RQ (PS3.8 9.3.2): AE titles, contexts, user information."""
    if len(pdu) < 74 or pdu[0] != A_ASSOCIATE_RQ:
        raise PDUError("not an A-ASSOCIATE-RQ PDU")
    if pdu_length(pdu[:6]) > len(pdu):
        raise PDUError("truncated A-ASSOCIATE-RQ")
    end = pdu_length(pdu[:6])
    called = pdu[10:26].decode("ascii", "replace").strip(" \x00")
    calling = pdu[26:42].decode("ascii", "replace").strip(" \x00")
    fields: dict = {"protocol_version": struct.unpack(">H", pdu[6:8])[0]}
    contexts: list[PresentationContextRQ] = []
    for item_type, body in _items(pdu, 74, end):
        if item_type == 0x10:
            fields["application_context"] = _uid(body)
        elif item_type == 0x20:
            contexts.append(_presentation_context(body))
        elif item_type == 0x50:
            fields.update(_user_information(body))
        else:
            raise PDUError(f"unexpected item 0x{item_type:02X} in A-ASSOCIATE-RQ")
    return AssociateRequest(called, calling, contexts=tuple(contexts), **fields)


def parse_titles(data: bytes) -> AssociateRequest:
    """The AE titles of an A-ASSOCIATE-RQ from its first TITLES_END bytes (PS3.8 9.3.2),
    for routing before the whole request, which can exceed a socket buffer, has arrived."""
    if len(data) < TITLES_END or data[0] != A_ASSOCIATE_RQ:
        raise PDUError("not an A-ASSOCIATE-RQ PDU")
    if pdu_length(data[:PDU_HEADER]) < PDU_HEADER + FIXED_LENGTH:
        raise PDUError("A-ASSOCIATE-RQ shorter than its fixed fields")
    return AssociateRequest(
        data[10:26].decode("ascii", "replace").strip(" \x00"),
        data[26:42].decode("ascii", "replace").strip(" \x00"),
        protocol_version=struct.unpack(">H", data[6:8])[0],
    )


def _items(data: bytes, pos: int, end: int) -> list[tuple[int, bytes]]:
    items = []
    while pos < end:
        if end - pos < 4:
            raise PDUError("truncated item header")
        item_type = data[pos]
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if pos + 4 + length > end:
            raise PDUError(f"item 0x{item_type:02X} overruns its PDU")
        items.append((item_type, data[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return items


def _uid(body: bytes) -> str:
    return body.decode("ascii", "replace").strip(" \x00")


def _presentation_context(body: bytes) -> PresentationContextRQ:
    if len(body) < 4:
        raise PDUError("short presentation context item")
    abstract, syntaxes = "", []
    for sub_type, sub in _items(body, 4, len(body)):
        if sub_type == 0x30:
            abstract = _uid(sub)
        elif sub_type == 0x40:
            syntaxes.append(_uid(sub))
    if not abstract or not syntaxes:
        raise PDUError(f"presentation context {body[0]} lacks abstract or transfer syntax")
    return PresentationContextRQ(body[0], abstract, tuple(syntaxes))


def _user_information(body: bytes) -> dict:
    out: dict = {}
    roles = []
    for sub_type, sub in _items(body, 0, len(body)):
        if sub_type == 0x51 and len(sub) == 4:
            out["max_length"] = struct.unpack(">I", sub)[0]
        elif sub_type == 0x52:
            out["implementation_class_uid"] = _uid(sub)
        elif sub_type == 0x55:
            out["implementation_version_name"] = sub.decode("ascii", "replace").strip()
        elif sub_type == 0x53:
            out["async_window"] = True
        elif sub_type == 0x54 and len(sub) >= 4:
            uid_length = struct.unpack(">H", sub[:2])[0]
            if len(sub) >= 2 + uid_length + 2:
                roles.append(
                    RoleSelection(
                        _uid(sub[2 : 2 + uid_length]),
                        bool(sub[2 + uid_length]),
                        bool(sub[3 + uid_length]),
                    )
                )
    out["roles"] = tuple(roles)
    return out


def item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def associate_ac(
    rq: AssociateRequest,
    results: list[tuple[int, int, str]],
    max_length: int,
    implementation_class_uid: str,
    implementation_version_name: str,
    roles: tuple[RoleSelection, ...] = (),
) -> bytes:
    """An A-ASSOCIATE-AC (PS3.8 9.3.3); results are (context id, result, transfer syntax),
    roles the SCP/SCU role selections we accept (PS3.7 D.3.3.4)."""
    body = [item(0x10, APPLICATION_CONTEXT.encode())]
    for context_id, result, syntax in results:
        body.append(item(0x21, bytes([context_id, 0, result, 0]) + item(0x40, syntax.encode())))
    user = item(0x51, struct.pack(">I", max_length)) + item(0x52, implementation_class_uid.encode())
    for role in roles:
        uid = role.sop_class.encode()
        user += item(
            0x54, struct.pack(">H", len(uid)) + uid + bytes([role.scu_role, role.scp_role])
        )
    user += item(0x55, implementation_version_name.encode())
    body.append(item(0x50, user))
    variable = b"".join(body)
    fixed = (
        struct.pack(">HH", 1, 0)
        + rq.called_aet.encode().ljust(16)[:16]
        + rq.calling_aet.encode().ljust(16)[:16]
        + b"\x00" * 32
    )
    payload = fixed + variable
    return struct.pack(">BBI", A_ASSOCIATE_AC, 0, len(payload)) + payload


def release_rp() -> bytes:
    return struct.pack(">BBI", A_RELEASE_RP, 0, 4) + b"\x00" * 4


def associate_rj(result: int, source: int, reason: int) -> bytes:
    """An A-ASSOCIATE-RJ PDU (PS3.8 9.3.4)."""
    return struct.pack(">BBIBBBB", A_ASSOCIATE_RJ, 0, 4, 0, result, source, reason)


def abort(source: int = 2, reason: int = 0) -> bytes:
    """An A-ABORT PDU (PS3.8 9.3.8); source 2 = service provider."""
    return struct.pack(">BBIBBBB", A_ABORT, 0, 4, 0, 0, source, reason)
