"""The bodies of the association relay's envelopes (relay/wire.py)."""

from __future__ import annotations

import os

import pytest

from isthmus.dicom.ul.items import (
    CommonExtendedNegotiation,
    ExtendedNegotiation,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UserIdentityRQ,
)
from isthmus.relay import wire
from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.wire import Message, OpenAnswer, OpenRequest, Reassembler, WireError

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


@pytest.mark.parametrize("dataset", [None, b"", b"\x08\x00\x18\x00" * 1000])
def test_a_dimse_message_round_trips(dataset: bytes | None) -> None:
    message = Message(3, b"\x00\x00\x00\x00\x04\x00\x00\x00\x10\x00\x00\x00", dataset)
    back = Message.decode(message.encode())
    assert back.context_id == 3 and back.command == message.command
    assert (None if back.dataset is None else bytes(back.dataset)) == dataset


@pytest.mark.parametrize(
    "body", [b"", b"\x01\x00\x00\x00\x00\x10abc", b"\x01\x00\x00\x00\x00\x01ab"]
)
def test_a_truncated_or_padded_dimse_body_is_refused(body: bytes) -> None:
    with pytest.raises(WireError):
        Message.decode(body)


def test_a_large_body_is_split_and_joined_again() -> None:
    body = os.urandom(wire.PART_SIZE * 2 + 1000)
    joined = Reassembler()
    pieces = list(wire.split(body))
    assert [(part, parts) for part, parts, _ in pieces] == [(0, 3), (1, 3), (2, 3)]
    results = [joined.add({"seq": 0, "part": p, "parts": n}, bytes(x)) for p, n, x in pieces]
    assert results[:2] == [None, None] and results[2] == body
    assert joined.add({"seq": 1, "part": 0, "parts": 1}, b"next") == b"next"


def test_a_lost_message_is_detected() -> None:
    joined = Reassembler()
    joined.add({"seq": 0, "part": 0, "parts": 1}, b"first")
    with pytest.raises(WireError, match="lost"):
        joined.add({"seq": 2, "part": 0, "parts": 1}, b"third")


def test_a_sealed_part_fits_the_nats_maximum_payload() -> None:
    a, b = SiteIdentity.create("A"), SiteIdentity.create("B")
    header = {"kind": "dimse", "aid": "0" * 16, "seq": 10**9, "part": 99, "parts": 100}
    sealed = a.seal("B", b.keys, header, os.urandom(wire.PART_SIZE))
    assert len(sealed) < 1024 * 1024


def test_open_request_and_answer_round_trip() -> None:
    request = OpenRequest(
        "WORKSTATION",
        "PACSB",
        (PresentationContextRQ(1, CT, (EXPLICIT_LE,)),),
        (RoleSelection(CT, False, True),),
        "00ff00ff",
    )
    assert OpenRequest.decode(request.encode()) == request
    answer = OpenAnswer("abc123", (PresentationContextAC(1, 0, EXPLICIT_LE),), request.roles)
    assert OpenAnswer.decode(answer.encode()) == answer
    refused = OpenAnswer(reject=(2, 3, 1), why="the device cannot be reached")
    assert OpenAnswer.decode(refused.encode()) == refused and refused.kind == wire.REJECT


@pytest.mark.parametrize("cid", ["", "a.b", ">", "*", "x" * 65, "é"])
def test_an_id_that_would_change_a_subject_is_refused(cid: str) -> None:
    body = OpenRequest("A", "B", (), (), "ok").encode().replace(b'"ok"', f'"{cid}"'.encode())
    with pytest.raises(WireError):
        OpenRequest.decode(body)


def test_extended_negotiation_round_trips_and_an_older_router_s_bodies_have_none() -> None:
    find = "1.2.840.10008.5.1.4.1.2.2.1"
    request = OpenRequest(
        "WS",
        "PACSB",
        (PresentationContextRQ(1, CT, (EXPLICIT_LE,)),),
        (),
        "abc123",
        (ExtendedNegotiation(find, b"\x01\x01"),),
        (CommonExtendedNegotiation(CT, "1.2.840.10008.4.2", (CT + ".1",)),),
    )
    assert OpenRequest.decode(request.encode()) == request
    answer = OpenAnswer("def456", extended=(ExtendedNegotiation(find, b"\x00\x01"),))
    assert OpenAnswer.decode(answer.encode()) == answer
    older = OpenRequest.decode(b'{"calling":"WS","called":"P","contexts":[],"roles":[],"cid":"a"}')
    assert older.extended == () and older.common_extended == ()
    assert OpenAnswer.decode(b'{"aid":"b","contexts":[],"roles":[]}').extended == ()


def test_user_identity_and_its_server_response_round_trip() -> None:
    identity = UserIdentityRQ(2, True, b"alice", b"s3cret")
    request = OpenRequest("WS", "PACSB", (), (), "abc123", user_identity=identity)
    assert OpenRequest.decode(request.encode()).user_identity == identity
    assert OpenRequest.decode(OpenRequest("WS", "P", (), (), "a").encode()).user_identity is None
    answer = OpenAnswer("def456", server_response=b"")
    assert OpenAnswer.decode(answer.encode()).server_response == b""
    assert OpenAnswer.decode(OpenAnswer("def456").encode()).server_response is None
