"""Checking every PDU the gateway forwards (PS3.8 9.3) against the association's state.

The gateway is a DICOM upper layer *relay*: it does not terminate associations but
it sees both sides, so it follows each association far enough to refuse what a
conforming peer would never send - an unknown or malformed PDU, a PDU out of its
phase (PS3.8 9.2 Table 9-10), a P-DATA-TF larger than the receiver's maximum
length (PS3.8 D.1) or on a presentation context that was not accepted.  A problem
is raised as `PDUProblem` with the A-ABORT reason to send (PS3.8 Table 9-26).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from isthmus.dicom.pdu import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    P_DATA_TF,
    abort,
    associate_rj,
)
from isthmus.dicom.uids import looks_like_uid

PDU_NAMES = {
    1: "A-ASSOCIATE-RQ",
    2: "A-ASSOCIATE-AC",
    3: "A-ASSOCIATE-RJ",
    4: "P-DATA-TF",
    5: "A-RELEASE-RQ",
    6: "A-RELEASE-RP",
    7: "A-ABORT",
}
HEADER = 6
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
MAX_CONTEXTS = 128

# A-ABORT reasons (PS3.8 Table 9-26), source 2 = service provider
REASON_UNRECOGNIZED_PDU = 1
REASON_UNEXPECTED_PDU = 2
REASON_UNRECOGNIZED_PARAMETER = 4
REASON_INVALID_PARAMETER = 6


class PDUProblem(ValueError):
    """A PDU the gateway will not forward; `reason` is the A-ABORT reason."""

    def __init__(self, message: str, reason: int = REASON_INVALID_PARAMETER) -> None:
        super().__init__(message)
        self.reason = reason


def abort_pdu(reason: int = 0, source: int = 2) -> bytes:
    """An A-ABORT PDU (PS3.8 9.3.8), the gateway's argument order."""
    return abort(source, reason)


reject_pdu = associate_rj  # An A-ASSOCIATE-RJ PDU (PS3.8 9.3.4)


def pdu_length(header: bytes) -> int:
    """Length of the variable field, from a 6-byte PDU header."""
    return int.from_bytes(header[2:6], "big")


@dataclass
class Associate:
    """The fields of an A-ASSOCIATE-RQ or -AC the gateway acts on."""

    called_aet: str
    calling_aet: str
    max_length: int
    contexts: dict[int, int]  # id → result (RQ: always 0)


def _aet(raw: bytes, what: str) -> str:
    if any(b < 0x20 or b > 0x7E or b == 0x5C for b in raw):
        raise PDUProblem(f"{what} holds bytes not allowed in an AE title")
    text = raw.decode("ascii").strip()
    if not text:
        raise PDUProblem(f"{what} is empty")
    return text


def _items(data: bytes, start: int, end: int, what: str) -> Iterator[tuple[int, int, int]]:
    """(type, value start, value end) of each item in data[start:end]."""
    offset = start
    while offset < end:
        if end - offset < 4:
            raise PDUProblem(f"truncated item header in {what}")
        kind, length = data[offset], struct.unpack(">H", data[offset + 2 : offset + 4])[0]
        value = offset + 4
        if value + length > end:
            raise PDUProblem(f"item 0x{kind:02X} overruns {what}")
        yield kind, value, value + length
        offset = value + length


def _uid(data: bytes, start: int, end: int, what: str) -> str:
    text = data[start:end].rstrip(b"\x00 ").decode("ascii", "replace")
    if not looks_like_uid(text):
        raise PDUProblem(f"{what} {text!r} is not a UID")
    return text


def parse_associate(pdu: bytes) -> Associate:
    """Validate an A-ASSOCIATE-RQ/AC (PS3.8 9.3.2, 9.3.3) and return its key fields."""
    kind = pdu[0]
    name = PDU_NAMES[kind]
    if len(pdu) < HEADER + 68:
        raise PDUProblem(f"{name} is too short")
    version = struct.unpack(">H", pdu[6:8])[0]
    if not version & 1:
        raise PDUProblem(f"{name} protocol version {version:#x} lacks version 1")
    called, calling = _aet(pdu[10:26], "called AE title"), _aet(pdu[26:42], "calling AE title")
    app_context, max_length, contexts = None, None, {}
    for item, start, end in _items(pdu, HEADER + 68, len(pdu), name):
        if item == 0x10 and app_context is None:
            app_context = _uid(pdu, start, end, "application context name")
        elif item == (0x20 if kind == A_ASSOCIATE_RQ else 0x21):
            context_id, result = _presentation_context(pdu, item, start, end)
            if context_id in contexts:
                raise PDUProblem(f"presentation context ID {context_id} appears twice")
            contexts[context_id] = result
        elif item == 0x50 and max_length is None:
            max_length = _user_information(pdu, start, end)
        else:
            raise PDUProblem(
                f"unexpected item 0x{item:02X} in {name}", REASON_UNRECOGNIZED_PARAMETER
            )
    if app_context is None:
        raise PDUProblem(f"{name} has no application context")
    if max_length is None:
        raise PDUProblem(f"{name} has no user information item")
    if kind == A_ASSOCIATE_RQ and not contexts:
        raise PDUProblem("A-ASSOCIATE-RQ proposes no presentation context")
    if len(contexts) > MAX_CONTEXTS:
        raise PDUProblem(f"{len(contexts)} presentation contexts; at most {MAX_CONTEXTS}")
    return Associate(called, calling, max_length, contexts)


