"""The limits of the DICOM port (docs/security.md, "Limits", "DICOM port"): each exceeded
limit gets its standard answer, and the node keeps serving.

Associations are held open by hand-made requestors; the limits are set low so the
tests stay small.  Timeouts are set short; nothing here asserts a duration.
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus import config
from isthmus.config import Settings
from isthmus.dimse import scu
from isthmus.server import Node
from isthmus.testing.net import free_port

from .support import peer
from .test_acceptor_protocol import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_RELEASE_RP,
    CT,
    EXPLICIT_LE,
    IMPLICIT_LE,
    VERIFICATION,
    RawAssociation,
    associate_rq,
    echo_rq,
    encoded,
    eventually,
    instance,
    p_data,
    pdv,
    store_rq,
)

ECHO = [(1, VERIFICATION, [IMPLICIT_LE])]
LOCAL_LIMIT_EXCEEDED = (2, 3, 2)  # transient, service provider (presentation), reason 2


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def start(**changes: Any) -> Node:
        folder = tmp_path / f"node{len(nodes)}"
        node = Node(
            Settings(
                data=folder,
                dicom_port=free_port(),
                http_port=free_port(),
                index_url=f"sqlite:///{folder}.sqlite",
                **changes,
            )
        )
        nodes.append(node)
        node.start(http=False)
        return node

    try:
        yield start
    finally:
        for node in nodes:
            node.stop()


def still_serving(node: Node) -> None:
    assert scu.echo(peer(node), "AFTERWARDS") == 0x0000


def answer_after_trickle(sock: socket.socket, data: bytes, pause: float) -> bytes:
    """Send `data` one byte at a time until the node answers; what it answered."""
    for byte in data:
        ready, _, _ = select.select([sock], [], [], pause)
        if ready:
            break
        sock.sendall(bytes([byte]))
    sock.settimeout(30)
    answer = b""
    while len(answer) < 10:
        chunk = sock.recv(10 - len(answer))
        if not chunk:
            break
        answer += chunk
    return answer


def max_length_of(ac_body: bytes) -> int:
    """The Maximum Length sub-item of an A-ASSOCIATE-AC (PS3.8 D.1)."""
    pos = 68
    while pos + 4 <= len(ac_body):
        kind, length = ac_body[pos], struct.unpack(">H", ac_body[pos + 2 : pos + 4])[0]
        if kind == 0x50:
            user, sub = ac_body[pos + 4 : pos + 4 + length], 0
            while sub + 4 <= len(user):
                size = struct.unpack(">H", user[sub + 2 : sub + 4])[0]
                if user[sub] == 0x51:
                    return int(struct.unpack(">I", user[sub + 4 : sub + 8])[0])
                sub += 4 + size
        pos += 4 + length
    raise AssertionError("no maximum length sub-item")


def test_associations_per_calling_host_are_limited(limited: Callable[..., Node]) -> None:
    node = limited(max_associations_per_host=1)
    held = RawAssociation(node, ECHO)
    refused = RawAssociation(node, ECHO)
    assert held.kind == A_ASSOCIATE_AC
    assert (refused.kind, tuple(refused.body[1:4])) == (A_ASSOCIATE_RJ, LOCAL_LIMIT_EXCEEDED)
    refused.close()
    assert held.release() == A_RELEASE_RP
    assert eventually(lambda: node.router.own.associations == 0)
    still_serving(node)


def test_associations_per_calling_ae_title_are_limited(limited: Callable[..., Node]) -> None:
    node = limited(max_associations_per_aet=1)
    held = RawAssociation(node, ECHO)  # calling AE title RAWPEER
    refused = RawAssociation(node, ECHO)
    assert held.kind == A_ASSOCIATE_AC
    assert (refused.kind, tuple(refused.body[1:4])) == (A_ASSOCIATE_RJ, LOCAL_LIMIT_EXCEEDED)
    refused.close()
    assert scu.echo(peer(node), "ANOTHER") == 0x0000  # another AE title from the same host
    assert held.release() == A_RELEASE_RP


def test_the_maximum_length_announced_is_the_setting_and_larger_p_data_is_aborted(
    limited: Callable[..., Node],
) -> None:
    node = limited(max_pdu=4096)
    assoc = RawAssociation(node, ECHO)
    assert assoc.kind == A_ASSOCIATE_AC
    assert max_length_of(assoc.body) == 4096
    command = echo_rq()
    assoc.sock.sendall(p_data(pdv(1, 3, command + b"\x00" * 4096)))
    kind, body = assoc.read_pdu()
    assert (kind, body[2], body[3]) == (A_ABORT, 2, 6)  # invalid PDU parameter value
    assoc.close()
    still_serving(node)


def test_p_data_of_exactly_the_maximum_length_is_accepted(limited: Callable[..., Node]) -> None:
    node = limited(max_pdu=4096)
    ds = instance(rows=64)
    data = encoded(ds)
    assoc = RawAssociation(node, [(1, CT, [EXPLICIT_LE])])
    assoc.sock.sendall(p_data(pdv(1, 3, store_rq(ds))))
    chunks = [data[i : i + 4090] for i in range(0, len(data), 4090)]
    assert len(chunks) > 1 and len(chunks[0]) == 4090  # PDU-length 4 + 2 + 4090 = 4096
    for n, chunk in enumerate(chunks):
        assoc.sock.sendall(p_data(pdv(1, 2 if n == len(chunks) - 1 else 0, chunk)))
    assert assoc.responses()[0].Status == 0x0000
    assert assoc.release() == A_RELEASE_RP
    assert node.archive.instances(sop_uid=ds.SOPInstanceUID)


def test_an_oversized_associate_request_is_aborted(limited: Callable[..., Node]) -> None:
    node = limited(max_associate_rq=2048)
    contexts = [(i, CT, [EXPLICIT_LE] * 4) for i in range(1, 80, 2)]
    request = associate_rq(node.settings.aet, contexts)
    assert len(request) > 2048
    with socket.create_connection(("127.0.0.1", node.dicom_port), timeout=30) as sock:
        sock.sendall(request)
        answer = sock.recv(10)
    assert (answer[0], answer[8], answer[9]) == (A_ABORT, 2, 6)
    still_serving(node)


def test_a_slow_loris_inside_a_p_data_is_aborted_after_the_pdu_timeout(
    limited: Callable[..., Node],
) -> None:
    node = limited(pdu_timeout=0.5, network_timeout=60.0)
    assoc = RawAssociation(node, ECHO)
    assert assoc.kind == A_ASSOCIATE_AC
    answer = answer_after_trickle(assoc.sock, p_data(pdv(1, 3, echo_rq())), 0.2)
    assert (answer[0], answer[8]) == (A_ABORT, 2)
    assoc.close()
    still_serving(node)


def test_a_slow_loris_sending_the_associate_request_is_aborted(
    limited: Callable[..., Node],
) -> None:
    node = limited(pdu_timeout=0.5)
    request = associate_rq(node.settings.aet, ECHO)
    with socket.create_connection(("127.0.0.1", node.dicom_port), timeout=30) as sock:
        answer = answer_after_trickle(sock, request, 0.2)
    assert answer[0] == A_ABORT
    still_serving(node)


def test_an_idle_association_is_aborted_after_the_network_timeout(
    limited: Callable[..., Node],
) -> None:
    node = limited(network_timeout=0.5, pdu_timeout=30.0)
    assoc = RawAssociation(node, ECHO)
    kind, body = assoc.read_pdu()
    assert (kind, body[2]) == (A_ABORT, 2)
    assoc.close()


def test_the_limits_are_settings_with_documented_defaults() -> None:
    defaults = Settings()
    assert (
        defaults.max_pdu,
        defaults.max_associate_rq,
        defaults.pdu_timeout,
        defaults.network_timeout,
        defaults.max_associations,
        defaults.max_associations_per_host,
        defaults.max_associations_per_aet,
    ) == (262_144, 1_048_576, 30.0, 60.0, 64, 32, 32)
    env = {"ISTHMUS_PDU_TIMEOUT": "2.5", "ISTHMUS_MAX_ASSOCIATIONS_PER_AET": "4"}
    loaded = config.load(env=env)
    assert (loaded.pdu_timeout, loaded.max_associations_per_aet) == (2.5, 4)


@pytest.mark.parametrize(
    "change",
    [
        {"max_pdu": 100},
        {"max_associate_rq": 10},
        {"pdu_timeout": 0},
        {"network_timeout": -1},
        {"max_associations_per_host": 0},
    ],
)
def test_limits_out_of_range_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(config.ConfigError):
        config.load(env={}, **change)
