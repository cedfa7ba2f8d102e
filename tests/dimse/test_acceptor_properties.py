"""Properties of the DICOM port against hostile PDUs (issue 15).

Generated and damaged PDUs of every type - as the first PDU, inside an association,
out of order, with absurd lengths, truncated, after the release - are sent to a running
node.  Every association must end in a standard answer (A-ASSOCIATE-RJ, A-ABORT,
A-RELEASE-RP, P-DATA responses) or, after the client's own A-ABORT, a close; within the
short timeouts configured here (an unbounded wait fails the socket timeout); and the
node must answer a C-ECHO from another association afterwards, with nothing half stored.

Budget: the Hypothesis profile (tests/conftest.py); `make fuzz` runs many more examples.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isthmus.server import Node
from isthmus.testing.strategies import hostile_pdu, mutated

from .support import dicom_node
from .test_acceptor_protocol import (
    CT,
    EXPLICIT_LE,
    IMPLICIT_LE,
    VERIFICATION,
    associate_rq,
    echo_rq,
    encoded,
    instance,
    p_data,
    pdv,
    store_rq,
)
from .test_limits import still_serving

A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA_TF, A_RELEASE_RP, A_ABORT = 2, 3, 4, 6, 7
KNOWN = {1, 2, 3, 4, 5, 6, 7}
RELEASE_RQ = b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"
CONTEXTS = [(1, VERIFICATION, [IMPLICIT_LE]), (3, CT, [EXPLICIT_LE])]
ANSWER_WAIT = 30.0  # far above the node's timeouts: reaching it means the node hung


@pytest.fixture(scope="module")
def fuzzed_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    # short timeouts, so that a stalled example costs little; not so short that a busy
    # machine's own C-ECHO (still_serving) times out
    with dicom_node(
        tmp_path_factory.mktemp("fuzzed"), max_pdu=16384, pdu_timeout=2.0, network_timeout=5.0
    ) as node:
        yield node


def answers(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Every PDU the node sends until it closes the connection."""
    sock.settimeout(ANSWER_WAIT)
    out: list[tuple[int, bytes]] = []
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 6:
            length = struct.unpack(">I", buf[2:6])[0]
            if len(buf) < 6 + length:
                break
            out.append((buf[0], buf[6 : 6 + length]))
            buf = buf[6 + length :]
    assert not buf, f"the node sent a partial PDU: {buf[:16].hex()}"
    return out


def aborts_on_its_own(stream: bytes) -> bool:
    """Does the node read an A-ABORT from `stream`, PDU by PDU as it reads them?"""
    pos = 0
    while pos + 6 <= len(stream):
        kind = stream[pos]
        if kind == A_ABORT:
            return True
        if kind not in KNOWN:
            return False
        pos += 6 + struct.unpack(">I", stream[pos + 2 : pos + 6])[0]
    return False


def nothing_half_stored(node: Node) -> None:
    report = node.archive.check(repair=False)
    assert (report["partial"], report["orphans"], report["missing"]) == (0, 0, 0)


def exchange(node: Node, data: bytes) -> list[tuple[int, bytes]]:
    with socket.create_connection(("127.0.0.1", node.dicom_port), timeout=ANSWER_WAIT) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the node answered and closed before taking all of it
        return answers(sock)


@given(first=st.one_of(mutated(), hostile_pdu()))
def test_any_first_pdu_gets_a_standard_answer(fuzzed_node: Node, first: bytes) -> None:
    got = exchange(fuzzed_node, first + RELEASE_RQ)
    kinds = [kind for kind, _ in got]
    if aborts_on_its_own(first) and not kinds:
        pass  # a client's A-ABORT first: nothing to answer
    else:
        assert kinds, "connection closed without an answer"
        assert kinds[0] in (A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ABORT), kinds
        if kinds[0] == A_ASSOCIATE_AC:
            assert kinds[-1] in (A_RELEASE_RP, A_ABORT), kinds
        else:
            assert len(kinds) == 1
    still_serving(fuzzed_node)


def _good_messages() -> st.SearchStrategy[bytes]:
    ds = instance(rows=8)
    store = p_data(pdv(3, 3, store_rq(ds)), pdv(3, 2, encoded(ds)))
    return st.sampled_from(
        [
            p_data(pdv(1, 3, echo_rq())),
            store,
            store[: len(store) // 2],  # cut off: the rest comes as other PDUs' bytes
            p_data(pdv(3, 3, store_rq(ds))),  # a C-STORE whose data set never comes
            RELEASE_RQ,
        ]
    )


@given(
    middle=st.lists(st.one_of(_good_messages(), hostile_pdu()), min_size=1, max_size=4),
    after=st.lists(hostile_pdu(), max_size=2),
)
def test_any_pdus_inside_an_association_get_a_standard_answer(
    fuzzed_node: Node, middle: list[bytes], after: list[bytes]
) -> None:
    request = associate_rq(fuzzed_node.settings.aet, CONTEXTS)
    stream = b"".join(middle)
    got = exchange(fuzzed_node, request + stream + RELEASE_RQ + b"".join(after))
    kinds = [kind for kind, _ in got]
    assert kinds[:1] == [A_ASSOCIATE_AC]
    assert all(kind in (P_DATA_TF, A_RELEASE_RP, A_ABORT) for kind in kinds[1:]), kinds
    if not aborts_on_its_own(stream + RELEASE_RQ):
        assert kinds[-1] in (A_RELEASE_RP, A_ABORT), kinds
    if A_ABORT in kinds:
        body = got[kinds.index(A_ABORT)][1]
        assert body[2] == 2 and body[3] in (0, 1, 2, 4, 5, 6)  # service provider, table 9-26
    still_serving(fuzzed_node)
    nothing_half_stored(fuzzed_node)