def _presentation_context(pdu: bytes, item: int, start: int, end: int) -> tuple[int, int]:
    if end - start < 4:
        raise PDUProblem("presentation context item too short")
    context_id, result = pdu[start], pdu[start + 2]
    if context_id % 2 == 0:
        raise PDUProblem(f"presentation context ID {context_id} is not odd")
    abstract, transfer = 0, 0
    for sub, s, e in _items(pdu, start + 4, end, "presentation context"):
        if sub == 0x30 and item == 0x20:
            _uid(pdu, s, e, "abstract syntax")
            abstract += 1
        elif sub == 0x40:
            if item == 0x20 or result == 0:  # not significant when rejected (PS3.8 9.3.3.2)
                _uid(pdu, s, e, "transfer syntax")
            transfer += 1
        else:
            raise PDUProblem(
                f"unexpected sub-item 0x{sub:02X} in presentation context {context_id}"
            )
    if item == 0x20:
        if abstract != 1 or transfer == 0:
            raise PDUProblem(
                f"presentation context {context_id} needs one abstract and some transfer syntaxes"
            )
        return context_id, 0
    if result > 4 or (result == 0 and transfer != 1):
        raise PDUProblem(f"presentation context {context_id} result {result} is not valid")
    return context_id, result


def _user_information(pdu: bytes, start: int, end: int) -> int:
    max_length = None
    for sub, s, e in _items(pdu, start, end, "user information"):
        if sub == 0x51:
            if e - s != 4:
                raise PDUProblem("maximum length sub-item is not 4 bytes")
            max_length = int.from_bytes(pdu[s:e], "big")
    if max_length is None:
        raise PDUProblem("user information has no maximum length sub-item (PS3.8 D.1)")
    return max_length


def check_fixed(pdu: bytes) -> None:
    """A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT are exactly 10 bytes (PS3.8 9.3.4-9.3.8)."""
    if len(pdu) != 10:
        raise PDUProblem(f"{PDU_NAMES[pdu[0]]} must be 10 bytes, not {len(pdu)}")
    if pdu[0] == A_ASSOCIATE_RJ and not (1 <= pdu[7] <= 2 and 1 <= pdu[8] <= 3):
        raise PDUProblem("A-ASSOCIATE-RJ result or source is not valid")


def pdv_contexts(pdu: bytes) -> set[int]:
    """Presentation context IDs of the PDVs in a P-DATA-TF, checking the item structure."""
    ids: set[int] = set()
    offset, end = HEADER, len(pdu)
    while offset < end:
        if end - offset < 6:
            raise PDUProblem("truncated PDV item")
        length = struct.unpack(">I", pdu[offset : offset + 4])[0]
        if length < 2 or offset + 4 + length > end:
            raise PDUProblem(f"PDV item length {length} does not fit the PDU")
        if pdu[offset + 5] & 0xFC:
            raise PDUProblem("PDV message control header has reserved bits set")
        ids.add(pdu[offset + 4])
        offset += 4 + length
    if not ids:
        raise PDUProblem("P-DATA-TF carries no PDV")
    return ids


