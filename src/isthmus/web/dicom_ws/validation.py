"""The gateway's phase machine: which PDU may come from which side when (PS3.8 9.2).

The gateway is a DICOM upper layer *relay*: it does not terminate associations but
it sees both sides, so it follows each association far enough to refuse what a
conforming peer would never send - a PDU out of its phase (PS3.8 9.2 table 9-10), a
P-DATA-TF larger than the receiver's maximum length (PS3.8 D.1) or on a presentation
context that was not accepted.  What a PDU may contain is not decided here: every
PDU is decoded and validated by `isthmus.dicom.ul.validation`, the validator the
DIMSE acceptor uses, so the gateway and the acceptor accept the same PDUs.  A
problem is raised as `PDUError` with the A-ABORT reason to send (PS3.8 table 9-26).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from isthmus.dicom.ul import pdata, pdu, validation
from isthmus.dicom.ul.errors import UNEXPECTED_PDU, UNRECOGNIZED_PDU, PDUError
from isthmus.dicom.ul.pdu import PDU_HEADER, PDU_NAMES


@dataclass
class AssociationState:
    """Where one relayed association is (PS3.8 9.2), seen from the gateway.

    `browser_requests`: True when the browser is the association-requestor
    (outbound, /dicom-ws/associate), False when it accepts (inbound).
    """

    browser_requests: bool
    max_pdu: int
    phase: str = "request"  # request → response → established → releasing → released | finished
    proposed: set[int] = field(default_factory=set)
    accepted: set[int] = field(default_factory=set)
    max_length: dict[str, int] = field(default_factory=lambda: {"browser": 0, "peer": 0})
    request: pdu.AAssociateRQ | None = None
    outcome: str = ""  # released | aborted | rejected
    release_requested: set[str] = field(default_factory=set)  # sides that sent A-RELEASE-RQ

    @property
    def finished(self) -> bool:
        return self.phase in ("released", "finished")

    def _role(self, side: str) -> str:
        requestor = "browser" if self.browser_requests else "peer"
        return "requestor" if side == requestor else "acceptor"

    def check(self, data: bytes, side: str) -> int:
        """Validate the PDU `data` sent by `side` ("browser" or "peer") and advance;
        returns its type."""
        if len(data) < PDU_HEADER:
            raise PDUError("PDU shorter than its header", UNRECOGNIZED_PDU)
        kind = data[0]
        if kind not in PDU_NAMES:
            raise PDUError(f"unknown PDU type 0x{kind:02X}", UNRECOGNIZED_PDU)
        if pdu.pdu_length(data) != len(data) - PDU_HEADER:
            raise PDUError(
                f"{PDU_NAMES[kind]} length field says {pdu.pdu_length(data)}, "
                f"carries {len(data) - PDU_HEADER}"
            )
        if len(data) - PDU_HEADER > self.max_pdu:
            raise PDUError(
                f"{PDU_NAMES[kind]} of {len(data) - PDU_HEADER} bytes exceeds the gateway "
                f"limit of {self.max_pdu}"
            )
        handler = {
            pdu.A_ASSOCIATE_RQ: self._rq,
            pdu.A_ASSOCIATE_AC: self._ac,
            pdu.A_ASSOCIATE_RJ: self._rj,
            pdu.P_DATA_TF: self._pdata,
            pdu.A_RELEASE_RQ: self._release,
            pdu.A_RELEASE_RP: self._release,
            pdu.A_ABORT: self._abort,
        }[kind]
        handler(data, side, self._role(side))
        return kind

    def _unexpected(self, data: bytes, side: str) -> PDUError:
        return PDUError(
            f"{PDU_NAMES[data[0]]} from the {side} is unexpected while the "
            f"association is in phase {self.phase!r}",
            UNEXPECTED_PDU,
        )

    def _rq(self, data: bytes, side: str, role: str) -> None:
        if self.phase != "request" or role != "requestor":
            raise self._unexpected(data, side)
        self.request = validation.parse_associate_rq(data)
        self._note_max_length(side, self.request.max_length)
        self.proposed = {cx.context_id for cx in self.request.contexts}
        self.phase = "response"

    def _ac(self, data: bytes, side: str, role: str) -> None:
        if self.phase != "response" or role != "acceptor":
            raise self._unexpected(data, side)
        ac = validation.parse_associate_ac(data, self.proposed)
        self._note_max_length(side, ac.max_length)
        self.accepted = {cx.context_id for cx in ac.contexts if cx.result == 0}
        self.phase = "established"

    def _note_max_length(self, side: str, max_length: int) -> None:
        # What the browser can receive must fit through the gateway (PS3.8 D.1: 0 = unlimited).
        if side == "browser" and not 0 < max_length <= self.max_pdu:
            raise PDUError(
                f"maximum length {max_length} must be 1..{self.max_pdu} (the gateway limit)"
            )
        self.max_length[side] = max_length

    def _rj(self, data: bytes, side: str, role: str) -> None:
        if self.phase != "response" or role != "acceptor":
            raise self._unexpected(data, side)
        validation.validate_associate_rj(pdu.AAssociateRJ.decode(data))
        self.phase, self.outcome = "finished", "rejected"

    def _pdata(self, data: bytes, side: str, role: str) -> None:
        if self.phase not in ("established", "releasing"):
            raise self._unexpected(data, side)
        receiver = "peer" if side == "browser" else "browser"
        limit = self.max_length[receiver]
        if limit and len(data) - PDU_HEADER > limit:
            raise PDUError(
                f"P-DATA-TF of {len(data) - PDU_HEADER} bytes exceeds the {receiver}'s "
                f"maximum length {limit}"
            )
        pdata.split_pdvs(memoryview(data)[PDU_HEADER:], self.accepted)

    def _release(self, data: bytes, side: str, role: str) -> None:
        kind = pdu.decode_pdu(data).pdu_type  # checks the length
        if (
            kind == pdu.A_RELEASE_RQ
            and self.phase in ("established", "releasing")
            and side not in self.release_requested  # once per side (PS3.8 Sta7: not again)
        ):
            self.release_requested.add(side)
            self.phase = "releasing"
        elif (
            kind == pdu.A_RELEASE_RP
            and self.phase in ("releasing", "released")
            and self.release_requested - {side}  # answers the other side's request
        ):
            self.phase, self.outcome = "released", "released"
        else:
            raise self._unexpected(data, side)

    def _abort(self, data: bytes, side: str, role: str) -> None:
        pdu.AAbort.decode(data)
        self.phase, self.outcome = "finished", "aborted"
