"""Properties of the DICOM-over-WebSocket gateway against hostile browsers (issue 15).

A Python client plays the browser and sends generated and damaged PDUs (every type,
absurd lengths, unknown types, raw bytes, mutated requests) first or inside an
association with the archive.  Every association must end with a documented answer
(docs/dicom-websocket.md: A-ASSOCIATE-AC/RJ, P-DATA, A-RELEASE-RP, an A-ABORT before
close code 4400, or 4402 / 4503 when the archive side gave up, 1000 when it is over),
and the gateway must serve a new association afterwards.

Budget: the Hypothesis profile (tests/conftest.py); `make fuzz` runs many more examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from isthmus.config import Settings
from isthmus.dicom.ul.errors import PDUError
from isthmus.server import Node
from isthmus.testing.net import free_port
from isthmus.testing.strategies import hostile_pdu, mutated
from isthmus.web.dicom_ws.validation import AssociationState

from .dicom_ws_support import (
    IMPLICIT_LE,
    RELEASE_RP,
    RELEASE_RQ,
    associate_ac,
    associate_rq,
    closing,
    echo_rq_command,
    p_data,
    response_status,
    ws,
)

A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA_TF, A_RELEASE_RP, A_ABORT = 2, 3, 4, 6, 7
CLOSE_CODES = {1000, 4400, 4402, 4503}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    folder: Path = tmp_path_factory.mktemp("ws-fuzz")
    settings = replace(
        Settings(
            data=folder,
            dicom_port=free_port(),
            http_port=free_port(),
            index_url=f"sqlite:///{folder / 'index.sqlite'}",
            check_on_start=False,
        ),
        network_timeout=2.0,
        pdu_timeout=2.0,
        dicom_ws_max_pdu=65536,
    )
    with Node(settings) as running:
        yield running


def url(node: Node) -> str:
    return f"ws://127.0.0.1:{node.http_port}/dicom-ws/associate?peer={node.settings.aet}"


def send_all(conn, messages: list[bytes]) -> None:
    for message in messages:
        try:
            conn.send(message)
        except ConnectionClosed:
            return


def still_serving(node: Node) -> None:
    with ws(url(node)) as conn:
        conn.send(associate_rq(node.settings.aet, "AFTERWARDS"))
        assert conn.recv(timeout=30)[0] == A_ASSOCIATE_AC
        conn.send(p_data(1, echo_rq_command()))
        assert response_status(conn.recv(timeout=30)) == 0x0000
        conn.send(RELEASE_RQ)
        assert conn.recv(timeout=30)[0] == A_RELEASE_RP


def check_ending(code: int, pdus: list[bytes]) -> None:
    kinds = [p[0] for p in pdus]
    assert code in CLOSE_CODES, (code, kinds)
    assert all(
        k in (A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA_TF, A_RELEASE_RP, A_ABORT) for k in kinds
    )
    if code == 4400:  # the client erred: it was told so with an A-ABORT
        assert kinds and kinds[-1] == A_ABORT, kinds


@given(first=st.one_of(mutated(), hostile_pdu()))
def test_any_first_message_from_the_browser_gets_a_documented_answer(
    gateway: Node, first: bytes
) -> None:
    with ws(url(gateway)) as conn:
        send_all(conn, [first, RELEASE_RQ])
        code, _reason, pdus = closing(conn)
    check_ending(code, pdus)
    still_serving(gateway)


@given(middle=st.lists(hostile_pdu(), min_size=1, max_size=3))
# Found by this property: A-RELEASE-RQ twice (reserved bytes set).  The archive released
# and closed; the gateway's write of the next PDU failed and it closed with 1011.
@example(middle=[b"\x05\x0e\x00\x00\x00\x04\x00\x10\x00\x04"] * 2)
def test_any_pdus_inside_an_association_get_a_documented_answer(
    gateway: Node, middle: list[bytes]
) -> None:
    with ws(url(gateway)) as conn:
        conn.send(associate_rq(gateway.settings.aet, "FUZZER"))
        assert conn.recv(timeout=30)[0] == A_ASSOCIATE_AC
        send_all(conn, [*middle, RELEASE_RQ])
        code, _reason, pdus = closing(conn)
    check_ending(code, pdus)
    still_serving(gateway)


def established() -> AssociationState:
    state = AssociationState(browser_requests=True, max_pdu=65536)
    state.check(associate_rq("ISTHMUS", "BROWSER"), "browser")
    state.check(associate_ac("BROWSER", "ISTHMUS", [(1, 0, IMPLICIT_LE)]), "peer")
    return state


def test_a_second_release_request_from_the_same_side_is_unexpected() -> None:
    """Found by the property above: a browser repeating A-RELEASE-RQ (PS3.8 Sta7)."""
    state = established()
    state.check(RELEASE_RQ, "browser")
    with pytest.raises(PDUError, match="unexpected"):
        state.check(RELEASE_RQ, "browser")


def test_a_release_answer_must_answer_the_other_sides_request() -> None:
    state = established()
    state.check(RELEASE_RQ, "browser")
    with pytest.raises(PDUError, match="unexpected"):
        state.check(RELEASE_RP, "browser")
    state.check(RELEASE_RP, "peer")
    assert state.finished


def test_a_release_collision_is_still_allowed() -> None:
    state = established()
    state.check(RELEASE_RQ, "browser")
    state.check(RELEASE_RQ, "peer")
    state.check(RELEASE_RP, "peer")
    state.check(RELEASE_RP, "browser")
    assert state.finished


def test_a_repeated_release_request_is_answered_without_a_gateway_error(gateway: Node) -> None:
    """The peer answered the first one and closed: the browser gets 1000 or, when the
    gateway saw the repeat first, an A-ABORT and 4400; never 1011 "gateway error"."""
    for _ in range(5):
        with ws(url(gateway)) as conn:
            conn.send(associate_rq(gateway.settings.aet, "FUZZER"))
            assert conn.recv(timeout=30)[0] == A_ASSOCIATE_AC
            send_all(conn, [RELEASE_RQ, RELEASE_RQ])
            code, _reason, pdus = closing(conn)
        check_ending(code, pdus)
