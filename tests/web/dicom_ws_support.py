"""Hand-built PDUs and a WebSocket client for the gateway tests (PS3.8 9.3, PS3.7 E)."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pynetdicom import AE, StoragePresentationContexts, evt
from websockets.sync.client import ClientConnection, connect

from isthmus.testing.net import free_port

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(value)) + value


def associate_rq(
    called: str,
    calling: str,
    contexts: list[tuple[int, str, list[str]]] | None = None,
    max_length: int = 65536,
) -> bytes:
    """An A-ASSOCIATE-RQ (PS3.8 9.3.2); contexts: (id, abstract syntax, transfer syntaxes)."""
    contexts = contexts or [(1, VERIFICATION, [IMPLICIT_LE])]
    body = (
        struct.pack(">HH", 1, 0)
        + called.ljust(16).encode()
        + calling.ljust(16).encode()
        + bytes(32)
    )
    body += _item(0x10, b"1.2.840.10008.3.1.1.1")
    for cid, abstract, syntaxes in contexts:
        sub = _item(0x30, abstract.encode()) + b"".join(_item(0x40, ts.encode()) for ts in syntaxes)
        body += _item(0x20, struct.pack(">BBBB", cid, 0, 0, 0) + sub)
    user = _item(0x51, struct.pack(">I", max_length)) + _item(
        0x52, b"1.2.826.0.1.3680043.10.1386.3"
    )
    body += _item(0x50, user)
    return struct.pack(">BBI", 1, 0, len(body)) + body


def p_data(context_id: int, data: bytes, command: bool = True, last: bool = True) -> bytes:
    pdv = (
        struct.pack(">IBB", len(data) + 2, context_id, (1 if command else 0) | (2 if last else 0))
        + data
    )
    return struct.pack(">BBI", 4, 0, len(pdv)) + pdv


def echo_rq_command(message_id: int = 1) -> bytes:
    """A C-ECHO-RQ command set, Implicit VR Little Endian (PS3.7 9.3.5)."""

    def element(tag: int, value: bytes) -> bytes:
        return struct.pack("<HHI", 0, tag, len(value)) + value

    uid = VERIFICATION.encode() + (b"\x00" if len(VERIFICATION) % 2 else b"")
    body = (
        element(0x0002, uid)
        + element(0x0100, struct.pack("<H", 0x0030))
        + element(0x0110, struct.pack("<H", message_id))
        + element(0x0800, struct.pack("<H", 0x0101))
    )
    return element(0x0000, struct.pack("<I", len(body))) + body


def response_status(pdu: bytes) -> int:
    """The Status (0000,0900) of a one-PDV command P-DATA-TF."""
    data = pdu[12:]
    offset = 0
    while offset < len(data):
        _, tag, length = struct.unpack("<HHI", data[offset : offset + 8])
        if tag == 0x0900:
            return struct.unpack("<H", data[offset + 8 : offset + 10])[0]
        offset += 8 + length
    raise ValueError("no status")


RELEASE_RQ = struct.pack(">BBIBBBB", 5, 0, 4, 0, 0, 0, 0)
RELEASE_RP = struct.pack(">BBIBBBB", 6, 0, 4, 0, 0, 0, 0)


@contextmanager
def ws(
    url: str, *, token: str | None = None, origin: str | None = None
) -> Iterator[ClientConnection]:
    protocols = ["dicom-ws"] + ([f"isthmus-token.{token}"] if token else [])
    headers = {"Origin": origin} if origin else None
    with connect(
        url,
        subprotocols=protocols,
        additional_headers=headers,
        open_timeout=10,
        close_timeout=5,
        max_size=None,
    ) as conn:
        yield conn


def associate_ac(
    called: str, calling: str, contexts: list[tuple[int, int, str]], max_length: int = 65536
) -> bytes:
    """An A-ASSOCIATE-AC (PS3.8 9.3.3); contexts: (id, result, transfer syntax)."""
    body = (
        struct.pack(">HH", 1, 0)
        + called.ljust(16).encode()
        + calling.ljust(16).encode()
        + bytes(32)
    )
    body += _item(0x10, b"1.2.840.10008.3.1.1.1")
    for cid, result, ts in contexts:
        body += _item(0x21, struct.pack(">BBBB", cid, 0, result, 0) + _item(0x40, ts.encode()))
    body += _item(0x50, _item(0x51, struct.pack(">I", max_length)))
    return struct.pack(">BBI", 2, 0, len(body)) + body


def echo_rsp_command(message_id: int = 1) -> bytes:
    """A successful C-ECHO-RSP command set (PS3.7 9.3.5.2)."""

    def element(tag: int, value: bytes) -> bytes:
        return struct.pack("<HHI", 0, tag, len(value)) + value

    uid = VERIFICATION.encode() + (b"\x00" if len(VERIFICATION) % 2 else b"")
    body = (
        element(0x0002, uid)
        + element(0x0100, struct.pack("<H", 0x8030))
        + element(0x0120, struct.pack("<H", message_id))
        + element(0x0800, struct.pack("<H", 0x0101))
        + element(0x0900, struct.pack("<H", 0))
    )
    return element(0x0000, struct.pack("<I", len(body))) + body


def read_pdu(sock) -> bytes:
    """One PDU from a blocking socket (PS3.8 9.3.1 framing)."""
    header = _read_exactly(sock, 6)
    return header + _read_exactly(sock, struct.unpack(">I", header[2:6])[0])


def _read_exactly(sock, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def closing(conn: ClientConnection) -> tuple[int, str, list[bytes]]:
    """Read until the gateway closes: (close code, reason, the PDUs that came before)."""
    from websockets.exceptions import ConnectionClosed

    pdus = []
    try:
        while True:
            pdus.append(conn.recv(timeout=30))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "the connection ended without a close frame"
        return closed.rcvd.code, closed.rcvd.reason, pdus


class Browser:
    """A 'browser' that registered an AE title through one process's gateway: each
    announced association is accepted over WebSocket and bridged to a pynetdicom
    Storage SCP, one PDU per message (docs/dicom-websocket.md).  For the tests of
    several processes and workers (tests/scaling, tests/test_workers.py)."""

    def __init__(self, http_port: int, aet: str, accept_port: int | None = None) -> None:
        """Listen at `http_port`; accept announced associations there, or at
        `accept_port` (another worker's port: the gateway passes it on)."""
        self.http_port, self.aet = http_port, aet
        self.accept_port = accept_port or http_port
        self.received: list[str] = []
        self.ae = AE(aet)
        self.ae.supported_contexts = StoragePresentationContexts
        self.port = free_port()
        self.scp = self.ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._stored)],
        )
        self._stop = threading.Event()
        self._registered = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()
        assert self._registered.wait(30), "the AE title was not registered"

    def _stored(self, event: evt.Event) -> int:
        self.received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    def _listen(self) -> None:
        base = f"ws://127.0.0.1:{self.http_port}/dicom-ws"
        accept = f"ws://127.0.0.1:{self.accept_port}/dicom-ws/accept"
        with ws(f"{base}/listen?aet={self.aet}") as listener:
            assert json.loads(listener.recv(timeout=30))["type"] == "registered"
            self._registered.set()
            while not self._stop.is_set():
                try:
                    message = listener.recv(timeout=0.5)
                except TimeoutError:
                    continue
                announced = json.loads(message)
                threading.Thread(
                    target=self._bridge, args=(f"{accept}?id={announced['id']}",), daemon=True
                ).start()

    def _bridge(self, accept_url: str) -> None:
        with ws(accept_url) as conn, socket.create_connection(("127.0.0.1", self.port)) as scp:

            def to_scp() -> None:
                try:
                    while True:
                        scp.sendall(conn.recv(timeout=60))
                except Exception:
                    scp.close()

            threading.Thread(target=to_scp, daemon=True).start()
            try:
                while True:
                    conn.send(read_pdu(scp))
            except (ConnectionError, OSError):
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.scp.shutdown()
