"""The acceptor's upper layer (PS3.8) against the peers the standard allows and nobody
tested: PDVs packed and split every legal way, C-CANCEL and A-RELEASE arriving early,
malformed PDUs, odd negotiation items, limits and timeouts.

A raw client speaks PDUs byte by byte here; its command sets are encoded and decoded
with pydicom, not with the code under test.  Protocol behaviour does not depend on the
index, so these tests run on SQLite only.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pynetdicom import AE, build_role
from pynetdicom.pdu_primitives import (
    AsynchronousOperationsWindowNegotiation,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import AllStoragePresentationContexts

from isthmus.config import Settings
from isthmus.dimse import scu
from isthmus.server import Node
from isthmus.testing import catalogue
from isthmus.testing.generate import StudySpec, ct_instance, study
from isthmus.testing.net import free_port

from .support import peer, stored

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
GET = "1.2.840.10008.5.1.4.1.2.2.3"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA_TF, A_RELEASE_RP, A_ABORT = 0x02, 0x03, 0x04, 0x06, 0x07
A_RELEASE_RQ_PDU = b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"
A_ABORT_PDU = b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"


# ------------------------------------------------------------------ a raw requestor
def item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def associate_rq(
    called: str,
    contexts: list[tuple[int, str, list[str]]],
    max_pdu: int = 16384,
    user_items: bytes = b"",
    version: int = 1,
    application_context: str = APPLICATION_CONTEXT,
) -> bytes:
    """An A-ASSOCIATE-RQ (PS3.8 9.3.2) with any protocol version, context and user items."""
    items = item(0x10, application_context.encode())
    for context_id, abstract, syntaxes in contexts:
        sub = item(0x30, abstract.encode()) + b"".join(item(0x40, ts.encode()) for ts in syntaxes)
        items += item(0x20, bytes([context_id, 0, 0, 0]) + sub)
    user = item(0x51, struct.pack(">I", max_pdu)) + item(0x52, b"1.2.826.0.1.3680043.10.1386.7")
    items += item(0x50, user + user_items)
    body = (
        struct.pack(">HH", version, 0)
        + called.ljust(16).encode()
        + b"RAWPEER".ljust(16)
        + b"\x00" * 32
        + items
    )
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def pdv(context_id: int, control: int, data: bytes) -> bytes:
    """A presentation data value item (PS3.8 9.3.5.1); control bit 0 command, bit 1 last."""
    return struct.pack(">IBB", len(data) + 2, context_id, control) + data


def p_data(*pdvs: bytes) -> bytes:
    body = b"".join(pdvs)
    return struct.pack(">BBI", P_DATA_TF, 0, len(body)) + body


def command(**fields: Any) -> bytes:
    """A command set by keyword, Implicit VR Little Endian with its group length (PS3.7 6.3)."""
    ds = Dataset()
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)
    body = buf.getvalue()
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def encoded(ds: Dataset, implicit: bool = False) -> bytes:
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, implicit
    write_dataset(buf, ds)
    return buf.getvalue()


def decoded(data: bytes, implicit: bool = True) -> Dataset:
    return read_dataset(BytesIO(data), implicit, True)


class RawAssociation:
    """One TCP connection speaking PDUs by hand; it records each P-DATA-TF's length."""

    def __init__(self, node: Node, contexts: list[tuple[int, str, list[str]]], **rq: Any) -> None:
        self.sock = socket.create_connection(("127.0.0.1", node.dicom_port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(associate_rq(node.settings.aet, contexts, **rq))
        self.kind, self.body = self.read_pdu()
        self.p_data_lengths: list[int] = []
        self.fragment_lengths: list[int] = []

    def read_pdu(self) -> tuple[int, bytes]:
        """(type, body) of the next PDU; (0, b"") when the connection is closed."""
        header = self._exactly(6)
        if len(header) < 6:
            return 0, b""
        kind, length = header[0], struct.unpack(">I", header[2:6])[0]
        return kind, self._exactly(length)

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            try:
                chunk = self.sock.recv(size - len(data))
            except ConnectionResetError:
                return data
            if not chunk:
                break
            data += chunk
        return data

    def message(self) -> tuple[Dataset, bytes | None]:
        """The next DIMSE message: (command set, data set bytes or None)."""
        cmd, data, command_set = b"", b"", None
        while True:
            kind, body = self.read_pdu()
            assert kind == P_DATA_TF, f"PDU 0x{kind:02X} instead of P-DATA-TF"
            self.p_data_lengths.append(len(body))
            pos = 0
            while pos < len(body):
                length, control = struct.unpack_from(">I", body, pos)[0], body[pos + 5]
                fragment = body[pos + 6 : pos + 4 + length]
                self.fragment_lengths.append(len(fragment))
                pos += 4 + length
                if control & 1:
                    cmd += fragment
                    if control & 2:
                        command_set = decoded(cmd)
                        if command_set.CommandDataSetType == 0x0101:
                            return command_set, None
                else:
                    data += fragment
                    if control & 2:
                        assert command_set is not None
                        return command_set, data

    def responses(self) -> list[Dataset]:
        """Response command sets up to and including the first non-pending one."""
        out = []
        while True:
            rsp, _data = self.message()
            out.append(rsp)
            if rsp.Status not in (0xFF00, 0xFF01):
                return out

    def release(self) -> int:
        self.sock.sendall(A_RELEASE_RQ_PDU)
        kind, _ = self.read_pdu()
        self.close()
        return kind

    def close(self) -> None:
        self.sock.close()


def context_results(ac_body: bytes) -> dict[int, int]:
    """Result of each presentation context in an A-ASSOCIATE-AC (PS3.8 9.3.3.2)."""
    out, pos = {}, 68
    while pos + 4 <= len(ac_body):
        kind, length = ac_body[pos], struct.unpack(">H", ac_body[pos + 2 : pos + 4])[0]
        if kind == 0x21:
            out[ac_body[pos + 4]] = ac_body[pos + 6]
        pos += 4 + length
    return out


def user_sub_items(ac_body: bytes) -> list[int]:
    """Types of the user information sub-items of an A-ASSOCIATE-AC."""
    pos = 68
    while pos + 4 <= len(ac_body):
        kind, length = ac_body[pos], struct.unpack(">H", ac_body[pos + 2 : pos + 4])[0]
        if kind == 0x50:
            user, sub, kinds = ac_body[pos + 4 : pos + 4 + length], 0, []
            while sub + 4 <= len(user):
                kinds.append(user[sub])
                sub += 4 + struct.unpack(">H", user[sub + 2 : sub + 4])[0]
            return kinds
        pos += 4 + length
    return []


def echo_rq(message_id: int = 1) -> bytes:
    return command(
        AffectedSOPClassUID=VERIFICATION,
        CommandField=0x0030,
        MessageID=message_id,
        CommandDataSetType=0x0101,
    )


def store_rq(ds: Dataset, message_id: int = 1) -> bytes:
    return command(
        AffectedSOPClassUID=ds.SOPClassUID,
        CommandField=0x0001,
        MessageID=message_id,
        Priority=0,
        CommandDataSetType=0x0000,
        AffectedSOPInstanceUID=ds.SOPInstanceUID,
    )


def find_rq(message_id: int = 7) -> bytes:
    return command(
        AffectedSOPClassUID=FIND,
        CommandField=0x0020,
        MessageID=message_id,
        Priority=0,
        CommandDataSetType=0x0000,
    )


def cancel_rq(message_id: int = 7) -> bytes:
    return command(
        CommandField=0x0FFF, MessageIDBeingRespondedTo=message_id, CommandDataSetType=0x0101
    )


def study_query() -> bytes:
    """The catalogue's six studies (other tests store studies of their own)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = [catalogue.study_uid(e.key) for e in catalogue.ENTRIES]
    ds.PatientName = ""
    return encoded(ds)


def instance(rows: int = 16) -> Dataset:
    return next(study(StudySpec(instances_per_series=1, rows=rows, columns=rows)))


def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Wait for a condition that another thread makes true (not a speed check)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """One node on SQLite holding the catalogue (six studies)."""
    folder = tmp_path_factory.mktemp("protocol")
    running = Node(
        Settings(
            data=folder / "data",
            dicom_port=free_port(),
            http_port=free_port(),
            index_url=f"sqlite:///{folder / 'index.sqlite'}",
        )
    )
    running.start(http=False)
    try:
        catalogue.load(running.archive, folder / "catalogue")
        yield running
    finally:
        running.stop()


@pytest.fixture
def sqlite_node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Start SQLite nodes with changed settings; all are stopped at teardown."""
    nodes: list[Node] = []

    def start(**changes: Any) -> Node:
        folder = tmp_path / f"node{len(nodes)}"
        started = Node(
            Settings(
                data=folder,
                dicom_port=free_port(),
                http_port=free_port(),
                index_url=f"sqlite:///{folder}.sqlite",
                **changes,
            )
        )
        nodes.append(started)
        started.start(http=False)
        return started

    try:
        yield start
    finally:
        for started in nodes:
            started.stop()


def still_serving(node: Node) -> None:
    assert scu.echo(peer(node), "AFTERWARDS") == 0x0000


def nothing_half_stored(node: Node) -> None:
    report = node.archive.check(repair=False)
    assert (report["partial"], report["orphans"], report["missing"]) == (0, 0, 0)


# ----------------------------------------------------------------- PDVs and PDUs
def test_acceptor_answers_every_message_packed_into_one_pdu(node: Node) -> None:
    assoc = RawAssociation(node, [(1, VERIFICATION, [IMPLICIT_LE])])
    assert assoc.kind == A_ASSOCIATE_AC
    assoc.sock.sendall(p_data(pdv(1, 3, echo_rq(1)), pdv(1, 3, echo_rq(2)), pdv(1, 3, echo_rq(3))))
    answered = [assoc.message()[0] for _ in range(3)]
    assert [(r.MessageIDBeingRespondedTo, r.Status, r.CommandField) for r in answered] == [
        (1, 0, 0x8030),
        (2, 0, 0x8030),
        (3, 0, 0x8030),
    ]
    assert assoc.release() == A_RELEASE_RP


@pytest.mark.parametrize(
    "command_pieces, data_piece, per_pdu",
    [
        (3, 97, 4),  # command in 3 PDVs; data set in 97-byte PDVs, 4 PDVs per PDU
        (1, 1, 256),  # one-byte data set PDVs
        (8, 4096, 1),  # one PDV per PDU, command in 8
    ],
    ids=["3-command-pdvs", "1-byte-pdvs", "pdv-per-pdu"],
)
def test_acceptor_reassembles_a_c_store_split_into_pdvs_every_legal_way(
    node: Node, command_pieces: int, data_piece: int, per_pdu: int
) -> None:
    ds = instance(rows=32)
    data, cmd = encoded(ds), store_rq(ds)
    cut = -(-len(cmd) // command_pieces)
    pdvs = [
        pdv(1, 1 | (2 if i + cut >= len(cmd) else 0), cmd[i : i + cut])
        for i in range(0, len(cmd), cut)
    ]
    pdvs += [
        pdv(1, 2 if i + data_piece >= len(data) else 0, data[i : i + data_piece])
        for i in range(0, len(data), data_piece)
    ]
    assoc = RawAssociation(node, [(1, CT, [EXPLICIT_LE])])
    for first in range(0, len(pdvs), per_pdu):
        assoc.sock.sendall(p_data(*pdvs[first : first + per_pdu]))
    rsp, _ = assoc.message()
    assert (rsp.CommandField, rsp.Status, rsp.AffectedSOPInstanceUID) == (
        0x8001,
        0x0000,
        ds.SOPInstanceUID,
    )
    assert assoc.release() == A_RELEASE_RP
    assert stored(node, ds.SOPInstanceUID) == (EXPLICIT_LE, data)


@pytest.mark.parametrize("max_pdu", [8, 65, 4097, 4096])
def test_acceptor_fragments_its_responses_to_the_peer_maximum_pdu_length(
    node: Node, max_pdu: int
) -> None:
    """PS3.8 D.1; fragments of even length even when the maximum is odd (DCMTK aborts on
    an odd one)."""
    assoc = RawAssociation(node, [(1, FIND, [EXPLICIT_LE])], max_pdu=max_pdu)
    assoc.sock.sendall(p_data(pdv(1, 3, find_rq()), pdv(1, 2, study_query())))
    responses = []
    while True:
        rsp, data = assoc.message()
        responses.append(decoded(data, implicit=False) if data else None)
        if rsp.Status != 0xFF00:
            break
    assert rsp.Status == 0x0000
    assert len(responses) == len(catalogue.ENTRIES) + 1
    assert {str(r.StudyInstanceUID) for r in responses[:-1]} == {
        catalogue.study_uid(e.key) for e in catalogue.ENTRIES
    }
    assert max(assoc.p_data_lengths) <= max_pdu
    assert all(length % 2 == 0 for length in assoc.fragment_lengths)
    assert assoc.release() == A_RELEASE_RP


@pytest.mark.parametrize("max_pdu", [1, 6, 7])
def test_acceptor_refuses_a_maximum_pdu_length_no_pdv_fits_in(node: Node, max_pdu: int) -> None:
    """PS3.8 D.1: below 8 bytes no PDV of even length fits; fragmenting for 6 never ended."""
    assoc = RawAssociation(node, [(1, VERIFICATION, [IMPLICIT_LE])], max_pdu=max_pdu)
    assert (assoc.kind, assoc.body[1:]) == (A_ASSOCIATE_RJ, bytes([1, 1, 1]))
    assoc.close()
    still_serving(node)


def test_acceptor_accepts_unlimited_pdu_length_zero(node: Node) -> None:
    """PS3.8 D.1: 0 means no maximum; a 180 KB data set goes in one PDV and each
    response fragment in one PDU."""
    ds = instance(rows=300)
    assoc = RawAssociation(node, [(1, CT, [EXPLICIT_LE]), (3, FIND, [EXPLICIT_LE])], max_pdu=0)
    assoc.sock.sendall(p_data(pdv(1, 3, store_rq(ds)), pdv(1, 2, encoded(ds))))
    assert assoc.message()[0].Status == 0x0000
    assoc.sock.sendall(p_data(pdv(3, 3, find_rq()), pdv(3, 2, study_query())))
    assert assoc.responses()[-1].Status == 0x0000
    # C-STORE-RSP, then a command and a data set per match, then the final C-FIND-RSP
    assert len(assoc.p_data_lengths) == 1 + len(catalogue.ENTRIES) * 2 + 1
    assert assoc.release() == A_RELEASE_RP
    assert stored(node, ds.SOPInstanceUID)[1] == encoded(ds)


# ------------------------------------------------------------ C-CANCEL and A-RELEASE
@pytest.mark.parametrize("same_pdu", [True, False], ids=["same-pdu", "next-pdu"])
def test_acceptor_c_cancel_sent_with_the_c_find_ends_it_with_fe00(
    node: Node, same_pdu: bool
) -> None:
    assoc = RawAssociation(node, [(1, FIND, [EXPLICIT_LE])])
    request = [pdv(1, 3, find_rq(7)), pdv(1, 2, study_query())]
    if same_pdu:
        assoc.sock.sendall(p_data(*request, pdv(1, 3, cancel_rq(7))))
    else:
        assoc.sock.sendall(p_data(*request) + p_data(pdv(1, 3, cancel_rq(7))))
    answers = assoc.responses()
    assert [(r.MessageIDBeingRespondedTo, r.Status) for r in answers] == [(7, 0xFE00)]
    assoc.sock.sendall(p_data(pdv(1, 3, find_rq(8)), pdv(1, 2, study_query())))
    assert len(assoc.responses()) == len(catalogue.ENTRIES) + 1  # the next one runs in full
    assert assoc.release() == A_RELEASE_RP


def test_acceptor_c_cancel_of_another_message_is_ignored(node: Node) -> None:
    assoc = RawAssociation(node, [(1, FIND, [EXPLICIT_LE])])
    assoc.sock.sendall(
        p_data(pdv(1, 3, find_rq(7)), pdv(1, 2, study_query()), pdv(1, 3, cancel_rq(99)))
    )
    assert [r.Status for r in assoc.responses()][-1] == 0x0000
    assert assoc.release() == A_RELEASE_RP


def test_acceptor_release_sent_right_after_a_c_find_is_answered_after_the_find(node: Node) -> None:
    """PS3.8 7.2, state Sta8: after an A-RELEASE indication the acceptor may still send
    P-DATA."""
    assoc = RawAssociation(node, [(1, FIND, [EXPLICIT_LE])])
    assoc.sock.sendall(p_data(pdv(1, 3, find_rq()), pdv(1, 2, study_query())) + A_RELEASE_RQ_PDU)
    answers = assoc.responses()
    assert [r.Status for r in answers] == [0xFF00] * len(catalogue.ENTRIES) + [0x0000]
    assert assoc.read_pdu()[0] == A_RELEASE_RP
    assoc.close()


def test_acceptor_release_sent_right_after_a_c_store_stores_and_answers_first(node: Node) -> None:
    ds = instance()
    assoc = RawAssociation(node, [(1, CT, [EXPLICIT_LE])])
    assoc.sock.sendall(p_data(pdv(1, 3, store_rq(ds)), pdv(1, 2, encoded(ds))) + A_RELEASE_RQ_PDU)
    assert assoc.message()[0].Status == 0x0000
    assert assoc.read_pdu()[0] == A_RELEASE_RP
    assoc.close()
    assert stored(node, ds.SOPInstanceUID)[1] == encoded(ds)


def test_acceptor_release_in_the_middle_of_a_message_drops_only_that_message(node: Node) -> None:
    ds = instance()
    assoc = RawAssociation(node, [(1, CT, [EXPLICIT_LE])])
    assoc.sock.sendall(p_data(pdv(1, 3, store_rq(ds))) + A_RELEASE_RQ_PDU)
    assert assoc.read_pdu()[0] == A_RELEASE_RP
    assoc.close()
    assert not node.archive.instances(sop_uid=ds.SOPInstanceUID)


# --------------------------------------------------------------- C-GET on a raw association
def _get_association(node: Node) -> tuple[RawAssociation, str]:
    """A raw association with C-GET and the SCP role for CT storage (PS3.7 D.3.3.4)."""
    uid = CT.encode()
    role = item(0x54, struct.pack(">H", len(uid)) + uid + b"\x00\x01")
    assoc = RawAssociation(node, [(1, GET, [EXPLICIT_LE]), (3, CT, [EXPLICIT_LE])], user_items=role)
    assert assoc.kind == A_ASSOCIATE_AC
    get = Dataset()
    get.QueryRetrieveLevel = "STUDY"
    get.StudyInstanceUID = catalogue.study_uid("A")
    assoc.sock.sendall(
        p_data(
            pdv(
                1,
                3,
                command(
                    AffectedSOPClassUID=GET,
                    CommandField=0x0010,
                    MessageID=5,
                    Priority=0,
                    CommandDataSetType=0,
                ),
            ),
            pdv(1, 2, encoded(get)),
        )
    )
    return assoc, catalogue.study_uid("A")


def _store_rsp(rq: Dataset, status: int = 0) -> bytes:
    return p_data(
        pdv(
            3,
            3,
            command(
                AffectedSOPClassUID=rq.AffectedSOPClassUID,
                CommandField=0x8001,
                MessageIDBeingRespondedTo=rq.MessageID,
                CommandDataSetType=0x0101,
                Status=status,
                AffectedSOPInstanceUID=rq.AffectedSOPInstanceUID,
            ),
        )
    )


def test_acceptor_c_cancel_during_c_get_sub_operations_ends_with_fe00_and_counts(
    node: Node,
) -> None:
    assoc, _study = _get_association(node)
    total = catalogue.instance_count("A")
    rq, data = assoc.message()
    assert rq.CommandField == 0x0001 and data
    assoc.sock.sendall(p_data(pdv(1, 3, cancel_rq(5))) + _store_rsp(rq))  # cancel, then answer
    answers = assoc.responses()
    assert [(r.Status, r.NumberOfCompletedSuboperations) for r in answers] == [
        (0xFF00, 1),
        (0xFE00, 1),
    ]
    final = answers[-1]
    assert (
        final.NumberOfRemainingSuboperations,
        final.NumberOfFailedSuboperations,
        final.NumberOfWarningSuboperations,
    ) == (total - 1, 0, 0)
    assert assoc.release() == A_RELEASE_RP


def test_acceptor_c_get_counts_warning_class_statuses_as_warnings(node: Node) -> None:
    """PS3.7 C.1: 0001, Bxxx, 0107 and 0116 are warnings; the final status is B000."""
    assoc, _study = _get_association(node)
    statuses = iter([0x0107, 0xB007, 0x0000, 0x0116])
    while True:
        rq, _data = assoc.message()
        if rq.CommandField != 0x0001:
            break
        assoc.sock.sendall(_store_rsp(rq, next(statuses)))
        pending, _ = assoc.message()
        assert pending.Status == 0xFF00
    assert (
        rq.Status,
        rq.NumberOfCompletedSuboperations,
        rq.NumberOfWarningSuboperations,
        rq.NumberOfFailedSuboperations,
    ) == (0xB000, 1, 3, 0)
    assert assoc.release() == A_RELEASE_RP


def test_acceptor_release_during_c_get_sub_operations_is_answered(node: Node) -> None:
    assoc, _study = _get_association(node)
    assert assoc.message()[0].CommandField == 0x0001
    assoc.sock.sendall(A_RELEASE_RQ_PDU)  # the requestor gives up (PS3.8 Sta7)
    assert assoc.read_pdu()[0] == A_RELEASE_RP
    assoc.close()
    still_serving(node)


# ---------------------------------------------------------------- malformed input
ECHO_CONTEXT = [(1, VERIFICATION, [IMPLICIT_LE]), (3, "1.2.3.999", [IMPLICIT_LE])]
MALFORMED = {
    # name: (bytes after the association is accepted, expected A-ABORT reason, PS3.8 9-26)
    "unknown-pdu-type": (b"\x09\x00\x00\x00\x00\x04\x00\x00\x00\x00", 1),
    "pdv-length-overrunning": (struct.pack(">BBIIBB", 4, 0, 10, 200, 1, 3) + b"\x00" * 4, 6),
    "pdv-on-rejected-context": (p_data(pdv(3, 3, echo_rq())), 6),
    "pdv-on-never-proposed-context": (p_data(pdv(5, 3, echo_rq())), 6),
    "data-set-before-command": (p_data(pdv(1, 2, b"\x08\x00\x52\x00\x00\x00\x00\x00")), 5),
    "garbage-command-set": (p_data(pdv(1, 3, bytes(range(7, 60)))), 6),
    "command-outside-group-0000": (
        p_data(pdv(1, 3, b"\x08\x00\x00\x01\x02\x00\x00\x00\x30\x00")),
        6,
    ),
    "oversized-pdu-length": (b"\x04\x00\xff\xff\xff\xf0" + b"\x00" * 64, 6),
    "second-a-associate-rq": (associate_rq("ISTHMUS", ECHO_CONTEXT[:1]), 2),
    "a-associate-ac-from-requestor": (b"\x02\x00\x00\x00\x00\x04\x00\x00\x00\x00", 2),
    "truncated-pdv-header": (b"\x04\x00\x00\x00\x00\x03\x00\x00\x00", 6),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_acceptor_aborts_a_malformed_pdu_and_keeps_serving(node: Node, name: str) -> None:
    data, reason = MALFORMED[name]
    assoc = RawAssociation(node, ECHO_CONTEXT)
    assert context_results(assoc.body) == {1: 0, 3: 3}
    assoc.sock.sendall(data)
    kind, body = assoc.read_pdu()
    assert (kind, body[2], body[3]) == (A_ABORT, 2, reason)  # source: service provider
    assert assoc.read_pdu() == (0, b"")  # then the connection closes
    assoc.close()
    still_serving(node)


def test_acceptor_treats_a_command_without_data_set_on_a_store_context_as_unrecognized(
    node: Node,
) -> None:
    ds = instance()
    assoc = RawAssociation(node, [(1, CT, [EXPLICIT_LE]), (3, VERIFICATION, [IMPLICIT_LE])])
    assoc.sock.sendall(
        p_data(
            pdv(
                1,
                3,
                command(
                    AffectedSOPClassUID=CT,
                    CommandField=0x0001,
                    MessageID=3,
                    Priority=0,
                    CommandDataSetType=0x0101,
                    AffectedSOPInstanceUID=ds.SOPInstanceUID,
                ),
            )
        )
    )
    rsp, _ = assoc.message()
    assert (rsp.CommandField, rsp.MessageIDBeingRespondedTo) == (0x8001, 3)
    assert rsp.Status & 0xF000 in (0xA000, 0xC000) or rsp.Status == 0x0211
    assoc.sock.sendall(p_data(pdv(3, 3, echo_rq(4))))  # the association goes on
    assert assoc.message()[0].Status == 0x0000
    assert assoc.release() == A_RELEASE_RP


@pytest.mark.parametrize("how", ["a-abort", "tcp-close-mid-pdu", "tcp-reset-mid-pdu"])
def test_acceptor_stores_nothing_from_a_transfer_cut_off_mid_data_set(node: Node, how: str) -> None:
    ds = instance(rows=256)
    data = encoded(ds)
    assoc = RawAssociation(node, [(1, CT, [EXPLICIT_LE])], max_pdu=0)
    assoc.sock.sendall(p_data(pdv(1, 3, store_rq(ds)), pdv(1, 0, data[:50_000])))
    if how == "a-abort":
        assoc.sock.sendall(A_ABORT_PDU)
    else:  # a PDU header promising more than ever comes
        last = pdv(1, 2, data[50_000:])
        assoc.sock.sendall(struct.pack(">BBI", P_DATA_TF, 0, len(last)) + last[:1000])
        if how == "tcp-reset-mid-pdu":
            assoc.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assoc.close()
    still_serving(node)
    assert eventually(lambda: node.router.own.associations == 0)
    assert not node.archive.instances(sop_uid=ds.SOPInstanceUID)
    nothing_half_stored(node)


# --------------------------------------------------------- A-ASSOCIATE-RQ and limits
@pytest.mark.parametrize(
    "rq, expected",
    [
        ({"version": 2}, (1, 2, 2)),  # protocol version not supported
        ({"version": 0}, (1, 2, 2)),
        ({"application_context": "1.2.840.10008.3.1.1.2"}, (1, 1, 2)),  # application context
    ],
    ids=["version-2", "version-0", "application-context"],
)
def test_acceptor_rejects_a_request_it_cannot_speak(
    node: Node, rq: dict, expected: tuple[int, int, int]
) -> None:
    assoc = RawAssociation(node, [(1, VERIFICATION, [IMPLICIT_LE])], **rq)
    assert (assoc.kind, tuple(assoc.body[1:4])) == (A_ASSOCIATE_RJ, expected)
    assoc.close()


def test_acceptor_accepts_a_protocol_version_with_bit_0_set(node: Node) -> None:
    """PS3.8 9.3.2: only bit 0 (version 1) is tested."""
    assoc = RawAssociation(node, [(1, VERIFICATION, [IMPLICIT_LE])], version=0x0003)
    assert assoc.kind == A_ASSOCIATE_AC
    assert assoc.release() == A_RELEASE_RP


def test_acceptor_a_request_arriving_in_pieces_is_accepted(node: Node) -> None:
    """A-ASSOCIATE-RQ split over TCP segments with pauses, as on a slow network."""
    rq = associate_rq(node.settings.aet, [(1, VERIFICATION, [IMPLICIT_LE])])
    for cuts in ([3], [6, 20], [41, 43], [len(rq) - 1]):
        sock = socket.create_connection(("127.0.0.1", node.dicom_port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = 0
        for cut in cuts:
            sock.sendall(rq[start:cut])
            start = cut
            time.sleep(0.15)  # a separate segment the router sees first
        sock.sendall(rq[start:])
        header = sock.recv(1)
        sock.close()
        assert header == bytes([A_ASSOCIATE_AC]), f"split at {cuts}"


def test_acceptor_accepts_a_request_larger_than_a_socket_buffer(node: Node) -> None:
    """128 contexts of 38 long syntax UIDs each: an A-ASSOCIATE-RQ of 330 KB, more than
    one can peek at in a socket's default receive buffer (128 KB)."""
    syntaxes = [f"1.2.826.0.1.3680043.10.1386.97.{n:030d}" for n in range(37)] + [EXPLICIT_LE]
    contexts = [
        (2 * n + 1, cx.abstract_syntax, syntaxes)
        for n, cx in enumerate(AllStoragePresentationContexts[:127])
    ]
    contexts.append((255, VERIFICATION, syntaxes))
    assert len(associate_rq("ISTHMUS", contexts)) > 2 * 131_072
    assoc = RawAssociation(node, contexts)
    assert assoc.kind == A_ASSOCIATE_AC
    assert set(context_results(assoc.body).values()) == {0}
    assoc.sock.sendall(p_data(pdv(255, 3, echo_rq())))
    assert assoc.message()[0].Status == 0x0000
    assert assoc.release() == A_RELEASE_RP


def test_acceptor_ignores_negotiation_items_it_does_not_support(node: Node) -> None:
    """Async window, extended and common extended negotiation, user identity and an
    unknown sub-item: accepted, and none of them answered (PS3.7 D.3.3)."""
    ct = CT.encode()
    extra = (
        item(0x53, struct.pack(">HH", 8, 8))
        + item(0x56, struct.pack(">H", len(ct)) + ct + b"\x01\x01")
        + item(
            0x57,
            struct.pack(">H", len(ct))
            + ct
            + struct.pack(">H", 17)
            + b"1.2.840.10008.4.2"
            + b"\x00\x00",
        )
        + item(0x58, b"\x02\x01" + struct.pack(">H", 4) + b"user" + struct.pack(">H", 2) + b"pw")
        + item(0x5F, b"future item")
    )
    assoc = RawAssociation(node, [(1, VERIFICATION, [IMPLICIT_LE])], user_items=extra)
    assert assoc.kind == A_ASSOCIATE_AC
    assert not {0x53, 0x56, 0x57, 0x59, 0x5F} & set(user_sub_items(assoc.body))
    assoc.sock.sendall(p_data(pdv(1, 3, echo_rq())))
    assert assoc.message()[0].Status == 0x0000
    assert assoc.release() == A_RELEASE_RP


def test_acceptor_more_associations_than_allowed_get_a_transient_rejection(
    sqlite_node: Callable[..., Node],
) -> None:
    limited = sqlite_node(max_associations=2)
    first = RawAssociation(limited, [(1, VERIFICATION, [IMPLICIT_LE])])
    second = RawAssociation(limited, [(1, VERIFICATION, [IMPLICIT_LE])])
    third = RawAssociation(limited, [(1, VERIFICATION, [IMPLICIT_LE])])
    assert (first.kind, second.kind) == (A_ASSOCIATE_AC, A_ASSOCIATE_AC)
    # transient, service provider (presentation related), local limit exceeded (PS3.8 9-21)
    assert (third.kind, tuple(third.body[1:4])) == (A_ASSOCIATE_RJ, (2, 3, 2))
    third.close()
    assert first.release() == A_RELEASE_RP
    assert eventually(lambda: limited.router.own.associations <= 1)
    again = RawAssociation(limited, [(1, VERIFICATION, [IMPLICIT_LE])])
    assert again.kind == A_ASSOCIATE_AC
    for assoc in (second, again):
        assert assoc.release() == A_RELEASE_RP


def test_acceptor_limit_is_per_node(sqlite_node: Callable[..., Node]) -> None:
    """Associations held by one node do not count against another in the same process."""
    busy, other = sqlite_node(max_associations=1), sqlite_node(max_associations=1)
    held = RawAssociation(busy, [(1, VERIFICATION, [IMPLICIT_LE])])
    assert held.kind == A_ASSOCIATE_AC
    assert scu.echo(peer(other)) == 0x0000
    assert held.release() == A_RELEASE_RP


@pytest.mark.parametrize("when", ["idle", "mid-message"])
def test_acceptor_aborts_an_association_idle_longer_than_the_network_timeout(
    sqlite_node: Callable[..., Node], when: str
) -> None:
    quick = sqlite_node(network_timeout=0.5)
    ds = instance()
    assoc = RawAssociation(quick, [(1, CT, [EXPLICIT_LE])])
    assert assoc.kind == A_ASSOCIATE_AC
    if when == "mid-message":
        assoc.sock.sendall(p_data(pdv(1, 3, store_rq(ds))))  # the data set never comes
    kind, body = assoc.read_pdu()
    assert (kind, body[2]) == (A_ABORT, 2)
    assoc.close()
    still_serving(quick)
    assert not quick.archive.instances(sop_uid=ds.SOPInstanceUID)


def test_acceptor_survives_many_broken_associations_and_frees_their_slots(
    sqlite_node: Callable[..., Node],
) -> None:
    limited = sqlite_node(max_associations=2)
    for name in MALFORMED:
        assoc = RawAssociation(limited, ECHO_CONTEXT)
        assoc.sock.sendall(MALFORMED[name][0])
        assoc.read_pdu()
        assoc.close()
    assert eventually(lambda: limited.router.own.associations == 0)
    together = [RawAssociation(limited, [(1, VERIFICATION, [IMPLICIT_LE])]) for _ in range(2)]
    assert [a.kind for a in together] == [A_ASSOCIATE_AC, A_ASSOCIATE_AC]
    for assoc in together:
        assert assoc.release() == A_RELEASE_RP


# ------------------------------------------------------- pynetdicom as the requestor
@pytest.mark.parametrize("max_pdu", [0, 4096, 16382])
def test_acceptor_pynetdicom_echo_store_find_at_any_maximum_pdu_length(
    node: Node, max_pdu: int
) -> None:
    ds = ct_instance(
        StudySpec(rows=256, columns=256),
        "1.2.826.0.1.3680043.10.1386.9.55",
        f"1.2.826.0.1.3680043.10.1386.9.55.{max_pdu}",
        1,
        1,
    )
    ae = AE(ae_title=f"PDU{max_pdu}")
    ae.maximum_pdu_size = max_pdu
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(CT, EXPLICIT_LE)
    ae.add_requested_context(FIND, EXPLICIT_LE)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.settings.aet)
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_store(ds).Status == 0x0000
        query = decoded(study_query(), implicit=False)
        found = [(status.Status, ident) for status, ident in assoc.send_c_find(query, FIND)]
    finally:
        assoc.release()
    assert stored(node, ds.SOPInstanceUID) == (EXPLICIT_LE, encoded(ds))
    assert found[-1][0] == 0x0000
    assert sorted(str(i.StudyInstanceUID) for _s, i in found[:-1]) == sorted(
        catalogue.study_uid(e.key) for e in catalogue.ENTRIES
    )


def test_acceptor_pynetdicom_negotiation_items_leave_the_association_usable(node: Node) -> None:
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 5
    window.maximum_number_operations_performed = 5
    identity = UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.primary_field = b"user"
    identity.secondary_field = b"secret"
    identity.positive_response_requested = True
    extended = SOPClassExtendedNegotiation()
    extended.sop_class_uid = CT
    extended.service_class_application_information = b"\x02\x00\x00\x00\x01\x00"
    common = SOPClassCommonExtendedNegotiation()
    common.sop_class_uid = CT
    common.service_class_uid = "1.2.840.10008.4.2"
    common.related_general_sop_class_identification = ["1.2.840.10008.5.1.4.1.1.2.1"]
    roles = [
        build_role(CT, scu_role=True, scp_role=True),
        build_role(MR, scp_role=True),
        build_role(FIND, scu_role=True, scp_role=True),
    ]
    ae = AE(ae_title="NEGOTIATOR")
    for abstract in (VERIFICATION, CT, MR, FIND):
        ae.add_requested_context(abstract, [EXPLICIT_LE, IMPLICIT_LE])
    assoc = ae.associate(
        "127.0.0.1",
        node.dicom_port,
        ae_title=node.settings.aet,
        ext_neg=[window, identity, extended, common, *roles],
    )
    assert assoc.is_established
    try:
        answered = assoc.acceptor.role_selection
        assert {uid: (r.scu_role, r.scp_role) for uid, r in answered.items()} == {
            CT: (True, True),
            MR: (False, True),
            FIND: (True, False),
        }  # no Q/R SCP role here
        assert assoc.acceptor.asynchronous_operations == (1, 1)  # not offered: default
        assert assoc.acceptor.user_identity is None
        assert assoc.send_c_echo().Status == 0x0000
        ds = instance()
        assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    assert stored(node, ds.SOPInstanceUID)[1] == encoded(ds)


def test_acceptor_pynetdicom_128_contexts_accepted_and_rejected_side_by_side(node: Node) -> None:
    ae = AE(ae_title="MANY")
    storage = [cx.abstract_syntax for cx in AllStoragePresentationContexts[:120]]
    for abstract in storage:
        ae.add_requested_context(abstract, EXPLICIT_LE)
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(FIND, EXPLICIT_LE)
    for n in range(3):
        ae.add_requested_context(f"1.2.826.0.1.3680043.10.1386.99.{n}", EXPLICIT_LE)
    ae.add_requested_context(MR, "1.2.826.0.1.3680043.10.1386.98")  # unknown syntax only
    ae.add_requested_context(GET, ["1.2.840.10008.1.2.4.50"])  # JPEG for a query
    ae.add_requested_context(CT, IMPLICIT_LE)
    assert len(ae.requested_contexts) == 128
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.settings.aet)
    assert assoc.is_established
    try:
        accepted = {
            (str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts
        }
        rejected = {str(cx.abstract_syntax): cx.result for cx in assoc.rejected_contexts}
        assert len(accepted) == 123 and (CT, IMPLICIT_LE) in accepted
        assert rejected == {
            **{f"1.2.826.0.1.3680043.10.1386.99.{n}": 3 for n in range(3)},
            MR: 4,
            GET: 4,
        }
        ds = instance()
        assert assoc.send_c_store(ds).Status == 0x0000
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
