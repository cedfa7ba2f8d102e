"""C-MOVE across sites as a transfer (relay/moves.py), in a federation of real processes:
a C-CANCEL is honoured (PS3.4 C.4.2.3.1) and C-MOVEs follow one another to a store that
serves one association at a time (DCMTK storescp)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # made at run time
    StudyRootQueryRetrieveInformationModelMove,
)
from tests.relay.federation_support import running

from isthmus.dicom.status import CANCEL, PENDING, SUCCESS
from isthmus.testing.federation import Federation
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.latency import LatencyProxy
from isthmus.testing.seaweedfs import TemporarySeaweedFS

pytestmark = pytest.mark.dcmtk
DEVICE_DELAY = 0.1  # seconds each way between B's router and B's PACS
STUDY = StudySpec(
    patient_name="CANCEL^CARL",
    patient_id="CANC0001",
    accession="ACCC0001",
    instances_per_series=40,
    rows=256,
    columns=256,
)


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: TemporarySeaweedFS
) -> Iterator[Federation]:
    folder = tmp_path_factory.mktemp("moves")
    federation = Federation(folder, seaweedfs, ("A", "B"))
    b = federation.sites["B"]
    # B's router reaches its PACS DEVICE_DELAY away each way: every C-STORE sub-operation
    # then waits a round trip, so that a C-CANCEL after the first pending response
    # finds the transfer still running, however fast the rest of the relay is.
    proxy = LatencyProxy(("127.0.0.1", b.pacs.port), DEVICE_DELAY).start()
    b.pacs_port_for_node = proxy.port
    try:
        with running(federation):
            b.pacs.load(write_study(STUDY, folder / "study"))
            yield federation
    finally:
        proxy.close()


def _study_uid(federation: Federation) -> str:
    path = next(Path(federation.folder / "study").iterdir())
    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def move(federation: Federation, *, cancel_after_pending: bool) -> list[Dataset]:
    """C-MOVE the study from PACSB to STOREA through site A's port with pynetdicom;
    with `cancel_after_pending`, a C-CANCEL-RQ follows the first pending response.
    Every response's status dataset, in order."""
    ae = AE(ae_title="WSA")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    assoc = ae.associate("127.0.0.1", federation.sites["A"].dicom_port, ae_title="PACSB")
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = _study_uid(federation)
    statuses: list[Dataset] = []
    try:
        responses = assoc.send_c_move(
            identifier, "STOREA", StudyRootQueryRetrieveInformationModelMove, msg_id=7
        )
        for status, _identifier in responses:
            assert status, "the association ended without a final response"
            statuses.append(status)
            if cancel_after_pending and status.Status == PENDING and len(statuses) == 1:
                assoc.send_c_cancel(7, assoc.accepted_contexts[0].context_id)
    finally:
        assoc.release()
    return statuses


def test_c_cancel_ends_the_transfer_with_status_cancel_and_honest_counts(
    federation: Federation,
) -> None:
    store = federation.sites["A"].store
    _empty(store.folder)
    statuses = move(federation, cancel_after_pending=True)
    final = statuses[-1]
    arrived = store.received()
    assert final.Status == CANCEL
    assert final.NumberOfCompletedSuboperations < STUDY.instances_per_series
    assert len(arrived) == final.NumberOfCompletedSuboperations + (
        final.get("NumberOfWarningSuboperations", 0) or 0
    )


def test_c_moves_follow_one_another_to_a_store_of_one_association_at_a_time(
    federation: Federation,
) -> None:
    store = federation.sites["A"].store
    for _ in range(2):
        _empty(store.folder)
        final = move(federation, cancel_after_pending=False)[-1]
        assert final.Status == SUCCESS
        assert len(store.received()) == STUDY.instances_per_series


def _empty(folder: Path) -> None:
    """storescp names its files by SOP Instance UID: a second C-MOVE would overwrite."""
    for path in folder.iterdir():
        if path.is_file():
            path.unlink()