@dataclass
class AssociationState:
    """Where one relayed association is (PS3.8 9.2), seen from the gateway.

    `browser_requests`: True when the browser is the association-requestor
    (outbound, /dicom-ws/associate), False when it accepts (inbound).
    """

    browser_requests: bool
    max_pdu: int
    phase: str = "request"  # request → response → established → released | finished
    proposed: set[int] = field(default_factory=set)
    accepted: set[int] = field(default_factory=set)
    max_length: dict[str, int] = field(default_factory=lambda: {"browser": 0, "peer": 0})
    request: Associate | None = None
    outcome: str = ""  # released | aborted | rejected

    @property
    def finished(self) -> bool:
        return self.phase in ("released", "finished")

    def _role(self, side: str) -> str:
        requestor = "browser" if self.browser_requests else "peer"
        return "requestor" if side == requestor else "acceptor"

    def check(self, pdu: bytes, side: str) -> int:
        """Validate `pdu` sent by `side` ("browser" or "peer") and advance; returns its type."""
        if len(pdu) < HEADER:
            raise PDUProblem("PDU shorter than its header", REASON_UNRECOGNIZED_PDU)
        kind = pdu[0]
        if kind not in PDU_NAMES:
            raise PDUProblem(f"unknown PDU type 0x{kind:02X}", REASON_UNRECOGNIZED_PDU)
        if pdu_length(pdu) != len(pdu) - HEADER:
            raise PDUProblem(
                f"{PDU_NAMES[kind]} length field says {pdu_length(pdu)}, "
                f"carries {len(pdu) - HEADER}"
            )
        if len(pdu) - HEADER > self.max_pdu:
            raise PDUProblem(
                f"{PDU_NAMES[kind]} of {len(pdu) - HEADER} bytes exceeds the gateway "
                f"limit of {self.max_pdu}"
            )
        role = self._role(side)
        handler = {
            A_ASSOCIATE_RQ: self._rq,
            A_ASSOCIATE_AC: self._ac,
            A_ASSOCIATE_RJ: self._rj,
            P_DATA_TF: self._pdata,
            A_RELEASE_RQ: self._release,
            A_RELEASE_RP: self._release,
            A_ABORT: self._abort,
        }[kind]
        handler(pdu, side, role)
        return kind

    def _unexpected(self, pdu: bytes, side: str) -> PDUProblem:
        return PDUProblem(
            f"{PDU_NAMES[pdu[0]]} from the {side} is unexpected while the "
            f"association is in phase {self.phase!r}",
            REASON_UNEXPECTED_PDU,
        )

    def _rq(self, pdu: bytes, side: str, role: str) -> None:
        if self.phase != "request" or role != "requestor":
            raise self._unexpected(pdu, side)
        self.request = parse_associate(pdu)
        self._note_max_length(side, self.request.max_length)
        self.proposed = set(self.request.contexts)
        self.phase = "response"

    def _ac(self, pdu: bytes, side: str, role: str) -> None:
        if self.phase != "response" or role != "acceptor":
            raise self._unexpected(pdu, side)
        ac = parse_associate(pdu)
        unknown = set(ac.contexts) - self.proposed
        if unknown:
            raise PDUProblem(
                f"A-ASSOCIATE-AC answers presentation contexts never proposed: {sorted(unknown)}"
            )
        self._note_max_length(side, ac.max_length)
        self.accepted = {cid for cid, result in ac.contexts.items() if result == 0}
        self.phase = "established"

    def _note_max_length(self, side: str, max_length: int) -> None:
        # What the browser can receive must fit through the gateway (PS3.8 D.1: 0 = unlimited).
        if side == "browser" and not 0 < max_length <= self.max_pdu:
            raise PDUProblem(
                f"maximum length {max_length} must be 1..{self.max_pdu} (the gateway limit)"
            )
        self.max_length[side] = max_length

    def _rj(self, pdu: bytes, side: str, role: str) -> None:
        if self.phase != "response" or role != "acceptor":
            raise self._unexpected(pdu, side)
        check_fixed(pdu)
        self.phase, self.outcome = "finished", "rejected"

    def _pdata(self, pdu: bytes, side: str, role: str) -> None:
        if self.phase not in ("established", "releasing"):
            raise self._unexpected(pdu, side)
        receiver = "peer" if side == "browser" else "browser"
        limit = self.max_length[receiver]
        if limit and len(pdu) - HEADER > limit:
            raise PDUProblem(
                f"P-DATA-TF of {len(pdu) - HEADER} bytes exceeds the {receiver}'s "
                f"maximum length {limit}"
            )
        stray = pdv_contexts(pdu) - self.accepted
        if stray:
            raise PDUProblem(f"PDV on presentation context {sorted(stray)} that was not accepted")

    def _release(self, pdu: bytes, side: str, role: str) -> None:
        check_fixed(pdu)
        if pdu[0] == A_RELEASE_RQ and self.phase in ("established", "releasing"):
            self.phase = "releasing"
        elif pdu[0] == A_RELEASE_RP and self.phase in ("releasing", "released"):
            self.phase, self.outcome = "released", "released"
        else:
            raise self._unexpected(pdu, side)

    def _abort(self, pdu: bytes, side: str, role: str) -> None:
        check_fixed(pdu)
        self.phase, self.outcome = "finished", "aborted"
