"""Associations for an AE title another process of the archive holds (node/remote.py):
the router finds it in the archive's route table and passes the connection on, byte
for byte, to that process's DICOM port (docs/scaling.md).  "Another process" is a
second Archive on the same index registering the title; the holder is a real
listener (DCMTK storescp, or a raw socket that shows the bytes)."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from dimse.support import associate_rq, read_pdu, run_ok
from isthmus.archive import Archive
from isthmus.config import Peer, Settings
from isthmus.dimse import scu
from isthmus.node.remote import is_listening_address
from isthmus.server import Node
from isthmus.testing import dcmtk
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port

VERIFICATION = "1.2.840.10008.1.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
ECHO = [(1, VERIFICATION, [EXPLICIT_LE])]


@pytest.fixture
def node(index_url: str, tmp_path: Path) -> Iterator[Node]:
    """A node on each kind of index (the route table lives there), DICOM only."""
    running = Node(
        Settings(
            data=tmp_path / "data",
            dicom_port=free_port(),
            http_port=free_port(),
            index_url=index_url,
            check_on_start=False,
            network_timeout=5.0,
        )
    )
    running.start(http=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def elsewhere(node: Node, tmp_path: Path) -> Iterator[Callable[[str, int], None]]:
    """register(aet, port): `aet` held at 127.0.0.1:port by another process of the archive."""
    other = Archive(node.settings.resolved_index_url, f"file://{tmp_path / 'other-blobs'}")
    try:
        yield lambda aet, port: other.register_route(aet, "127.0.0.1", port)
    finally:
        other.close()  # its registrations end with it


def sop_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def call(node: Node, called: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", node.dicom_port), timeout=30)
    sock.sendall(associate_rq(called, "CALLER", ECHO))
    return sock


def test_storescu_reaches_an_ae_title_another_process_holds(
    dcmtk_tools: None,
    node: Node,
    elsewhere: Callable[[str, int], None],
    tmp_path: Path,
) -> None:
    paths = write_study(StudySpec(instances_per_series=3), tmp_path / "study")
    with dcmtk.StoreSCP(tmp_path / "received", aet="FARAE") as holder:
        elsewhere("FARAE", holder.port)
        args = ["-aec", "FARAE", "127.0.0.1", str(node.dicom_port)]
        run_ok("storescu", *args, *map(str, paths))
        assert sorted(map(sop_uid, holder.received())) == sorted(map(sop_uid, paths))
    assert node.archive.counts()["image"] == 0  # passed on, not stored here


def test_the_projects_scu_echoes_an_ae_title_another_process_holds(
    dcmtk_tools: None, node: Node, elsewhere: Callable[[str, int], None], tmp_path: Path
) -> None:
    with dcmtk.StoreSCP(tmp_path / "received", aet="FARECHO") as holder:
        elsewhere("FARECHO", holder.port)
        assert scu.echo(Peer("FARECHO", "127.0.0.1", node.dicom_port)) == 0


class RawHolder:
    """A listener that records what one connection brings and answers `reply`."""

    def __init__(self, reply: bytes) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.reply = reply
        self.received = b""
        self.closed_by_caller = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.settimeout(30)
            kind, body = read_pdu(conn)
            self.received = struct.pack(">BBI", kind, 0, len(body)) + body
            conn.sendall(self.reply)
            if conn.recv(1) == b"":
                self.closed_by_caller.set()

    def close(self) -> None:
        self.server.close()


def test_the_association_is_passed_on_byte_for_byte_and_a_close_reaches_the_holder(
    node: Node, elsewhere: Callable[[str, int], None]
) -> None:
    reply = struct.pack(">BBIBBBB", 3, 0, 4, 0, 1, 1, 1)  # whatever the holder answers
    holder = RawHolder(reply)
    try:
        elsewhere("RAWHOLDER", holder.port)
        with call(node, "RAWHOLDER") as caller:
            assert read_pdu(caller) == (0x03, reply[6:])
        assert holder.closed_by_caller.wait(10)
        assert holder.received == associate_rq("RAWHOLDER", "CALLER", ECHO)
    finally:
        holder.close()


def test_a_holder_that_closes_closes_the_callers_connection(
    node: Node, elsewhere: Callable[[str, int], None]
) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    try:
        elsewhere("CLOSER", server.getsockname()[1])
        with call(node, "CLOSER") as caller:
            thread.join(10)
            accepted[0].close()
            assert caller.recv(1) == b""
    finally:
        server.close()


def test_an_unreachable_holder_gets_a_transient_rejection(
    node: Node, elsewhere: Callable[[str, int], None]
) -> None:
    elsewhere("GONEAWAY", free_port())  # nothing listens there
    with call(node, "GONEAWAY") as caller:
        assert read_pdu(caller) == (0x03, bytes([0, 2, 1, 1]))  # transient, user, no reason


def test_a_route_pointing_at_this_port_is_not_followed(
    node: Node, elsewhere: Callable[[str, int], None]
) -> None:
    elsewhere("LOOPING", node.dicom_port)
    with call(node, "LOOPING") as caller:
        assert read_pdu(caller) == (0x03, bytes([0, 1, 1, 7]))  # called AE not recognized
    assert scu.echo(Peer(node.settings.aet, "127.0.0.1", node.dicom_port)) == 0


def test_this_processs_own_registration_is_not_passed_on(node: Node) -> None:
    holder = RawHolder(b"")
    try:
        node.archive.register_route("MINE", "127.0.0.1", holder.port)  # no route here now
        with call(node, "MINE") as caller:
            assert read_pdu(caller) == (0x03, bytes([0, 1, 1, 7]))
    finally:
        holder.close()


@pytest.mark.parametrize(
    ("listening", "host", "answer"),
    [
        (("127.0.0.1", 11112), "127.0.0.1", True),
        (("127.0.0.1", 11112), "127.0.0.2", False),  # another process's loopback bind
        (("0.0.0.0", 11112), "127.0.0.1", True),  # a wildcard bind accepts on every local one
        (("0.0.0.0", 11112), "localhost", True),
        (("0.0.0.0", 11112), "192.0.2.1", False),  # not an address of this machine
        (("::ffff:127.0.0.1", 11112), "127.0.0.1", True),
    ],
)
def test_a_listening_address_is_told_from_another_process(
    listening: tuple[str, int], host: str, answer: bool
) -> None:
    assert is_listening_address(listening, host, 11112) is answer
    assert is_listening_address(listening, host, 11113) is False
