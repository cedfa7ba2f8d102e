"""One validator for every PDU Isthmus receives, with one strictness policy (PS3.8 9.3).

The DIMSE acceptor and requestor and the WebSocket gateway all call this module, so a
PDU one door accepts the others accept too.  The policy is what PS3.8 (and PS3.7
Annex D for the negotiation sub-items) requires, checked on receipt:

- association PDUs: AE titles are AE values (PS3.5 6.2: no control characters, no
  backslash, not empty) in a request; an application context item and a user
  information item with a Maximum Length sub-item (PS3.8 9.3.2, D.1); in a request
  1..128 presentation contexts (PS3.8 9.3.2.2), odd and distinct IDs, one abstract
  syntax and at least one transfer syntax each; every such name a UID;
- an acceptance answers only proposed contexts, with a result of 0..4 and one
  transfer syntax when accepted (PS3.8 9.3.3.2);
- A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT are 10 bytes; an RJ's result and
  source are defined values (PS3.8 9.3.4);
- P-DATA-TF: one or more PDVs that fit the PDU (`pdata.split_pdvs`).

Not tested, as PS3.8 says: reserved fields (9.3.1), the AE titles of an
A-ASSOCIATE-AC (9.3.3), the transfer syntax of a context that was not accepted
(9.3.3.2), bits 2-7 of a PDV's control header (E.2).  Left to negotiation, not
validation: the protocol version and the application context name, which an
acceptor answers with an A-ASSOCIATE-RJ (PS3.8 9.3.4), and unknown user information
sub-items, which are ignored (PS3.7 D.3.3).

Leniencies, because real devices need them:

- UIDs and names padded with trailing NULs or spaces are accepted (stripped on
  decode, `items.text`): PS3.8 9.3.2.2 says they are not padded, but implementations
  pad them to even length as PS3.5 does for data elements.
- AE titles padded with NULs instead of spaces are accepted (stripped on decode).
- The Implementation Class UID sub-item (PS3.7 D.3.3.2) may be missing or not be a
  UID: it is informative, and some devices send none or a malformed one.
- A presentation context of an A-ASSOCIATE-AC that was not accepted may carry no
  transfer syntax sub-item at all: its value is not significant (PS3.8 9.3.3.2) and
  some implementations leave the item out.
"""

from __future__ import annotations

from collections.abc import Container

from isthmus.dicom.uids import looks_like_uid
from isthmus.dicom.ul.errors import INVALID_PARAMETER, PDUError
from isthmus.dicom.ul.items import UserInformation
from isthmus.dicom.ul.pdu import (
    PDU,
    AAssociate,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    decode_pdu,
)

MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: IDs are odd numbers 1..255


def ae_title(title: str, what: str) -> str:
    """An AE title value (PS3.5 6.2 AE): printable ASCII without backslash, not empty."""
    if any(c < " " or c > "~" or c == "\\" for c in title):
        raise PDUError(f"{what} holds bytes not allowed in an AE title")
    if not title:
        raise PDUError(f"{what} is empty")
    return title


def uid(value: str, what: str) -> str:
    if not looks_like_uid(value):
        raise PDUError(f"{what} {value!r} is not a UID")
    return value


def _context_id(context_id: int, seen: set[int]) -> None:
    if context_id % 2 == 0:
        raise PDUError(f"presentation context ID {context_id} is not odd")
    if context_id in seen:
        raise PDUError(f"presentation context ID {context_id} appears twice")
    seen.add(context_id)


def _common(pdu: AAssociate, name: str) -> UserInformation:
    if not pdu.application_context:
        raise PDUError(f"{name} has no application context")
    uid(pdu.application_context, "application context name")
    if pdu.user is None:
        raise PDUError(f"{name} has no user information item")
    if pdu.user.max_length is None:
        raise PDUError("user information has no maximum length sub-item (PS3.8 D.1)")
    return pdu.user


def validate_associate_rq(rq: AAssociateRQ) -> AAssociateRQ:
    """Check an A-ASSOCIATE-RQ against PS3.8 9.3.2 (the policy in the module docstring)."""
    ae_title(rq.called_aet, "called AE title")
    ae_title(rq.calling_aet, "calling AE title")
    _common(rq, "A-ASSOCIATE-RQ")
    if not rq.contexts:
        raise PDUError("A-ASSOCIATE-RQ proposes no presentation context")
    if len(rq.contexts) > MAX_CONTEXTS:
        raise PDUError(f"{len(rq.contexts)} presentation contexts; at most {MAX_CONTEXTS}")
    seen: set[int] = set()
    for cx in rq.contexts:
        _context_id(cx.context_id, seen)
        if cx.abstract_count != 1 or not cx.transfer_syntaxes:
            raise PDUError(
                f"presentation context {cx.context_id} needs one abstract and some "
                "transfer syntaxes"
            )
        uid(cx.abstract_syntax, "abstract syntax")
        for ts in cx.transfer_syntaxes:
            uid(ts, "transfer syntax")
    return rq


def validate_associate_ac(ac: AAssociateAC, proposed: Container[int] | None = None) -> AAssociateAC:
    """Check an A-ASSOCIATE-AC against PS3.8 9.3.3; with `proposed`, the IDs of the
    request's contexts, an answer to any other context is refused."""
    _common(ac, "A-ASSOCIATE-AC")
    seen: set[int] = set()
    for cx in ac.contexts:
        _context_id(cx.context_id, seen)
        if cx.result > 4:
            raise PDUError(f"presentation context {cx.context_id} result {cx.result} is not valid")
        if cx.result == 0:
            if cx.transfer_count != 1 or cx.transfer_syntax is None:
                raise PDUError(
                    f"presentation context {cx.context_id} result 0 needs one transfer syntax"
                )
            uid(cx.transfer_syntax, "transfer syntax")
    if proposed is not None:
        unknown = sorted(cx.context_id for cx in ac.contexts if cx.context_id not in proposed)
        if unknown:
            raise PDUError(
                f"A-ASSOCIATE-AC answers presentation contexts never proposed: {unknown}"
            )
    return ac


def validate_associate_rj(rj: AAssociateRJ) -> AAssociateRJ:
    """PS3.8 9.3.4 table 9-21: result 1 or 2, source 1 to 3."""
    if not (1 <= rj.result <= 2 and 1 <= rj.source <= 3):
        raise PDUError("A-ASSOCIATE-RJ result or source is not valid", INVALID_PARAMETER)
    return rj


def parse_associate_rq(data: bytes | memoryview) -> AAssociateRQ:
    """Decode and validate a complete A-ASSOCIATE-RQ."""
    return validate_associate_rq(AAssociateRQ.decode(data))


def parse_associate_ac(
    data: bytes | memoryview, proposed: Container[int] | None = None
) -> AAssociateAC:
    """Decode and validate a complete A-ASSOCIATE-AC."""
    return validate_associate_ac(AAssociateAC.decode(data), proposed)


def parse_pdu(data: bytes | memoryview) -> PDU:
    """Decode and validate any complete PDU (header included)."""
    pdu = decode_pdu(data)
    if isinstance(pdu, AAssociateRQ):
        validate_associate_rq(pdu)
    elif isinstance(pdu, AAssociateAC):
        validate_associate_ac(pdu)
    elif isinstance(pdu, AAssociateRJ):
        validate_associate_rj(pdu)
    return pdu
