"""Helpers of the DIMSE tests: DCMTK command lines, stored bytes, raw DIMSE messages."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF

from isthmus.config import Peer, Settings
from isthmus.dicom.part10 import split_part10
from isthmus.server import Node
from isthmus.testing import dcmtk
from isthmus.testing.net import free_port


@contextmanager
def dicom_node(folder: Path, **settings: Any) -> Iterator[Node]:
    """A node serving DICOM only (no HTTP), on a fresh SQLite archive under `folder`,
    with `settings` on top of free loopback ports; stopped when the context ends."""
    node = Node(
        Settings(
            data=folder / "data",
            dicom_port=free_port(),
            http_port=free_port(),
            index_url=f"sqlite:///{folder / 'index.sqlite'}",
            **settings,
        )
    )
    node.start(http=False)
    try:
        yield node
    finally:
        node.stop()


def peer(node: Node) -> Peer:
    return Peer(node.settings.aet, "127.0.0.1", node.dicom_port)


def address(node: Node, called: str | None = None) -> list[str]:
    """DCMTK arguments naming the node: -aec AET 127.0.0.1 PORT."""
    return ["-aec", called or node.settings.aet, "127.0.0.1", str(node.dicom_port)]


def run_ok(name: str, *args: str, cwd: Path | None = None) -> str:
    """Run a DCMTK tool that must succeed; returns its combined output."""
    done = dcmtk.run(name, *args, cwd=cwd)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{name} failed ({done.returncode}):\n{output}"
    return output


def findscu(
    node: Node, folder: Path, level: str, *keys: str, model: str = "-S", calling: str = "FINDSCU"
) -> tuple[list[Dataset], str]:
    """Run DCMTK findscu; returns the responses (extracted with -X) and its log."""
    folder.mkdir(parents=True, exist_ok=True)
    args = [
        model,
        "-v",
        "-aet",
        calling,
        "-X",
        "-od",
        str(folder),
        "-k",
        f"QueryRetrieveLevel={level}",
    ]
    for key in keys:
        args += ["-k", key]
    output = run_ok("findscu", *args, *address(node))
    responses = [dcmread(p) for p in sorted(folder.glob("rsp*.dcm"))]
    for p in folder.glob("rsp*.dcm"):
        p.unlink()
    return responses, output


def dataset_bytes(part10: bytes) -> bytes:
    return bytes(split_part10(part10)[1])


def stored(node: Node, sop_uid: str) -> tuple[str, bytes]:
    """(transfer syntax, dataset bytes) the archive keeps for an instance."""
    rows = node.archive.instances(sop_uid=sop_uid)
    assert rows, f"{sop_uid} is not in the archive"
    return rows[0].transfer_syntax_uid, dataset_bytes(node.archive.read_instance(rows[0]))


def sop_uid_of(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def c_store_request(sop_class: str, sop_uid: str, data: bytes, message_id: int = 1) -> C_STORE:
    """A C-STORE request primitive carrying `data` as its (possibly broken) dataset."""
    req = C_STORE()
    req.MessageID = message_id
    req.AffectedSOPClassUID = sop_class
    req.AffectedSOPInstanceUID = sop_uid
    req.Priority = 2
    req.DataSet = BytesIO(data)
    return req


def send_raw_c_store(
    assoc: Association,
    req: C_STORE,
    abstract_syntax: str | None = None,
    transfer_syntax: str | None = None,
) -> int:
    """Send a C-STORE whose dataset bytes are sent exactly as given, on the context of
    `abstract_syntax` (by default the request's Affected SOP Class) and, if given,
    `transfer_syntax`; returns the status."""
    rsp = send_raw_request(assoc, req, abstract_syntax or req.AffectedSOPClassUID, transfer_syntax)
    return int(rsp.Status)


def send_raw_request(
    assoc: Association, req: Any, abstract_syntax: str, transfer_syntax: str | None = None
) -> Any:
    """Send a DIMSE request primitive (C-STORE, C-MOVE, C-GET, ...) whose data set is sent
    exactly as given, on the context of `abstract_syntax` (and `transfer_syntax` if
    given); returns the first response primitive."""
    context = next(
        cx
        for cx in assoc.accepted_contexts
        if cx.abstract_syntax == abstract_syntax
        and transfer_syntax in (None, cx.transfer_syntax[0])
    )
    assoc._reactor_checkpoint.clear()  # pause pynetdicom's reactor, as its own SCU calls do
    while not assoc._is_paused:
        time.sleep(0.0001)
    try:
        assoc.dimse.send_msg(req, context.context_id)
        _cx, rsp = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
    assert rsp is not None, "no response"
    return rsp


# ------------------------------------------------------------- raw upper layer (PS3.8)
APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def associate_rq(
    called: str, calling: str, contexts: list[tuple[int, str, list[str]]], max_pdu: int = 16384
) -> bytes:
    """An A-ASSOCIATE-RQ PDU built by hand (PS3.8 9.3.2): (id, abstract syntax, syntaxes)."""
    items = _item(0x10, APPLICATION_CONTEXT)
    for context_id, abstract, syntaxes in contexts:
        sub = _item(0x30, abstract.encode()) + b"".join(_item(0x40, ts.encode()) for ts in syntaxes)
        items += _item(0x20, struct.pack(">BBBB", context_id, 0, 0, 0) + sub)
    items += _item(0x50, _item(0x51, struct.pack(">I", max_pdu)))
    body = (
        struct.pack(">HH", 1, 0)
        + called.ljust(16).encode()
        + calling.ljust(16).encode()
        + b"\x00" * 32
        + items
    )
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    """(type, body) of the next PDU; (0, b"") when the peer closed the connection."""
    header = _read_exactly(sock, 6)
    if len(header) < 6:
        return 0, b""
    kind, length = header[0], struct.unpack(">I", header[2:6])[0]
    return kind, _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def c_store_pdus(context_id: int, req: C_STORE, max_pdu: int = 16384) -> list[bytes]:
    """The encoded P-DATA-TF PDUs carrying a C-STORE request (command, then dataset)."""
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    out = []
    for primitive in message.encode_msg(context_id, max_pdu):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        out.append(pdu.encode())
    return out


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a crashed peer or a pulled cable would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def mpps_in_progress(
    study: str, accession: str, patient_name: str = "DOE^JANE", patient_id: str = "P1"
) -> Dataset:
    """An MPPS N-CREATE data set (PS3.4 F.7.2.1) of a CT step IN PROGRESS for the
    scheduled step of `study` and `accession`."""
    ds = Dataset()
    step = Dataset()
    step.StudyInstanceUID = study
    step.AccessionNumber = accession
    step.RequestedProcedureID = "RP1"
    step.ScheduledProcedureStepID = "RP1"
    ds.ScheduledStepAttributesSequence = [step]
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "MODALITY"
    ds.PerformedProcedureStepStartDate = "20260102"
    ds.PerformedProcedureStepStartTime = "0931"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "CT"
    ds.PerformedSeriesSequence = []
    return ds


CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
# 1,100 UIDs of 63 characters: their list is longer than the 64 KiB a UI element's 16-bit
# length holds, so in Explicit VR it travels as UN (PS3.5 6.2.2).
LONG_FAILED_LIST = [f"1.2.826.0.1.3680043.10.1386.9{n:034d}" for n in range(1100)]


@contextmanager
def failing_retrieve_scp() -> Iterator[Peer]:
    """A pynetdicom Study Root Query/Retrieve SCP (AE title PACS) whose C-GET and C-MOVE
    end at once in 0xA702 with `LONG_FAILED_LIST` as the Failed SOP Instance UID List;
    its C-MOVE destination "SCU" is a pynetdicom storage SCP."""
    from pynetdicom import AE, evt

    store = AE(ae_title="SCU")
    store.add_supported_context(CT_IMAGE_STORAGE)
    store_port = free_port()
    receiver = store.start_server(("127.0.0.1", store_port), block=False)

    def final(event: Any, destination: bool) -> Iterator[Any]:
        if destination:
            yield "127.0.0.1", store_port
        yield len(LONG_FAILED_LIST)
        failed = Dataset()
        failed.FailedSOPInstanceUIDList = LONG_FAILED_LIST
        yield 0xA702, failed

    pacs = AE(ae_title="PACS")
    for model in ("1.2.840.10008.5.1.4.1.2.2.3", "1.2.840.10008.5.1.4.1.2.2.2"):
        pacs.add_supported_context(model, "1.2.840.10008.1.2.1")
    pacs.add_requested_context(CT_IMAGE_STORAGE)  # for its association to the destination
    port = free_port()
    server = pacs.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[
            (evt.EVT_C_GET, lambda event: final(event, False)),
            (evt.EVT_C_MOVE, lambda event: final(event, True)),
        ],
    )
    try:
        yield Peer("PACS", "127.0.0.1", port)
    finally:
        server.shutdown()
        receiver.shutdown()
