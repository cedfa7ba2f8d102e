"""The DICOM-over-WebSocket gateway at the protocol level: a Python client plays the browser
(hand-built PDUs, tests/web/dicom_ws_support.py), the archive and raw TCP callers the peers.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from isthmus.config import Peer, Settings
from isthmus.server import Node
from isthmus.testing.net import free_port
from isthmus.web.auth import hash_token

from .dicom_ws_support import (
    IMPLICIT_LE,
    RELEASE_RP,
    RELEASE_RQ,
    associate_ac,
    associate_rq,
    closing,
    echo_rq_command,
    echo_rsp_command,
    p_data,
    read_pdu,
    response_status,
    ws,
)

TOKEN = "gateway-token-for-tests"
READ_TOKEN = "read-only-token-for-tests"


def settings_in(folder: Path, **changes: Any) -> Settings:
    base = Settings(
        data=folder,
        dicom_port=free_port(),
        http_port=free_port(),
        index_url=f"sqlite:///{folder / 'index.sqlite'}",
        check_on_start=False,
    )
    return replace(base, **changes)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """Developer mode: no credentials, every AE title, every peer (one of them down)."""
    settings = settings_in(
        tmp_path_factory.mktemp("ws"),
        network_timeout=3.0,
        peers=(Peer("DOWN", "127.0.0.1", free_port()),),
    )
    with Node(settings) as running:
        yield running


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """Tokens configured; browsers may reach only the archive and use only WEB1."""
    tokens = {
        "gateway": {"hash": hash_token(TOKEN), "permissions": ["dicom-ws"]},
        "reader": {"hash": hash_token(READ_TOKEN), "permissions": ["read"]},
    }
    settings = settings_in(
        tmp_path_factory.mktemp("ws-secured"),
        tokens=tokens,
        peers=(Peer("PACS1", "127.0.0.1", free_port()),),
        dicom_ws_peers=("ISTHMUS",),
        dicom_ws_aets=("WEB1",),
        cors_origins=("https://viewer.example",),
    )
    with Node(settings) as running:
        yield running


def url(node: Node, path: str) -> str:
    return f"ws://127.0.0.1:{node.http_port}/dicom-ws/{path}"


def establish(conn: Any, called: str = "ISTHMUS", calling: str = "BROWSER") -> bytes:
    conn.send(associate_rq(called, calling))
    return conn.recv(timeout=30)


def echo(conn: Any, message_id: int = 1) -> int:
    conn.send(p_data(1, echo_rq_command(message_id)))
    return response_status(conn.recv(timeout=30))


def refused_status(target: str, **kwargs: Any) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as refused:
        with ws(target, **kwargs):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


# ---------------------------------------------------------------- outbound


def test_outbound_association_echoes_the_archive_and_releases(node: Node) -> None:
    with ws(url(node, "associate?peer=ISTHMUS")) as conn:
        assert conn.subprotocol == "dicom-ws"
        assert establish(conn)[0] == 0x02
        assert echo(conn) == 0x0000
        conn.send(RELEASE_RQ)
        assert conn.recv(timeout=30) == RELEASE_RP


def test_a_peer_that_is_down_closes_the_websocket_with_the_reason(node: Node) -> None:
    with ws(url(node, "associate?peer=DOWN")) as conn:
        code, reason, _ = closing(conn)
    assert code == 4502
    assert "peer DOWN" in reason and "unreachable" in reason


def test_the_called_ae_title_must_be_the_peer(node: Node) -> None:
    with ws(url(node, "associate?peer=ISTHMUS")) as conn:
        conn.send(associate_rq("SOMEONE", "BROWSER"))
        code, reason, pdus = closing(conn)
    assert pdus == [struct.pack(">BBIBBBB", 3, 0, 4, 0, 1, 1, 7)]  # RJ: called AE not recognized
    assert "called AE title must be 'ISTHMUS'" in reason


def test_an_unknown_peer_is_refused_before_the_websocket_opens(node: Node) -> None:
    status, body = refused_status(url(node, "associate?peer=NOWHERE"))
    assert status == 404
    assert "NOWHERE" in body["error"]


# ---------------------------------------------------------------- bad PDUs


def test_garbage_from_the_browser_aborts_that_association_only(node: Node) -> None:
    with (
        ws(url(node, "associate?peer=ISTHMUS")) as good,
        ws(url(node, "associate?peer=ISTHMUS")) as bad,
    ):
        establish(good)
        establish(bad)
        bad.send(b"\x09\x00\x00\x00\x00\x04GARBAGE")
        code, reason, pdus = closing(bad)
        assert code == 4400 and "unknown PDU type 0x09" in reason
        assert pdus == [
            struct.pack(">BBIBBBB", 7, 0, 4, 0, 0, 2, 1)
        ]  # A-ABORT, provider, unrecognized PDU
        assert echo(good) == 0x0000
    with ws(url(node, "associate?peer=ISTHMUS")) as again:
        assert establish(again)[0] == 0x02


@pytest.mark.parametrize(
    "pdu, message",
    [
        (b"\x04\x00\x00\x00\x00\x10" + b"\x00" * 8, "length field says 16, carries 8"),
        (p_data(3, echo_rq_command()), "PDV on presentation context [3] that was not accepted"),
        (b"\x04\x00\x00\x00\x00\x07\x00\x00\x00\x09\x01\x03\x00", "does not fit the PDU"),
        (associate_rq("ISTHMUS", "BROWSER"), "A-ASSOCIATE-RQ from the browser is unexpected"),
        (b"\x05\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00", "A-RELEASE-RQ must be 10 bytes"),
    ],
)
def test_a_malformed_or_misplaced_pdu_aborts_the_association(
    node: Node, pdu: bytes, message: str
) -> None:
    with ws(url(node, "associate?peer=ISTHMUS")) as conn:
        establish(conn)
        conn.send(pdu)
        code, reason, pdus = closing(conn)
    assert code == 4400
    assert message in reason
    assert pdus and pdus[-1][0] == 0x07


def test_a_pdu_above_the_gateway_limit_aborts(tmp_path: Path) -> None:
    with Node(settings_in(tmp_path, dicom_ws_max_pdu=4096)) as small:
        with ws(url(small, "associate?peer=ISTHMUS")) as conn:
            conn.send(associate_rq("ISTHMUS", "BROWSER", max_length=4096))
            assert conn.recv(timeout=30)[0] == 0x02
            conn.send(p_data(1, bytes(5000), command=False))
            code, reason, _ = closing(conn)
    assert code == 4400 and "exceeds the gateway limit of 4096" in reason


def test_p_data_above_the_peers_maximum_length_aborts(node: Node) -> None:
    with ws(url(node, "associate?peer=ISTHMUS")) as conn:
        establish(conn)
        conn.send(p_data(1, bytes(node.settings.max_pdu + 2), command=False))
        code, reason, _ = closing(conn)
    assert code == 4400 and "exceeds the peer's maximum length" in reason


def test_the_browser_must_announce_a_maximum_length_the_gateway_can_carry(node: Node) -> None:
    with ws(url(node, "associate?peer=ISTHMUS")) as conn:
        conn.send(associate_rq("ISTHMUS", "BROWSER", max_length=0))
        code, reason, _ = closing(conn)
    assert code == 4400 and "maximum length 0 must be 1.." in reason


def test_an_idle_association_is_aborted_on_both_sides(tmp_path: Path) -> None:
    with Node(settings_in(tmp_path, dicom_ws_idle_timeout=0.5)) as idle:
        with ws(url(idle, "associate?peer=ISTHMUS")) as conn:
            establish(conn)
            code, reason, pdus = closing(conn)
    assert code == 4408 and "no PDU for 0.5 s" in reason
    assert pdus == [struct.pack(">BBIBBBB", 7, 0, 4, 0, 0, 2, 0)]


def test_open_associations_per_client_are_limited(tmp_path: Path) -> None:
    with Node(settings_in(tmp_path, dicom_ws_max_associations=2)) as limited:
        with (
            ws(url(limited, "associate?peer=ISTHMUS")) as a,
            ws(url(limited, "associate?peer=ISTHMUS")) as b,
        ):
            establish(a)
            establish(b)
            status, body = refused_status(url(limited, "associate?peer=ISTHMUS"))
            assert status == 429 and "at most 2" in body["error"]
        with ws(url(limited, "associate?peer=ISTHMUS")) as c:  # freed when the others closed
            assert establish(c)[0] == 0x02


# ---------------------------------------------------------------- authentication and origin


def test_no_token_is_refused_when_authentication_is_configured(secured: Node) -> None:
    status, body = refused_status(url(secured, "associate?peer=ISTHMUS"))
    assert status == 401 and "authentication required" in body["error"]


def test_a_token_without_the_dicom_ws_permission_is_refused(secured: Node) -> None:
    status, body = refused_status(url(secured, "associate?peer=ISTHMUS"), token=READ_TOKEN)
    assert status == 403 and "dicom-ws" in body["error"]


def test_a_token_as_subprotocol_or_bearer_header_is_accepted(secured: Node) -> None:
    with ws(url(secured, "associate?peer=ISTHMUS"), token=TOKEN) as conn:
        assert establish(conn, calling="WEB1")[0] == 0x02
    from websockets.sync.client import connect

    with connect(
        url(secured, "associate?peer=ISTHMUS"),
        subprotocols=["dicom-ws"],
        additional_headers={"Authorization": f"Bearer {TOKEN}"},
    ) as conn:
        assert establish(conn, calling="WEB1")[0] == 0x02


def test_a_foreign_origin_is_refused(secured: Node) -> None:
    status, body = refused_status(
        url(secured, "associate?peer=ISTHMUS"), token=TOKEN, origin="https://evil.example"
    )
    assert status == 403 and "Origin" in body["error"]
    for origin in ("https://viewer.example", f"http://127.0.0.1:{secured.http_port}"):
        with ws(url(secured, "associate?peer=ISTHMUS"), token=TOKEN, origin=origin) as conn:
            assert establish(conn, calling="WEB1")[0] == 0x02


def test_a_peer_not_in_the_allowed_list_is_refused(secured: Node) -> None:
    status, body = refused_status(url(secured, "associate?peer=PACS1"), token=TOKEN)
    assert status == 403 and "dicom_ws_peers" in body["error"]


def test_a_calling_ae_title_not_allowed_gets_an_associate_reject(secured: Node) -> None:
    with ws(url(secured, "associate?peer=ISTHMUS"), token=TOKEN) as conn:
        conn.send(associate_rq("ISTHMUS", "PACS1"))
        _, _, pdus = closing(conn)
    assert pdus == [struct.pack(">BBIBBBB", 3, 0, 4, 0, 1, 1, 3)]  # calling AE not recognized


def test_registering_titles_outside_the_allowed_list_is_refused(secured: Node) -> None:
    assert refused_status(url(secured, "listen?aet=OTHER"), token=TOKEN)[0] == 403
    assert refused_status(url(secured, "listen?aet=ISTHMUS"), token=TOKEN)[0] == 403
    with ws(url(secured, "listen?aet=WEB1"), token=TOKEN) as listener:
        assert json.loads(listener.recv(timeout=30))["type"] == "registered"


def test_peers_endpoint_says_what_the_client_may_do(secured: Node) -> None:
    import httpx

    base = f"http://127.0.0.1:{secured.http_port}/dicom-ws/peers"
    assert httpx.get(base).status_code == 401
    info = httpx.get(base, headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert info["peers"] == ["ISTHMUS"] and info["aets"] == ["WEB1"]
    assert info["max_pdu"] == secured.settings.dicom_ws_max_pdu


# ---------------------------------------------------------------- inbound


def call(node: Node, called: str) -> socket.socket:
    """A raw TCP caller on the DICOM port that has sent its A-ASSOCIATE-RQ."""
    sock = socket.create_connection(("127.0.0.1", node.dicom_port), timeout=30)
    sock.sendall(associate_rq(called, "CALLER"))
    return sock


def test_a_registered_browser_accepts_an_association_and_answers_c_echo(node: Node) -> None:
    with ws(url(node, "listen?aet=PYBROWSER")) as listener:
        assert json.loads(listener.recv(timeout=30))["type"] == "registered"
        with call(node, "PYBROWSER") as caller:
            announced = json.loads(listener.recv(timeout=30))
            assert (announced["type"], announced["calling"], announced["called"]) == (
                "association",
                "CALLER",
                "PYBROWSER",
            )
            with ws(url(node, f"accept?id={announced['id']}")) as conn:
                assert conn.recv(timeout=30) == associate_rq("PYBROWSER", "CALLER")
                conn.send(associate_ac("PYBROWSER", "CALLER", [(1, 0, IMPLICIT_LE)]))
                assert read_pdu(caller)[0] == 0x02
                caller.sendall(p_data(1, echo_rq_command(7)))
                assert conn.recv(timeout=30) == p_data(1, echo_rq_command(7))
                conn.send(p_data(1, echo_rsp_command(7)))
                assert response_status(read_pdu(caller)) == 0
                caller.sendall(RELEASE_RQ)
                assert conn.recv(timeout=30) == RELEASE_RQ
                conn.send(RELEASE_RP)
                assert read_pdu(caller) == RELEASE_RP


def test_a_browser_that_disconnects_mid_association_aborts_it_on_the_tcp_side(node: Node) -> None:
    with ws(url(node, "listen?aet=LEAVER")) as listener:
        listener.recv(timeout=30)
        with call(node, "LEAVER") as caller:
            announced = json.loads(listener.recv(timeout=30))
            with ws(url(node, f"accept?id={announced['id']}")) as conn:
                conn.recv(timeout=30)
                conn.send(associate_ac("LEAVER", "CALLER", [(1, 0, IMPLICIT_LE)]))
                assert read_pdu(caller)[0] == 0x02
            assert read_pdu(caller) == struct.pack(">BBIBBBB", 7, 0, 4, 0, 0, 2, 0)


def test_a_caller_gets_a_reject_when_the_browser_does_not_take_the_association(node: Node) -> None:
    with ws(url(node, "listen?aet=SLOWPOKE")) as listener:
        listener.recv(timeout=30)
        with call(node, "SLOWPOKE") as caller:
            listener.recv(timeout=30)  # announced, never accepted
            assert read_pdu(caller) == struct.pack(">BBIBBBB", 3, 0, 4, 0, 2, 1, 1)


def test_after_unregistering_callers_are_rejected_as_unknown(node: Node) -> None:
    with ws(url(node, "listen?aet=GONE")) as listener:
        listener.recv(timeout=30)
    with call(node, "GONE") as caller:
        assert read_pdu(caller) == struct.pack(">BBIBBBB", 3, 0, 4, 0, 1, 1, 7)


def test_an_ae_title_is_registered_once(node: Node) -> None:
    with ws(url(node, "listen?aet=TWICE")) as first:
        first.recv(timeout=30)
        status, body = refused_status(url(node, "listen?aet=TWICE"))
        assert status == 409 and "already registered" in body["error"]


def test_the_archive_ae_title_cannot_be_registered(node: Node) -> None:
    status, _ = refused_status(url(node, "listen?aet=ISTHMUS"))
    assert status == 403


def test_an_unknown_accept_id_is_refused(node: Node) -> None:
    assert refused_status(url(node, "accept?id=nothing"))[0] == 404


def test_a_registered_browser_is_a_known_c_move_destination(node: Node) -> None:
    assert node.access.destination("MOVEDEST") is None
    with ws(url(node, "listen?aet=MOVEDEST")) as listener:
        listener.recv(timeout=30)
        peer = node.access.destination("MOVEDEST")
        assert (peer.aet, peer.port) == ("MOVEDEST", node.dicom_port)
    assert node.access.destination("MOVEDEST") is None
