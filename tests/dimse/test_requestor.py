"""The lean storage requestor (requestor.py) behind `isthmus send` and C-MOVE
sub-operations, against DCMTK storescp run the ways real receivers are configured -
small PDUs, a restricted set of SOP classes or transfer syntaxes, refusing or aborting
associations - and against a hand-written SCP announcing odd limits.  SQLite only: what
is tested is the association, not the index.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE

from isthmus.config import Peer, Settings
from isthmus.dimse import scu
from isthmus.dimse.requestor import AssociationFailed, Requestor
from isthmus.server import Node
from isthmus.testing import dcmtk, samples
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port
from isthmus.testing.netns import can_isolate, inside, namespace_of

from .support import dataset_bytes, read_pdu

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
RLE = "1.2.840.10008.1.2.5"

# A storescp profile (DCMTK asconfig) accepting MR images and verification only.
MR_ONLY = """\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = LittleEndianImplicit
[[PresentationContexts]]
[MROnly]
PresentationContext1 = VerificationSOPClass\\Uncompressed
PresentationContext2 = MRImageStorage\\Uncompressed
[[Profiles]]
[MR]
PresentationContexts = MROnly
"""


# ------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node holding one study: 3 CT images (Explicit VR LE) and an RLE MR image."""
    folder = tmp_path_factory.mktemp("requestor")
    running = Node(
        Settings(
            data=folder / "data",
            dicom_port=free_port(),
            http_port=free_port(),
            index_url=f"sqlite:///{folder}/i.sqlite",
        )
    )
    running.start(http=False)
    try:
        ct = write_study(
            StudySpec(
                instances_per_series=3,
                rows=256,
                columns=256,
                study_uid="1.2.826.0.1.3680043.10.1386.9.77",
            ),
            folder / "ct",
        )
        [mr] = samples.write_samples(folder / "mr", [RLE]).values()
        ds = dcmread(mr)
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1386.9.77"
        ds.save_as(mr, enforce_file_format=True)
        for path in [*ct, mr]:
            assert running.archive.store(path.read_bytes()).status == "stored"
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def files(node: Node, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The node's study as Part 10 files: 3 CT (Explicit VR LE) then 1 MR (RLE)."""
    folder = tmp_path_factory.mktemp("files")
    out = []
    for n, row in enumerate(
        sorted(node.archive.instances(), key=lambda r: (r.sop_class_uid, r.sop_instance_uid))
    ):
        path = folder / f"{n}.dcm"
        path.write_bytes(node.archive.read_instance(row))
        out.append(path)
    return out


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[Callable[..., dcmtk.StoreSCP]]:
    """DCMTK storescp with extra options, stopped at teardown."""
    started: list[dcmtk.StoreSCP] = []

    def start(*options: str, aet: str = "STORESCP") -> dcmtk.StoreSCP:
        scp = dcmtk.StoreSCP(tmp_path / f"scp{len(started)}", aet, extra=list(options))
        started.append(scp)
        return scp.start()

    try:
        yield start
    finally:
        for scp in started:
            scp.stop()


@contextmanager
def storescp_with_profile(folder: Path, aet: str, config: str, profile: str) -> Iterator[int]:
    """storescp negotiating from an association profile (not with --promiscuous); it binds
    all interfaces on a free port.  Yields the port."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder.parent / "storescp.cfg").write_text(config)
    port = free_port()
    proc = subprocess.Popen(
        [
            dcmtk.tool("storescp"),
            "--aetitle",
            aet,
            "--output-directory",
            str(folder),
            "--bit-preserving",
            "--config-file",
            str(folder.parent / "storescp.cfg"),
            profile,
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert scu.echo(_wait_for(port, proc, aet)) == 0x0000
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_for(port: int, proc: subprocess.Popen[bytes], aet: str) -> Peer:
    for _ in range(600):
        assert proc.poll() is None, "storescp exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return Peer(aet, "127.0.0.1", port)
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("storescp does not listen")


def peer_of(scp: dcmtk.StoreSCP) -> Peer:
    return Peer(scp.aet, "127.0.0.1", scp.port)


def received(scp: dcmtk.StoreSCP) -> dict[str, Any]:
    """SOP Instance UID → dataset of what storescp wrote."""
    return {str(ds.SOPInstanceUID): ds for ds in map(dcmread, scp.received())}


def move(node: Node, destination: Peer) -> tuple[Dataset, Any]:
    """C-MOVE of the node's study to `destination` (made known for the call); the final
    response and its identifier."""
    node.access.register_destination(destination.aet, lambda: destination)
    try:
        ae = AE(ae_title="MOVER")
        ae.add_requested_context(MOVE, EXPLICIT_LE)
        assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.settings.aet)
        assert assoc.is_established
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = "1.2.826.0.1.3680043.10.1386.9.77"
        try:
            answers = list(assoc.send_c_move(identifier, destination.aet, MOVE))
        finally:
            assoc.release()
    finally:
        node.access.unregister_destination(destination.aet)
    assert scu.echo(Peer(node.settings.aet, "127.0.0.1", node.dicom_port)) == 0x0000
    return answers[-1]


def failed_uids(identifier: Any) -> list[str]:
    value = identifier.FailedSOPInstanceUIDList
    return sorted([value] if isinstance(value, str) else value)


# ------------------------------------------------------------------- isthmus send
def test_requestor_send_to_storescp_with_4096_byte_pdus(
    dcmtk_tools: None, storescp: Callable[..., dcmtk.StoreSCP], files: list[Path]
) -> None:
    scp = storescp("--max-pdu", "4096", "--accept-all")
    report = scu.send(peer_of(scp), files)
    assert (report.sent, report.failed) == (len(files), [])
    got = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in scp.received()}
    for path in files:
        sent = dcmread(path, stop_before_pixels=True)
        assert dataset_bytes(got[str(sent.SOPInstanceUID)].read_bytes()) == dataset_bytes(
            path.read_bytes()
        )


def test_requestor_send_reports_each_file_of_a_class_the_peer_refuses(
    dcmtk_tools: None, files: list[Path], tmp_path: Path
) -> None:
    plain_mr = samples.write_samples(tmp_path / "mr", [EXPLICIT_LE])[EXPLICIT_LE]
    with storescp_with_profile(tmp_path / "out", "MRONLY", MR_ONLY, "MR") as port:
        report = scu.send(Peer("MRONLY", "127.0.0.1", port), [*files, plain_mr])
    # The plain MR goes as it is; the RLE MR, whose syntax the peer refuses, is sent
    # decompressed (PS3.5 10: the uncompressed fallback context); CT is refused outright.
    assert report.sent == 2
    refused = {Path(name).name: reason for name, reason in report.failed}
    ct = [p for p in files if dcmread(p, stop_before_pixels=True).Modality == "CT"]
    assert sorted(refused) == sorted(p.name for p in ct)
    assert all("accepted no transfer syntax" in reason for reason in refused.values())
    mr = [p for p in files if p not in ct] + [plain_mr]
    assert sorted(str(dcmread(p).SOPInstanceUID) for p in (tmp_path / "out").iterdir()) == sorted(
        str(dcmread(p).SOPInstanceUID) for p in mr
    )


def test_requestor_send_to_a_peer_refusing_associations_says_so(
    dcmtk_tools: None, storescp: Callable[..., dcmtk.StoreSCP], files: list[Path]
) -> None:
    scp = storescp("--refuse")
    with pytest.raises(scu.SCUError, match="rejected the association"):
        scu.send(peer_of(scp), files)


@pytest.mark.parametrize("option", ["--abort-during", "--abort-after"])
def test_requestor_send_to_a_peer_aborting_mid_transfer_fails_every_file_cleanly(
    dcmtk_tools: None, storescp: Callable[..., dcmtk.StoreSCP], files: list[Path], option: str
) -> None:
    scp = storescp(option, "--accept-all")
    report = scu.send(peer_of(scp), files)
    assert report.sent == 0
    reasons = [reason for _name, reason in report.failed]
    assert len(reasons) == len(files)
    assert any(word in reasons[0] for word in ("aborted", "closed", "failed")), reasons[0]
    # later files are not tried on the dead association: no broken pipes
    assert all("has ended" in r or "does not accept" in r for r in reasons[1:]), reasons


# ------------------------------------------------------------ C-MOVE sub-operations
def test_requestor_move_to_storescp_with_4096_byte_pdus(
    dcmtk_tools: None, storescp: Callable[..., dcmtk.StoreSCP], node: Node
) -> None:
    scp = storescp("--max-pdu", "4096", "--accept-all", aet="SMALLPDU")
    status, _identifier = move(node, peer_of(scp))
    assert (status.Status, status.NumberOfCompletedSuboperations) == (0x0000, 4)
    got = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in scp.received()}
    assert len(got) == 4
    for row in node.archive.instances():  # as stored, RLE included
        assert dataset_bytes(got[row.sop_instance_uid].read_bytes()) == dataset_bytes(
            node.archive.read_instance(row)
        )


def test_requestor_move_to_an_implicit_only_storescp_transcodes(
    dcmtk_tools: None, storescp: Callable[..., dcmtk.StoreSCP], node: Node
) -> None:
    scp = storescp("--implicit", aet="IMPLICIT")
    status, _identifier = move(node, peer_of(scp))
    assert (status.Status, status.NumberOfCompletedSuboperations) == (0x0000, 4)
    for uid, ds in received(scp).items():
        assert ds.file_meta.TransferSyntaxUID == IMPLICIT_LE
        [row] = node.archive.instances(sop_uid=uid)
        original = dcmread(node.archive.open_instance(row))
        assert (ds.pixel_array == original.pixel_array).all()


def test_requestor_move_to_a_storescp_refusing_a_sop_class_ends_in_b000(
    dcmtk_tools: None, node: Node, tmp_path: Path
) -> None:
    with storescp_with_profile(tmp_path / "out", "MRONLY", MR_ONLY, "MR") as port:
        status, identifier = move(node, Peer("MRONLY", "127.0.0.1", port))
    ct = sorted(r.sop_instance_uid for r in node.archive.instances() if r.sop_class_uid == CT)
    assert (
        status.Status,
        status.NumberOfCompletedSuboperations,
        status.NumberOfFailedSuboperations,
    ) == (0xB000, 1, 3)
    assert failed_uids(identifier) == ct  # the RLE MR went decompressed
    [written] = (tmp_path / "out").iterdir()
    assert dcmread(written).file_meta.TransferSyntaxUID in (EXPLICIT_LE, IMPLICIT_LE)


@pytest.mark.parametrize("option", ["--refuse", "--abort-during", "--abort-after"])
def test_requestor_move_to_a_peer_refusing_or_aborting_fails_with_a702_and_the_list(
    dcmtk_tools: None, storescp: Callable[..., dcmtk.StoreSCP], node: Node, option: str
) -> None:
    scp = storescp(option, "--accept-all", aet="BROKEN")
    status, identifier = move(node, peer_of(scp))
    everything = sorted(r.sop_instance_uid for r in node.archive.instances())
    assert (
        status.Status,
        status.NumberOfCompletedSuboperations,
        status.NumberOfFailedSuboperations,
    ) == (0xA702, 0, 4)
    assert failed_uids(identifier) == everything


# ------------------------------------------------------------- a hand-written SCP
class FakeSCP:
    """Accepts one association announcing `max_length`, answers each C-STORE with
    success and records the length of every PDV fragment it receives."""

    def __init__(self, max_length: int, answer: bool = True) -> None:
        self.max_length = max_length
        self.answer = answer
        self.fragments: list[int] = []
        self.pdu_lengths: list[int] = []
        self.data = b""
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        sock, _ = self.listener.accept()
        with sock:
            kind, body = read_pdu(sock)
            if not self.answer:
                return  # close without any answer
            sock.sendall(_associate_ac(body, self.max_length))
            command = b""
            while True:
                kind, body = read_pdu(sock)
                if kind != 0x04:
                    if kind == 0x05:
                        sock.sendall(b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00")
                    return
                self.pdu_lengths.append(len(body))
                pos = 0
                while pos < len(body):
                    length, context, control = struct.unpack_from(">IBB", body, pos)
                    fragment = body[pos + 6 : pos + 4 + length]
                    self.fragments.append(len(fragment))
                    pos += 4 + length
                    if control & 1:
                        command += fragment
                    else:
                        self.data += fragment
                        if control & 2:
                            sock.sendall(_store_rsp(context, command))
                            command = b""

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def _associate_ac(rq_body: bytes, max_length: int) -> bytes:
    """Accept every proposed context with its first transfer syntax (PS3.8 9.3.3)."""
    items, pos = _item(0x10, b"1.2.840.10008.3.1.1.1"), 68
    while pos < len(rq_body):
        kind, length = rq_body[pos], struct.unpack(">H", rq_body[pos + 2 : pos + 4])[0]
        if kind == 0x20:
            context, sub = rq_body[pos + 4], pos + 8
            while rq_body[sub] != 0x40:
                sub += 4 + struct.unpack(">H", rq_body[sub + 2 : sub + 4])[0]
            ts = rq_body[sub + 4 : sub + 4 + struct.unpack(">H", rq_body[sub + 2 : sub + 4])[0]]
            items += _item(0x21, bytes([context, 0, 0, 0]) + _item(0x40, ts))
        pos += 4 + length
    items += _item(0x50, _item(0x51, struct.pack(">I", max_length)) + _item(0x52, b"1.2.3"))
    body = rq_body[:68] + items
    return struct.pack(">BBI", 0x02, 0, len(body)) + body


def _store_rsp(context: int, command: bytes) -> bytes:
    """C-STORE-RSP success for a C-STORE-RQ command set (implicit VR LE, group 0000)."""
    fields, pos = {}, 12
    while pos + 8 <= len(command):
        element, length = struct.unpack_from("<HI", command, pos + 2)
        fields[element] = command[pos + 8 : pos + 8 + length]
        pos += 8 + length

    def element(number: int, value: bytes) -> bytes:
        return struct.pack("<HHI", 0, number, len(value)) + value

    rsp = (
        element(0x0002, fields[0x0002])
        + element(0x0100, b"\x01\x80")
        + element(0x0120, fields[0x0110])
        + element(0x0800, b"\x01\x01")
        + element(0x0900, b"\x00\x00")
        + element(0x1000, fields[0x1000])
    )
    rsp = element(0x0000, struct.pack("<I", len(rsp))) + rsp
    pdv = struct.pack(">IBB", len(rsp) + 2, context, 3) + rsp
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


@pytest.mark.parametrize("max_length", [8, 4097, 16383, 0])
def test_requestor_fragments_to_the_peer_maximum_in_even_lengths(
    files: list[Path], max_length: int
) -> None:
    """PS3.8 D.1 bounds each P-DATA-TF; DICOM data is even (DCMTK aborts on odd PDVs),
    so an odd maximum still yields even fragments.  0 means no maximum."""
    path = files[0]
    data = path.read_bytes()
    fake = FakeSCP(max_length)
    requestor = Requestor(
        Peer("FAKE", "127.0.0.1", fake.port), "SENDER", [(CT, [EXPLICIT_LE])]
    ).open()
    try:
        context = requestor.context_for(CT, EXPLICIT_LE)
        assert context is not None
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        if max_length == 8:  # 2 bytes a PDU: a small data set is enough
            data = data[: len(data) - len(dataset_bytes(data))] + b"\x08\x00\x60\x00CS\x02\x00CT"
        assert requestor.store(context, CT, uid, memoryview(dataset_bytes(data))) == 0x0000
    finally:
        requestor.release()
        fake.close()
    assert fake.data == dataset_bytes(data)
    assert all(length % 2 == 0 for length in fake.fragments)
    if max_length:
        assert max(fake.pdu_lengths) <= max_length


@pytest.mark.parametrize("max_length", [1, 6, 7])
def test_requestor_refuses_a_peer_whose_maximum_pdu_length_fits_no_data(max_length: int) -> None:
    fake = FakeSCP(max_length)
    try:
        with pytest.raises(AssociationFailed, match="PDUs of"):
            Requestor(Peer("FAKE", "127.0.0.1", fake.port), "SENDER", [(CT, [EXPLICIT_LE])]).open()
    finally:
        fake.close()


def test_requestor_a_peer_closing_without_answer_fails_and_leaves_no_socket() -> None:
    fake = FakeSCP(16384, answer=False)
    requestor = Requestor(Peer("FAKE", "127.0.0.1", fake.port), "SENDER", [(CT, [EXPLICIT_LE])])
    try:
        with pytest.raises(AssociationFailed, match="did not answer"):
            requestor.open()
        assert requestor.sock is None
    finally:
        fake.close()


@contextmanager
def storescp_behind_a_slow_link(folder: Path, rate: str) -> Iterator[str]:
    """DCMTK storescp on port 11112 of a network namespace whose loopback carries `rate`
    (tc tbf; this kernel has no netem); yields the namespace, where the requestor's
    socket must be made (netns.inside)."""
    if not can_isolate() or not shutil.which("tc"):
        pytest.skip("needs root, unshare, ip and tc")
    shape = f"tc qdisc add dev lo root tbf rate {rate} burst 64kb latency 400ms"
    script = f'ip link set lo up mtu 1500 && {shape} && exec "$@"'
    command = [dcmtk.tool("storescp"), "--output-directory", str(folder), "--promiscuous"]
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", script, "storescp", *command, "11112"],
        env=dcmtk.dcmtk_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        netns = namespace_of(proc.pid, 30)
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                assert proc.stderr is not None
                pytest.skip(f"no rate-limited namespace: {proc.stderr.read().decode()}")
            try:
                inside(netns, lambda: socket.create_connection(("127.0.0.1", 11112), 1)).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "storescp does not listen"
                time.sleep(0.05)
        yield netns
    finally:
        proc.kill()
        proc.wait()


def test_requestor_c_store_over_a_link_slower_than_its_timeout_succeeds(tmp_path: Path) -> None:
    """A timeout is idle time, not total time: a C-STORE of 1.2 MB over a 1 Mbit/s link
    (ten seconds) succeeds with a timeout of two.  The kernel takes the data set long
    before the peer has it: the wait for its response, and a send waiting for room in a
    full buffer, timed out while the link was still busy with our bytes."""
    path = write_study(StudySpec(instances_per_series=1, rows=768, columns=768), tmp_path / "a")[0]
    data = dataset_bytes(path.read_bytes())
    uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    received = tmp_path / "received"
    with storescp_behind_a_slow_link(received, "1mbit") as netns:
        peer = Peer("STORESCP", "127.0.0.1", 11112)
        requestor = inside(
            netns, lambda: Requestor(peer, "SENDER", [(CT, [EXPLICIT_LE])], timeout=2.0).open()
        )
        try:
            context = requestor.context_for(CT, EXPLICIT_LE)
            assert context is not None
            status = requestor.store(context, CT, uid, data)
        finally:
            requestor.release()
    assert status == 0x0000
    assert [p for p in received.iterdir() if uid in p.name]
