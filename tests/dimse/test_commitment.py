"""Storage Commitment Push Model (PS3.4 Annex J) against real peers.

pynetdicom is the Storage Commitment SCU: it asks with N-ACTION and receives the
N-EVENT-REPORT on the same association, or, when it has released before the result,
as the acceptor of a new association the archive requests (with SCP role selection).
Both backends; an instance is committed only if stored and intact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel, Verification

from isthmus.config import Peer, Settings
from isthmus.dicom.ul import pdata, pdu, transport
from isthmus.dimse import messages as msg
from isthmus.dimse.requestor import Requestor
from isthmus.server import Node
from isthmus.testing import generate
from isthmus.testing.net import free_port

WELL_KNOWN = "1.2.840.10008.1.20.1.1"
RECEIVER = "COMMITSCU"


class Receiver:
    """A pynetdicom AE that accepts associations and keeps each N-EVENT-REPORT it gets,
    by Transaction UID (a result may come twice: see test_a_requestor_that_releases...)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.reports: list[tuple[str, int, Dataset]] = []
        self.arrived = threading.Condition()
        ae = AE(ae_title=RECEIVER)
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        ae.add_supported_context(Verification)
        self.server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, self.on_report("new"))],
        )

    def on_report(self, where: str) -> Any:
        def handler(event: Any) -> tuple[int, None]:
            with self.arrived:
                self.reports.append((where, event.request.EventTypeID, event.event_information))
                self.arrived.notify_all()
            return 0x0000, None

        return handler

    def result(self, transaction: str) -> tuple[str, int, Dataset]:
        """The first report of `transaction` (waiting for it)."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: self.seen(transaction), timeout=30)
            return next(r for r in self.reports if r[2].TransactionUID == transaction)

    def seen(self, transaction: str) -> bool:
        return any(r[2].get("TransactionUID") == transaction for r in self.reports)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()


@pytest.fixture(scope="module")
def node(
    module_index_url: str, tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[Node]:
    settings = Settings(
        data=tmp_path_factory.mktemp("stgcmt"),
        dicom_port=free_port(),
        http_port=free_port(),
        index_url=module_index_url,
        peers=(Peer(RECEIVER, "127.0.0.1", receiver.port),),
    )
    node = Node(settings)
    node.start(http=False)
    try:
        yield node
    finally:
        node.stop()


def _stored(node: Node, count: int) -> list[tuple[str, str]]:
    """Store `count` generated CT instances; their (class, instance) UIDs."""
    refs = []
    spec = generate.StudySpec(instances_per_series=count, rows=8, columns=8)
    for ds in generate.study(spec):
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        assert node.archive.store(buffer.getvalue()).ok
        refs.append((str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
    return refs


def _request(refs: list[tuple[str, str]], transaction: str | None = None) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction or generate_uid()
    ds.ReferencedSOPSequence = []
    for sop_class, sop_instance in refs:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        ds.ReferencedSOPSequence.append(item)
    return ds


def _without_transaction() -> Dataset:
    request = _request([(CTImageStorage, generate_uid())])
    del request.TransactionUID
    return request


def _ask(node: Node, receiver: Receiver, request: Dataset, instance: str = WELL_KNOWN) -> int:
    """N-ACTION on a pynetdicom association kept open until the report came (or not)."""
    ae = AE(ae_title=RECEIVER)
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate(
        "127.0.0.1",
        node.dicom_port,
        ae_title=node.settings.aet,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, receiver.on_report("same"))],
    )
    assert assoc.is_established
    try:
        status, _reply = assoc.send_n_action(request, 1, StorageCommitmentPushModel, instance)
        code = int(status.Status)
        if code == 0:
            receiver.result(request.TransactionUID)  # while the association is open
        return code
    finally:
        assoc.release()


def _uids(sequence: Any) -> set[str]:
    return {str(item.ReferencedSOPInstanceUID) for item in sequence or []}


def test_all_intact_instances_are_committed_on_the_same_association(
    node: Node, receiver: Receiver
) -> None:
    refs = _stored(node, 3)
    request = _request(refs)
    assert _ask(node, receiver, request) == 0x0000
    where, event_type, info = receiver.result(request.TransactionUID)
    assert where == "same"
    assert event_type == 1
    assert info.TransactionUID == request.TransactionUID
    assert _uids(info.ReferencedSOPSequence) == {uid for _c, uid in refs}
    assert "FailedSOPSequence" not in info


def test_missing_damaged_and_mismatched_instances_fail_with_their_reasons(
    node: Node, receiver: Receiver
) -> None:
    good, damaged, wrong_class = _stored(node, 3)
    row = node.archive.instances(sop_uid=damaged[1])[0]
    Path(node.archive.local_path(row)).write_bytes(b"truncated")  # a blob cut short
    missing = (CTImageStorage, generate_uid())
    refs = [good, damaged, (MRImageStorage, wrong_class[1]), missing]
    request = _request(refs)
    assert _ask(node, receiver, request) == 0x0000
    where, event_type, info = receiver.result(request.TransactionUID)
    assert (where, event_type) == ("same", 2)
    assert _uids(info.ReferencedSOPSequence) == {good[1]}
    reasons = {str(i.ReferencedSOPInstanceUID): i.FailureReason for i in info.FailedSOPSequence}
    assert reasons == {damaged[1]: 0x0110, wrong_class[1]: 0x0119, missing[1]: 0x0112}


def test_result_goes_on_a_new_association_when_the_requestor_has_released(
    node: Node, receiver: Receiver
) -> None:
    refs = _stored(node, 2)
    request = _request(refs)
    requestor = Requestor(
        Peer(node.settings.aet, "127.0.0.1", node.dicom_port),
        RECEIVER,
        [(StorageCommitmentPushModel, ["1.2.840.10008.1.2"])],
    ).open()
    try:
        assert requestor.sock is not None
        command = msg.encode_command(
            {
                msg.REQUESTED_SOP_CLASS: StorageCommitmentPushModel,
                msg.COMMAND_FIELD: msg.N_ACTION_RQ,
                msg.MESSAGE_ID: 1,
                msg.DATASET_TYPE: msg.HAS_DATASET,
                msg.REQUESTED_SOP_INSTANCE: WELL_KNOWN,
                msg.ACTION_TYPE_ID: 1,
            }
        )
        dataset = msg.encode_identifier(request, "1.2.840.10008.1.2")
        parts: list[bytes | memoryview] = [
            *pdata.fragment(1, command, True, requestor.max_pdu),
            *pdata.fragment(1, dataset, False, requestor.max_pdu),
            pdu.RELEASE_RQ,  # released at once: the result cannot come on this association
        ]
        transport.send_all(requestor.sock, parts)
        kinds = []
        while not kinds or kinds[-1] != pdu.A_RELEASE_RP:
            kind, _body = transport.read_pdu(requestor.sock)
            kinds.append(kind)
        # N-ACTION-RSP, (an N-EVENT-REPORT-RQ, if the release was not yet read: it stays
        # unanswered, so the result goes on a new association all the same), released
        assert kinds[0] == pdu.P_DATA_TF and kinds[-1] == pdu.A_RELEASE_RP
        assert len(kinds) in (2, 3)
    finally:
        requestor.close()
    where, event_type, info = receiver.result(request.TransactionUID)
    assert (where, event_type) == ("new", 1)
    assert info.TransactionUID == request.TransactionUID
    assert _uids(info.ReferencedSOPSequence) == {uid for _c, uid in refs}


@pytest.mark.parametrize(
    ("request_", "instance", "status"),
    [
        pytest.param(_without_transaction(), WELL_KNOWN, 0x0115, id="no-transaction-uid"),
        pytest.param(_request([]), WELL_KNOWN, 0x0115, id="no-references"),
        pytest.param(_request([(CTImageStorage, "1.2.3")]), "1.2.3.4", 0x0117, id="not-well-known"),
    ],
)
def test_bad_requests_get_the_standards_status_and_no_report(
    node: Node, receiver: Receiver, request_: Dataset, instance: str, status: int
) -> None:
    assert _ask(node, receiver, request_, instance) == status
    good = _request(_stored(node, 1))  # its result comes after any result of the bad one
    assert _ask(node, receiver, good) == 0x0000
    assert not receiver.seen(str(request_.get("TransactionUID", "none")))


def test_unknown_action_type_is_refused_with_no_such_action(node: Node) -> None:
    ae = AE(ae_title=RECEIVER)
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.settings.aet)
    try:
        status, _ = assoc.send_n_action(_request([]), 7, StorageCommitmentPushModel, WELL_KNOWN)
        assert status.Status == 0x0123
    finally:
        assoc.release()


def test_a_requestor_that_releases_at_once_still_gets_its_result(
    node: Node, receiver: Receiver
) -> None:
    """pynetdicom releases right after the N-ACTION response: the report may reach it on
    that association before the release, or else on a new one; it arrives either way."""
    refs = _stored(node, 1)
    request = _request(refs)
    ae = AE(ae_title=RECEIVER)
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate(
        "127.0.0.1",
        node.dicom_port,
        ae_title=node.settings.aet,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, receiver.on_report("same"))],
    )
    status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, WELL_KNOWN)
    assoc.release()
    assert status.Status == 0x0000
    where, event_type, info = receiver.result(request.TransactionUID)
    assert where in ("same", "new")
    assert (event_type, info.TransactionUID) == (1, request.TransactionUID)
