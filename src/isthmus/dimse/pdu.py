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


@dataclass(frozen=True)
class AssociateRequest:
    called_aet: str
    calling_aet: str


def pdu_length(header: bytes) -> int:
    """Total length of a PDU (header included) from its first 6 bytes."""
    if len(header) < PDU_HEADER:
        raise PDUError("short PDU header")
    return PDU_HEADER + struct.unpack(">I", header[2:6])[0]


def parse_associate_rq(pdu: bytes) -> AssociateRequest:
    """Called and calling AE titles of an A-ASSOCIATE-RQ (PS3.8 9.3.2)."""
    if len(pdu) < 74 or pdu[0] != A_ASSOCIATE_RQ:
        raise PDUError("not an A-ASSOCIATE-RQ PDU")
    if pdu_length(pdu[:6]) > len(pdu):
        raise PDUError("truncated A-ASSOCIATE-RQ")
    called = pdu[10:26].decode("ascii", "replace").strip(" \x00")
    calling = pdu[26:42].decode("ascii", "replace").strip(" \x00")
    return AssociateRequest(called, calling)


def associate_rj(result: int, source: int, reason: int) -> bytes:
    """An A-ASSOCIATE-RJ PDU (PS3.8 9.3.4)."""
    return struct.pack(">BBIBBBB", A_ASSOCIATE_RJ, 0, 4, 0, result, source, reason)


def abort(source: int = 2, reason: int = 0) -> bytes:
    """An A-ABORT PDU (PS3.8 9.3.8); source 2 = service provider."""
    return struct.pack(">BBIBBBB", A_ABORT, 0, 4, 0, 0, source, reason)
