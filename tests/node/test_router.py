"""One DICOM port routed by called AE title (docs/architecture.md, "One DICOM port, routed
by AE title"): unknown called AE titles are rejected (PS3.8 9.3.4), other doors can
register routes, garbage never hurts the port."""

from __future__ import annotations

import errno
import socket
import struct
import threading
from collections.abc import Callable

import pytest

from dimse.support import address, associate_rq, peer, read_pdu, run_ok
from isthmus.dicom.ul.pdu import AAssociateRQ
from isthmus.dimse import scu
from isthmus.node.router import AssociationRouter
from isthmus.server import Node
from isthmus.testing import dcmtk
from isthmus.testing.generate import StudySpec, write_study

CT = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
RLE, JPEG_LOSSLESS = "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.70"


def connect(node: Node) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", node.dicom_port), timeout=30)
    return sock


def test_unknown_called_ae_title_is_rejected_by_echoscu(
    dcmtk_tools: None, module_node: Node
) -> None:
    done = dcmtk.run("echoscu", *address(module_node, called="NOT_ISTHMUS"))
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Association Rejected" in output and "Called AE Title Not Recognized" in output


@pytest.mark.parametrize(
    "contexts",
    [
        [(1, VERIFICATION, [EXPLICIT_LE])],  # the lean acceptor's kind
        [(1, VERIFICATION, [EXPLICIT_LE]), (3, "1.2.840.10008.5.1.4.1.2.2.1", [EXPLICIT_LE])],
    ],
)
def test_unknown_called_ae_title_gets_a_permanent_rejection(
    module_node: Node, contexts: list
) -> None:
    with connect(module_node) as sock:
        sock.sendall(associate_rq("SOMEONE_ELSE", "CALLER", contexts))
        kind, body = read_pdu(sock)
    assert kind == 0x03  # A-ASSOCIATE-RJ
    assert body[1:] == bytes([1, 1, 7])  # permanent, service user, called AE not recognized


def test_a_port_in_use_is_an_address_in_use_error(module_node: Node) -> None:
    """`isthmus retrieve --via move` next to a running `isthmus serve` relies on it
    (fetch.py): the bind's OSError, not an error of the half-built router's cleanup."""
    with pytest.raises(OSError) as caught:
        AssociationRouter(("127.0.0.1", module_node.dicom_port), lambda *args: None)
    assert caught.value.errno == errno.EADDRINUSE


def test_pynetdicom_scu_sees_the_rejection(module_node: Node) -> None:
    wrong = peer(module_node)
    wrong = type(wrong)("WRONG_AET", wrong.host, wrong.port)
    with pytest.raises(scu.SCUError, match="rejected"):
        scu.echo(wrong)


def test_accept_any_called_aet_answers_every_called_title(
    dcmtk_tools: None, start_node: Callable[..., Node], tmp_path
) -> None:
    node = start_node(accept_any_called_aet=True)
    assert "Success" in run_ok("echoscu", "-v", *address(node, called="ANY_TITLE"))
    path = write_study(StudySpec(instances_per_series=1), tmp_path)[0]
    run_ok("storescu", *address(node, called="OTHER_TITLE"), str(path))
    assert node.archive.counts()["image"] == 1


def test_registered_route_receives_the_connection_and_request(module_node: Node) -> None:
    handed: list[tuple[AAssociateRQ, int]] = []
    done = threading.Event()

    def handler(sock: socket.socket, _address, rq: AAssociateRQ) -> None:
        handed.append((rq, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
        sock.sendall(b"routed")
        sock.close()
        done.set()

    module_node.router.add_route("BROWSER1", handler)
    try:
        with connect(module_node) as sock:
            sock.sendall(associate_rq("BROWSER1", "MODALITY", [(1, CT, [EXPLICIT_LE])]))
            assert sock.recv(16) == b"routed"
        assert done.wait(10)
        [(rq, nodelay)] = handed
        assert (rq.called_aet, rq.calling_aet, bool(nodelay)) == ("BROWSER1", "MODALITY", True)
    finally:
        module_node.router.remove_route("BROWSER1")
    with connect(module_node) as sock:  # gone again: rejected
        sock.sendall(associate_rq("BROWSER1", "MODALITY", [(1, CT, [EXPLICIT_LE])]))
        assert read_pdu(sock)[0] == 0x03


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x04\x00\x00\x00\x00\x02\x00\x00",  # P-DATA before any association
        b"\x01\x00\xff\xff\xff\xff" + b"\x00" * 64,  # A-ASSOCIATE-RQ claiming 4 GiB
        b"\x01\x00\x00\x00\x00\x10" + b"\x00" * 16,  # A-ASSOCIATE-RQ too short
    ],
)
def test_garbage_instead_of_an_association_is_aborted_and_the_port_still_works(
    module_node: Node, garbage: bytes
) -> None:
    with connect(module_node) as sock:
        sock.sendall(garbage)
        kind, _body = read_pdu(sock)
        assert kind in (0x07, 0)  # A-ABORT, or closed
    assert scu.echo(peer(module_node)) == 0


