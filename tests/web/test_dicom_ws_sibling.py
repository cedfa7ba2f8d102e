"""The accept WebSocket of an association another worker holds (web/dicom_ws/sibling.py):
two HTTP servers on one archive play workers "w0" and "w1" (`isthmus serve --workers`),
each the other's sibling; a browser registers on w0, the association arrives at w0's
DICOM port, and its accept WebSocket opened on w1 reaches w0's gateway."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from isthmus.config import Settings
from isthmus.server import Node, http_config
from isthmus.testing.net import free_port
from isthmus.web.auth import hash_token
from isthmus.web.context import WebContext

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

TOKEN = "gateway-token-for-worker-tests"
ABORT_INVALID_PARAMETER = struct.pack(">BBIBBBB", 7, 0, 4, 0, 0, 2, 6)


@dataclass
class Workers:
    node: Node  # the archive and the DICOM port (w0's)
    http: dict[str, int]  # worker name -> HTTP port

    def url(self, worker: str, path: str) -> str:
        return f"ws://127.0.0.1:{self.http[worker]}/dicom-ws/{path}"


def _serve(ctx: WebContext) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(http_config(ctx))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.02)
    assert server.started
    return server, thread


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    folder: Path = tmp_path_factory.mktemp("workers")
    settings = Settings(
        data=folder,
        dicom_port=free_port(),
        http_port=free_port(),
        index_url=f"sqlite:///{folder / 'index.sqlite'}",
        check_on_start=False,
        network_timeout=5.0,
        tokens={"gateway": {"hash": hash_token(TOKEN), "permissions": ["dicom-ws"]}},
        dicom_ws_aets=("*",),
    )
    node = Node(settings)
    node.start(http=False)
    http = {"w0": free_port(), "w1": free_port()}
    down = {"w9": f"http://127.0.0.1:{free_port()}"}  # a worker that is not running
    servers = []
    try:
        for name, port in http.items():
            ctx = WebContext(
                replace(settings, http_port=port),
                node.archive,
                node.plain_router if name == "w0" else None,  # w0 holds the DICOM port here
                node.access,
                worker=name,
                siblings={n: f"http://127.0.0.1:{p}" for n, p in http.items() if n != name} | down,
            )
            servers.append(_serve(ctx))
        yield Workers(node, http)
    finally:
        for server, thread in servers:
            server.should_exit = True
            thread.join(timeout=10)
        node.stop()


def call(node: Node, called: str) -> socket.socket:
    """A raw TCP caller on the DICOM port that has sent its A-ASSOCIATE-RQ."""
    sock = socket.create_connection(("127.0.0.1", node.dicom_port), timeout=30)
    sock.sendall(associate_rq(called, "CALLER"))
    return sock


def announced(listener: Any) -> str:
    message = json.loads(listener.recv(timeout=30))
    assert message["type"] == "association"
    return str(message["id"])


def refused(target: str, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as refusal:
        with ws(target, **kwargs):
            pass
    response = refusal.value.response
    return response.status_code, json.loads(response.body or b"{}").get("error", "")


def test_an_association_id_names_the_worker_that_holds_it(workers: Workers) -> None:
    with ws(workers.url("w0", "listen?aet=NAMED"), token=TOKEN) as listener:
        listener.recv(timeout=30)
        with call(workers.node, "NAMED"):
            assert announced(listener).startswith("w0.")


def test_the_accept_websocket_on_another_worker_carries_the_association(
    workers: Workers,
) -> None:
    same_origin = f"http://127.0.0.1:{workers.http['w1']}"  # w0 judges it by w1's Host
    with ws(workers.url("w0", "listen?aet=ROAMING"), token=TOKEN) as listener:
        assert json.loads(listener.recv(timeout=30))["type"] == "registered"
        with call(workers.node, "ROAMING") as caller:
            target = workers.url("w1", f"accept?id={announced(listener)}")
            with ws(target, token=TOKEN, origin=same_origin) as conn:
                assert conn.subprotocol == "dicom-ws"
                assert conn.recv(timeout=30) == associate_rq("ROAMING", "CALLER")
                conn.send(associate_ac("ROAMING", "CALLER", [(1, 0, IMPLICIT_LE)]))
                assert read_pdu(caller)[0] == 0x02
                caller.sendall(p_data(1, echo_rq_command(7)))
                assert conn.recv(timeout=30) == p_data(1, echo_rq_command(7))
                conn.send(p_data(1, echo_rsp_command(7)))
                assert response_status(read_pdu(caller)) == 0
                caller.sendall(RELEASE_RQ)
                assert conn.recv(timeout=30) == RELEASE_RQ
                conn.send(RELEASE_RP)
                assert read_pdu(caller) == RELEASE_RP
                caller.close()  # the requestor closes after A-RELEASE-RP (PS3.8 9.2.2)
                code, _, rest = closing(conn)
                assert (code, rest) == (1000, [])


def test_the_holders_close_code_and_reason_reach_the_browser(workers: Workers) -> None:
    with ws(workers.url("w0", "listen?aet=GARBLED"), token=TOKEN) as listener:
        listener.recv(timeout=30)
        with call(workers.node, "GARBLED") as caller:
            with ws(workers.url("w1", f"accept?id={announced(listener)}"), token=TOKEN) as conn:
                conn.recv(timeout=30)
                conn.send(b"\x02\x00\x00\x00\x00\x01\x00")  # an A-ASSOCIATE-AC cut short
                code, reason, _ = closing(conn)
            assert code == 4400 and "invalid PDU from the browser" in reason
            assert read_pdu(caller) == ABORT_INVALID_PARAMETER


def test_the_holder_admits_the_caller_with_its_credentials(workers: Workers) -> None:
    with ws(workers.url("w0", "listen?aet=GUARDED"), token=TOKEN) as listener:
        listener.recv(timeout=30)
        with call(workers.node, "GUARDED"):
            target = workers.url("w1", f"accept?id={announced(listener)}")
            assert refused(target)[0] == 401
            assert refused(target, token=TOKEN, origin="https://elsewhere.example")[0] == 403
            bearer = {"Authorization": f"Bearer {TOKEN}"}  # a header, not a subprotocol
            with connect(target, subprotocols=["dicom-ws"], additional_headers=bearer) as conn:
                assert conn.recv(timeout=30)[0] == 0x01  # the caller's A-ASSOCIATE-RQ


def test_an_id_the_holder_does_not_know_is_refused_as_unknown(workers: Workers) -> None:
    status, error = refused(workers.url("w1", "accept?id=w0.nothing"), token=TOKEN)
    assert status == 404 and "no such pending association" in error


def test_an_unreachable_worker_is_refused_as_an_unknown_id(workers: Workers) -> None:
    status, error = refused(workers.url("w1", "accept?id=w9.nothing"), token=TOKEN)
    assert status == 404 and "unreachable" in error
    assert refused(workers.url("w1", "accept?id=w7.nothing"), token=TOKEN)[0] == 404


def test_a_browser_leaving_through_another_worker_aborts_the_association(
    workers: Workers,
) -> None:
    with ws(workers.url("w0", "listen?aet=LEAVING"), token=TOKEN) as listener:
        listener.recv(timeout=30)
        with call(workers.node, "LEAVING") as caller:
            with ws(workers.url("w1", f"accept?id={announced(listener)}"), token=TOKEN) as conn:
                conn.recv(timeout=30)
                conn.send(associate_ac("LEAVING", "CALLER", [(1, 0, IMPLICIT_LE)]))
                assert read_pdu(caller)[0] == 0x02
            assert read_pdu(caller) == struct.pack(">BBIBBBB", 7, 0, 4, 0, 0, 2, 0)
