"""PDUs decode and re-encode (isthmus.dicom.ul.pdu and items, PS3.8 9.3, PS3.7 D.3.3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isthmus.dicom.ul import pdu, validation
from isthmus.dicom.ul.items import (
    CommonExtendedNegotiation,
    ExtendedNegotiation,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UnknownItem,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
    item,
)

FIXTURES = Path(__file__).parents[2] / "js" / "dicomnet" / "fixtures" / "dcmtk-pdus.json"
CAPTURED = [
    pytest.param(bytes.fromhex(p["hex"]), id=f"{name}-{n}-{p['from']}")
    for name, pdus in json.loads(FIXTURES.read_text()).items()
    if isinstance(pdus, list)
    for n, p in enumerate(pdus)
]
CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"


@pytest.mark.parametrize("data", CAPTURED)
def test_every_dcmtk_pdu_decodes_validates_and_re_encodes_byte_for_byte(data: bytes) -> None:
    decoded = validation.parse_pdu(data)
    assert decoded.pdu_type == data[0]
    assert decoded.encode() == data


def test_dcmtk_captures_cover_every_pdu_type_but_none() -> None:
    kinds = {p.values[0][0] for p in CAPTURED}
    assert kinds == set(pdu.PDU_NAMES)


def full_user_information() -> UserInformation:
    return UserInformation(
        max_length=16384,
        implementation_class_uid="1.2.3.4",
        implementation_version_name="TEST_1",
        async_window=(4, 2),
        roles=(RoleSelection(CT, True, False), RoleSelection("1.2.840.10008.1.1", False, True)),
        extended=(ExtendedNegotiation(CT, b"\x01\x00\x01"),),
        common_extended=(CommonExtendedNegotiation(CT, "1.2.840.10008.4.2", ("1.2.3", "1.2.4")),),
        user_identity=UserIdentityRQ(2, True, b"user", b"secret"),
        unknown=(UnknownItem(0x5F, b"future"),),
    )


def test_an_associate_rq_with_every_negotiation_sub_item_round_trips() -> None:
    rq = pdu.AAssociateRQ(
        "CALLED",
        "CALLING",
        user=full_user_information(),
        contexts=(
            PresentationContextRQ(1, CT, (IMPLICIT_LE, "1.2.840.10008.1.2.1")),
            PresentationContextRQ(3, "1.2.840.10008.1.1", (IMPLICIT_LE,)),
        ),
    )
    data = rq.encode()
    assert pdu.decode_pdu(data) == rq
    assert validation.parse_associate_rq(data) == rq


def test_an_associate_ac_with_user_identity_and_rejected_contexts_round_trips() -> None:
    ac = pdu.AAssociateAC(
        "CALLED",
        "CALLING",
        user=UserInformation(
            max_length=0, implementation_class_uid="1.2.3", user_identity=UserIdentityAC(b"ok")
        ),
        contexts=(
            PresentationContextAC(1, 0, IMPLICIT_LE),
            PresentationContextAC(3, 3, IMPLICIT_LE),
            PresentationContextAC(5, 4, None),
        ),
    )
    assert validation.parse_associate_ac(ac.encode(), {1, 3, 5}) == ac


@pytest.mark.parametrize(
    "value",
    [
        pdu.AAssociateRJ(1, 1, 7),
        pdu.AReleaseRQ(),
        pdu.AReleaseRP(),
        pdu.AAbort(0, 0),
        pdu.AAbort(2, 6),
        pdu.PDataTF((pdu.PDV(1, 3, b"command"), pdu.PDV(1, 2, b"data"))),
    ],
    ids=lambda v: type(v).__name__,
)
def test_fixed_pdus_and_p_data_round_trip(value: pdu.PDU) -> None:
    assert validation.parse_pdu(value.encode()) == value


def test_pdu_length_is_the_length_after_the_header() -> None:
    """PS3.8 9.3.1: PDU-length counts the bytes after the length field."""
    assert pdu.pdu_length(pdu.RELEASE_RQ) == 4
    assert pdu.pdu_length(pdu.RELEASE_RQ[:6]) == 4


def test_uids_padded_with_nul_or_space_are_read_without_the_padding() -> None:
    rq = pdu.AAssociateRQ(
        "A", "B", user=UserInformation(max_length=0), contexts=(PresentationContextRQ(1, CT, ()),)
    )
    data = bytearray(rq.encode())
    padded = item(0x20, bytes([1, 0, 0, 0]) + item(0x30, CT.encode() + b"\x00"))
    padded += item(0x20, bytes([3, 0, 0, 0]) + item(0x30, CT.encode() + b" "))
    body = bytes(data[6:74]) + item(0x10, b"1.2.840.10008.3.1.1.1\x00") + padded
    body += UserInformation(max_length=0).encode()
    decoded = pdu.AAssociateRQ.decode(pdu.header(1, len(body)) + body)
    assert decoded.application_context == "1.2.840.10008.3.1.1.1"
    assert [cx.abstract_syntax for cx in decoded.contexts] == [CT, CT]


def test_ae_titles_padded_with_nuls_are_read_without_them() -> None:
    data = bytearray(pdu.AAssociateRQ("CALLED", "CALLING").encode())
    data[10:26] = b"CALLED".ljust(16, b"\x00")
    assert pdu.AAssociateRQ.decode(bytes(data)).called_aet == "CALLED"


def test_parse_titles_reads_only_the_routing_fields() -> None:
    rq = pdu.AAssociateRQ("CALLED", "CALLING", protocol_version=3).encode()
    titles = pdu.parse_titles(rq[: pdu.TITLES_END])
    assert (titles.called_aet, titles.calling_aet, titles.protocol_version) == (
        "CALLED",
        "CALLING",
        3,
    )
