"""Malformed PDUs get the documented answer (isthmus.dicom.ul.validation, PS3.8 9.3).

Each case names the PS3.8 table 9-26 A-ABORT reason every door answers with.
"""

from __future__ import annotations

import struct

import pytest

from isthmus.dicom.ul import errors, pdu, validation
from isthmus.dicom.ul.errors import PDUError
from isthmus.dicom.ul.items import (
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
    item,
)

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
USER = UserInformation(max_length=16384, implementation_class_uid="1.2.3")


def rq_bytes(items: bytes, called: bytes = b"CALLED", calling: bytes = b"CALLING") -> bytes:
    """An A-ASSOCIATE-RQ with these variable items after the fixed fields."""
    fixed = struct.pack(">HH", 1, 0) + called.ljust(16) + calling.ljust(16) + bytes(32)
    return pdu.header(pdu.A_ASSOCIATE_RQ, 68 + len(items)) + fixed + items


APP = item(0x10, b"1.2.840.10008.3.1.1.1")
ECHO = PresentationContextRQ(1, VERIFICATION, (IMPLICIT_LE,)).encode()
GOOD = APP + ECHO + USER.encode()


def test_the_hand_made_good_request_is_valid() -> None:
    assert validation.parse_associate_rq(rq_bytes(GOOD)).contexts[0].abstract_syntax


RQ_CASES = {
    # name: (A-ASSOCIATE-RQ bytes, A-ABORT reason, message)
    "length-field-longer-than-the-pdu": (
        rq_bytes(GOOD)[:-3],
        errors.INVALID_PARAMETER,
        "length field says",
    ),
    "shorter-than-its-fixed-fields": (
        pdu.header(1, 20) + bytes(20),
        errors.INVALID_PARAMETER,
        "shorter than its fixed fields",
    ),
    "truncated-item-header": (rq_bytes(GOOD + b"\x50\x00"), errors.INVALID_PARAMETER, "truncated"),
    "item-overrunning-the-pdu": (
        rq_bytes(APP + ECHO + b"\x50\x00\x01\x00" + bytes(8)),
        errors.INVALID_PARAMETER,
        "overruns",
    ),
    "sub-item-overrunning-its-item": (
        rq_bytes(APP + item(0x20, b"\x01\x00\x00\x00\x30\x00\x00\x40") + USER.encode()),
        errors.INVALID_PARAMETER,
        "overruns",
    ),
    "acceptance-context-item-in-a-request": (
        rq_bytes(APP + PresentationContextAC(1, 0, IMPLICIT_LE).encode() + USER.encode()),
        errors.UNEXPECTED_PARAMETER,
        "unexpected item 0x21",
    ),
    "unknown-item-type": (
        rq_bytes(GOOD + item(0x33, b"x")),
        errors.UNRECOGNIZED_PARAMETER,
        "unknown item 0x33",
    ),
    "second-application-context": (
        rq_bytes(APP + GOOD),
        errors.UNEXPECTED_PARAMETER,
        "unexpected item 0x10",
    ),
    "wrong-sub-item-in-a-context": (
        rq_bytes(APP + item(0x20, b"\x01\x00\x00\x00" + item(0x51, bytes(4))) + USER.encode()),
        errors.UNEXPECTED_PARAMETER,
        "unexpected sub-item 0x51",
    ),
    "no-application-context": (
        rq_bytes(ECHO + USER.encode()),
        errors.INVALID_PARAMETER,
        "no application context",
    ),
    "no-user-information": (rq_bytes(APP + ECHO), errors.INVALID_PARAMETER, "no user information"),
    "no-maximum-length": (
        rq_bytes(APP + ECHO + UserInformation(implementation_class_uid="1.2").encode()),
        errors.INVALID_PARAMETER,
        "no maximum length",
    ),
    "maximum-length-of-3-bytes": (
        rq_bytes(APP + ECHO + item(0x50, item(0x51, bytes(3)))),
        errors.INVALID_PARAMETER,
        "not 4 bytes",
    ),
    "truncated-role-selection": (
        rq_bytes(APP + ECHO + item(0x50, item(0x51, bytes(4)) + item(0x54, b"\x00\x09abc"))),
        errors.INVALID_PARAMETER,
        "role selection sub-item is truncated",
    ),
    "no-presentation-context": (
        rq_bytes(APP + USER.encode()),
        errors.INVALID_PARAMETER,
        "proposes no presentation context",
    ),
    "129-presentation-contexts": (
        rq_bytes(APP + ECHO * 129 + USER.encode()),
        errors.INVALID_PARAMETER,
        "at most 128",
    ),
    "even-context-id": (
        rq_bytes(
            APP + PresentationContextRQ(2, VERIFICATION, (IMPLICIT_LE,)).encode() + USER.encode()
        ),
        errors.INVALID_PARAMETER,
        "ID 2 is not odd",
    ),
    "no-transfer-syntax": (
        rq_bytes(APP + PresentationContextRQ(1, VERIFICATION, ()).encode() + USER.encode()),
        errors.INVALID_PARAMETER,
        "needs one abstract and some transfer",
    ),
    "two-abstract-syntaxes": (
        rq_bytes(
            APP
            + item(0x20, b"\x01\x00\x00\x00" + item(0x30, b"1.2") + item(0x30, b"1.3"))
            + USER.encode()
        ),
        errors.INVALID_PARAMETER,
        "needs one abstract",
    ),
    "abstract-syntax-not-a-uid": (
        rq_bytes(
            APP + PresentationContextRQ(1, "not-a-uid", (IMPLICIT_LE,)).encode() + USER.encode()
        ),
        errors.INVALID_PARAMETER,
        "is not a UID",
    ),
    "backslash-in-calling-ae-title": (
        rq_bytes(GOOD, calling=b"BRO\\WSER"),
        errors.INVALID_PARAMETER,
        "calling AE title holds bytes",
    ),
    "empty-called-ae-title": (rq_bytes(GOOD, called=b""), errors.INVALID_PARAMETER, "is empty"),
}


