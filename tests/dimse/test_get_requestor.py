"""The lean C-GET requestor (dimse/get_requestor.py) against DCMTK's dcmqrscp."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from isthmus.config import Peer
from isthmus.dicom.part10 import dataset_offset
from isthmus.dimse import scu
from isthmus.dimse.get_requestor import GetRequestor, open_get
from isthmus.dimse.requestor import AssociationFailed
from isthmus.testing.dcmtk import QRSCP
from isthmus.testing.generate import StudySpec, write_study

from .support import CT_IMAGE_STORAGE, LONG_FAILED_LIST, failing_retrieve_scp

pytestmark = pytest.mark.dcmtk
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
SPEC = StudySpec(patient_id="GET001", series_count=2, instances_per_series=3)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[QRSCP, list[Path]]]:
    folder = tmp_path_factory.mktemp("get")
    files = write_study(SPEC, folder / "study")
    qr = QRSCP(folder / "pacs", ["PACS"], {}).start()
    try:
        qr.load(files)
        yield qr, files
    finally:
        qr.stop()


def study_identifier(files: list[Path]) -> Dataset:
    import pydicom

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    return ds


def datasets(files: list[Path]) -> dict[str, bytes]:
    import pydicom

    out = {}
    for path in files:
        data = path.read_bytes()
        out[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = data[
            dataset_offset(data) :
        ]
    return out


def open_pacs(qr: QRSCP) -> GetRequestor:
    return open_get(
        Peer("PACS", "127.0.0.1", qr.port), STUDY_GET, scu.common_storage_classes(), "GETTER"
    )


def test_a_study_c_get_hands_over_every_instance_byte_for_byte_with_success(
    pacs: tuple[QRSCP, list[Path]],
) -> None:
    qr, files = pacs
    got: dict[str, bytes] = {}
    progress: list[tuple[int, int, int, int]] = []

    def on_store(sop_class: str, sop_instance: str, syntax: str, data: memoryview) -> int:
        got[sop_instance] = bytes(data)
        return 0

    requestor = open_pacs(qr)
    try:
        report = requestor.get(study_identifier(files), on_store, lambda *c: progress.append(c))
        again = requestor.get(study_identifier(files), on_store)  # the association goes on
    finally:
        requestor.release()
    assert (report.status, report.completed, report.failed) == (0, len(files), 0)
    assert again.completed == len(files)
    assert got == datasets(files)
    assert progress and all(sum(c) == len(files) for c in progress)


def test_instances_the_handler_refuses_are_counted_failed_and_listed(
    pacs: tuple[QRSCP, list[Path]],
) -> None:
    qr, files = pacs
    refused: list[str] = []

    def on_store(sop_class: str, sop_instance: str, syntax: str, data: memoryview) -> int:
        if len(refused) < 2:
            refused.append(sop_instance)
            return 0xA700  # out of resources (PS3.4 B.2.3)
        return 0

    requestor = open_pacs(qr)
    try:
        report = requestor.get(study_identifier(files), on_store)
    finally:
        requestor.release()
    assert report.status != 0  # 0xB000: sub-operations complete, one or more failures
    assert (report.completed, report.failed) == (len(files) - 2, 2)
    assert sorted(report.failed_uids) == sorted(refused)


def test_a_failed_sop_instance_uid_list_over_64_kib_is_read_as_uids() -> None:
    """A list too long for UI in Explicit VR comes as UN (PS3.5 6.2.2): its bytes are the
    UIDs, not a list of byte values."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = "1.2.3"
    with failing_retrieve_scp() as pacs:
        requestor = open_get(pacs, STUDY_GET, [CT_IMAGE_STORAGE], "GETTER")
        try:
            report = requestor.get(identifier, lambda *args: 0)
        finally:
            requestor.release()
    assert (report.status, report.failed_uids) == (0xA702, LONG_FAILED_LIST)


def test_cancel_aborts_the_association_mid_retrieve(pacs: tuple[QRSCP, list[Path]]) -> None:
    qr, files = pacs
    cancel = threading.Event()

    def on_store(sop_class: str, sop_instance: str, syntax: str, data: memoryview) -> int:
        cancel.set()
        cancel.wait()
        threading.Event().wait(0.3)  # the abort lands while the device waits for us
        return 0

    requestor = open_pacs(qr)
    with pytest.raises(AssociationFailed):
        requestor.get(study_identifier(files), on_store, cancel=cancel)
    assert requestor.sock is None


def test_a_device_that_refuses_the_calling_ae_fails_the_open(tmp_path: Path) -> None:
    qr = QRSCP(tmp_path / "pacs", ["OPEN"], {}, strict=("STRICT",)).start()
    try:
        with pytest.raises(AssociationFailed):
            open_get(
                Peer("NOSUCH", "127.0.0.1", qr.port), STUDY_GET, scu.common_storage_classes(), "X"
            )
    finally:
        qr.stop()