def test_connection_closed_in_the_middle_of_the_request_does_not_hurt(module_node: Node) -> None:
    rq = associate_rq("ISTHMUS", "CALLER", [(1, CT, [EXPLICIT_LE])])
    for cut in (3, 10, len(rq) - 1):
        with connect(module_node) as sock:
            sock.sendall(rq[:cut])
    assert scu.echo(peer(module_node)) == 0


def test_connection_closed_in_the_middle_of_the_request_frees_its_thread(
    module_node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    """A half-sent A-ASSOCIATE-RQ then EOF must end the wait for the rest, not spin until
    the request timeout (20 s here; the test waits 5 s)."""
    router = module_node.router
    previous = router.peek_timeout
    router.peek_timeout = 20.0
    try:
        with caplog.at_level("WARNING", logger="isthmus.node.router"):
            with connect(module_node) as sock:
                sock.sendall(associate_rq("ISTHMUS", "HALF", [(1, CT, [EXPLICIT_LE])])[:20])
            for _ in range(50):
                if "dropped before association" in caplog.text:
                    break
                threading.Event().wait(0.1)
        assert "dropped before association" in caplog.text
    finally:
        router.peek_timeout = previous


def test_a_connection_that_sends_nothing_is_no_warning(
    module_node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    """A load balancer's TCP health check connects and closes every few seconds
    (docs/scaling.md): logged at debug level, a half-sent request still at warning."""
    with caplog.at_level("DEBUG", logger="isthmus.node.router"):
        with connect(module_node):
            pass
        for _ in range(50):
            if "dropped before association" in caplog.text:
                break
            threading.Event().wait(0.1)
    dropped = [r for r in caplog.records if "dropped before association" in r.getMessage()]
    assert [r.levelname for r in dropped] == ["DEBUG"]
    assert scu.echo(peer(module_node)) == 0


@pytest.mark.parametrize(
    "contexts, expected",
    [
        ([(1, CT, [RLE, JPEG_LOSSLESS, EXPLICIT_LE])], {1: (0, RLE)}),
        ([(1, CT, [EXPLICIT_LE, RLE])], {1: (0, EXPLICIT_LE)}),
        (
            [
                (1, CT, ["1.2.3.4"]),
                (3, "1.2.3.4.5", [EXPLICIT_LE]),
                (5, VERIFICATION, [EXPLICIT_LE]),
            ],
            {1: (4, None), 3: (3, None), 5: (0, EXPLICIT_LE)},
        ),
        (
            [(1, CT, [RLE]), (3, "1.2.840.10008.5.1.4.1.2.2.1", [EXPLICIT_LE])],  # with C-FIND
            {1: (0, RLE), 3: (0, EXPLICIT_LE)},
        ),
    ],
)
def test_associate_ac_accepts_the_first_proposed_syntax_kept_as_sent(
    module_node: Node, contexts: list, expected: dict
) -> None:
    with connect(module_node) as sock:
        sock.sendall(associate_rq("ISTHMUS", "CALLER", contexts))
        kind, body = read_pdu(sock)
        sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")  # A-RELEASE-RQ
        assert read_pdu(sock)[0] == 0x06  # A-RELEASE-RP
    assert kind == 0x02
    # results: 0 acceptance, 3 abstract syntax not supported, 4 transfer syntaxes not supported
    assert _context_results(body) == expected


def _context_results(ac_body: bytes) -> dict[int, tuple[int, str | None]]:
    """Presentation context results of an A-ASSOCIATE-AC (PS3.8 9.3.3.2)."""
    out: dict[int, tuple[int, str | None]] = {}
    pos = 68
    while pos < len(ac_body):
        kind, length = ac_body[pos], struct.unpack(">H", ac_body[pos + 2 : pos + 4])[0]
        item = ac_body[pos + 4 : pos + 4 + length]
        if kind == 0x21:
            ts = None
            if item[2] == 0 and len(item) > 8:
                ts_len = struct.unpack(">H", item[6:8])[0]
                ts = item[8 : 8 + ts_len].decode().rstrip("\x00")
            out[item[0]] = (item[2], ts)
        pos += 4 + length
    return out


def test_associations_beyond_the_limit_are_rejected_transiently(
    start_node: Callable[..., Node],
) -> None:
    node = start_node(max_associations=2)
    rq = associate_rq("ISTHMUS", "CALLER", [(1, CT, [EXPLICIT_LE])])
    held = [connect(node) for _ in range(2)]
    try:
        for sock in held:
            sock.sendall(rq)
            assert read_pdu(sock)[0] == 0x02
        with connect(node) as third:
            third.sendall(rq)
            kind, body = read_pdu(third)
        assert (kind, body[1]) == (0x03, 2)  # A-ASSOCIATE-RJ, transient
    finally:
        for sock in held:
            sock.close()


def test_a_silent_association_is_aborted_after_the_network_timeout(
    start_node: Callable[..., Node],
) -> None:
    node = start_node(network_timeout=0.5)
    with connect(node) as sock:
        sock.sendall(associate_rq("ISTHMUS", "CALLER", [(1, CT, [EXPLICIT_LE])]))
        assert read_pdu(sock)[0] == 0x02
        assert read_pdu(sock)[0] in (0x07, 0)  # A-ABORT (or closed) once idle