@pytest.mark.parametrize("name", list(RQ_CASES))
def test_a_malformed_associate_rq_is_refused_with_the_documented_reason(name: str) -> None:
    data, reason, message = RQ_CASES[name]
    with pytest.raises(PDUError, match=message) as caught:
        validation.parse_associate_rq(data)
    assert caught.value.reason == reason


def test_a_protocol_version_or_application_context_is_left_to_negotiation() -> None:
    """PS3.8 9.3.4: the acceptor answers these with A-ASSOCIATE-RJ, not A-ABORT."""
    other = rq_bytes(item(0x10, b"1.2.840.10008.3.1.1.2") + ECHO + USER.encode())
    assert validation.parse_associate_rq(other).application_context.endswith(".2")
    version_2 = bytearray(rq_bytes(GOOD))
    version_2[6:8] = b"\x00\x02"
    assert validation.parse_associate_rq(bytes(version_2)).protocol_version == 2


def test_unknown_user_information_sub_items_are_kept_and_accepted() -> None:
    """PS3.7 D.3.3: what a receiver does not support it ignores."""
    user = item(0x50, item(0x51, bytes(4)) + item(0x5F, b"future"))
    rq = validation.parse_associate_rq(rq_bytes(APP + ECHO + user))
    assert rq.user is not None and rq.user.unknown[0].value == b"future"


def test_leniency_a_missing_implementation_class_uid_is_accepted() -> None:
    user = UserInformation(max_length=0)
    assert validation.parse_associate_rq(rq_bytes(APP + ECHO + user.encode())).max_length == 0


def test_leniency_the_ae_titles_of_an_acceptance_are_not_tested() -> None:
    """PS3.8 9.3.3: echoed, "shall not be tested"."""
    ac = pdu.AAssociateAC(
        "", "BAD\\AE", user=USER, contexts=(PresentationContextAC(1, 0, IMPLICIT_LE),)
    )
    assert validation.parse_associate_ac(ac.encode()).calling_aet == "BAD\\AE"


def test_leniency_a_rejected_context_of_an_acceptance_may_lack_its_transfer_syntax() -> None:
    ac = pdu.AAssociateAC("A", "B", user=USER, contexts=(PresentationContextAC(1, 3, None),))
    assert validation.parse_associate_ac(ac.encode(), {1}).contexts[0].result == 3


@pytest.mark.parametrize(
    "context, message",
    [
        (PresentationContextAC(1, 0, None), "result 0 needs one transfer syntax"),
        (PresentationContextAC(1, 5, IMPLICIT_LE), "result 5 is not valid"),
        (PresentationContextAC(1, 0, "garbage"), "is not a UID"),
        (PresentationContextAC(7, 0, IMPLICIT_LE), r"never proposed: \[7\]"),
    ],
)
def test_a_malformed_acceptance_is_refused(context: PresentationContextAC, message: str) -> None:
    ac = pdu.AAssociateAC("A", "B", user=USER, contexts=(context,))
    with pytest.raises(PDUError, match=message):
        validation.parse_associate_ac(ac.encode(), {1, 3})


@pytest.mark.parametrize(
    "data, reason, message",
    [
        (b"\x09\x00\x00\x00\x00\x04" + bytes(4), errors.UNRECOGNIZED_PDU, "unknown PDU type 0x09"),
        (b"\x05\x00", errors.UNRECOGNIZED_PDU, "shorter than its header"),
        (b"\x05\x00\x00\x00\x00\x05" + bytes(5), errors.INVALID_PARAMETER, "must be 10 bytes"),
        (b"\x07\x00\x00\x00\x00\x02" + bytes(2), errors.INVALID_PARAMETER, "must be 10 bytes"),
        (pdu.associate_rj(3, 1, 1), errors.INVALID_PARAMETER, "result or source"),
        (pdu.associate_rj(1, 4, 1), errors.INVALID_PARAMETER, "result or source"),
        (pdu.header(4, 0), errors.INVALID_PARAMETER, "carries no PDV"),
        (pdu.header(4, 3) + bytes(3), errors.INVALID_PARAMETER, "truncated PDV"),
        (pdu.header(4, 6) + struct.pack(">IBB", 1, 1, 3), errors.INVALID_PARAMETER, "length 1"),
        (pdu.header(4, 6) + struct.pack(">IBB", 9, 1, 3), errors.INVALID_PARAMETER, "does not fit"),
        (pdu.header(4, 10) + bytes(4), errors.INVALID_PARAMETER, "length field says 10"),
    ],
    ids=[
        "unknown-type",
        "shorter-than-header",
        "long-release-rq",
        "short-abort",
        "rj-result-3",
        "rj-source-4",
        "p-data-without-pdv",
        "truncated-pdv-header",
        "pdv-length-below-2",
        "pdv-overrunning",
        "absurd-length-field",
    ],
)
def test_a_malformed_pdu_is_refused_with_the_documented_reason(
    data: bytes, reason: int, message: str
) -> None:
    with pytest.raises(PDUError, match=message) as caught:
        validation.parse_pdu(data)
    assert caught.value.reason == reason


def test_reserved_bits_of_a_pdv_control_header_are_not_tested() -> None:
    """PS3.8 E.2: bits 2-7 are "never checked by the receiver"."""
    data = pdu.header(4, 8) + struct.pack(">IBB", 4, 1, 0xFF) + b"ab"
    assert validation.parse_pdu(data).pdvs[0].control == 0xFF  # type: ignore[union-attr]
