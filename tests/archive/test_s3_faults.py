"""The S3 blob store when S3 fails: the server killed in the middle of an ingest and
restarted, or frozen (stores fail with out-of-resources within the retry and request
time bounds, retrieves fail their sub-operations, the index holds nothing half-written,
ingest resumes, check() is clean), through both doors.

Objects deleted behind the archive's back are covered by the suites that run on S3:
tests/web/test_wado.py (WADO-RS), tests/dimse/test_retrieve.py (C-MOVE, C-GET) and
tests/archive/test_archive.py (check())."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association

from isthmus.config import Peer, Settings
from isthmus.dimse import scu
from isthmus.server import Node
from isthmus.testing.generate import StudySpec, study
from isthmus.testing.net import free_port
from isthmus.testing.seaweedfs import TemporarySeaweedFS

OUT_OF_RESOURCES = 0xA700


@pytest.fixture(scope="module")
def own_s3() -> Iterator[TemporarySeaweedFS]:
    """An S3 server of this module's own, which its tests stop and start."""
    server = TemporarySeaweedFS().start()
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in server.env.items():
                if name != "AWS_ENDPOINT_URL":  # named in the blob URL instead
                    env.setenv(name, value)
            yield server
    finally:
        server.close()


@pytest.fixture
def s3_node(own_s3: TemporarySeaweedFS, tmp_path: Path) -> Iterator[Node]:
    if not own_s3.running:  # a failed test may have left it stopped
        own_s3.start()
    url = own_s3.url(endpoint=own_s3.endpoint, retry_timeout=2, timeout=2)
    settings = Settings(
        data=tmp_path / "data", dicom_port=free_port(), http_port=free_port(), blob_url=url
    )
    with Node(settings) as node:
        yield node


def _instances(count: int) -> list[Dataset]:
    return list(study(StudySpec(instances_per_series=count)))


def _associate(node: Node, datasets: list[Dataset]) -> Association:
    ae = AE(ae_title="FAULTS")
    ae.dimse_timeout = ae.acse_timeout = 60
    for ds in datasets[:1]:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.settings.aet)
    assert assoc.is_established
    return assoc


def _store(assoc: Association, ds: Dataset) -> int:
    status = assoc.send_c_store(ds)
    return int(status.Status)


def _study_identifier(ds: Dataset) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ds.StudyInstanceUID
    return identifier


def _part10(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _stow(node: Node, ds: Dataset) -> httpx.Response:
    boundary = "s3fault"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + _part10(ds)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return httpx.post(
        f"http://127.0.0.1:{node.http_port}/dicom-web/studies",
        content=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
        },
        timeout=60,
    )


def test_s3_killed_mid_ingest_fails_stores_cleanly_and_ingest_resumes_after_restart(
    own_s3: TemporarySeaweedFS, s3_node: Node
) -> None:
    before, during, after = _instances(3), _instances(2), _instances(2)
    assoc = _associate(s3_node, before)
    try:
        assert [_store(assoc, ds) for ds in before] == [0, 0, 0]
        own_s3.stop()  # the S3 server dies under the open association
        assert [_store(assoc, ds) for ds in during] == [OUT_OF_RESOURCES] * 2
        # C-GET of the study: every sub-operation fails (PS3.4 C.4.3.3: A702 when none
        # completed), each at once now that S3 is presumed down.
        got = scu.get(
            Peer(s3_node.settings.aet, "127.0.0.1", s3_node.dicom_port),
            _study_identifier(before[0]),
            lambda event: 0,
            [str(before[0].SOPClassUID)],
        )
        assert (got.completed, got.failed) == (0, 3) and got.status in (0xA702, 0xB000)
        own_s3.start()
        assert [_store(assoc, ds) for ds in after] == [0, 0]
    finally:
        assoc.release()
    archive = s3_node.archive
    stored = {row.sop_instance_uid for row in archive.instances()}
    assert stored == {str(ds.SOPInstanceUID) for ds in before + after}  # nothing half-written
    for row in archive.instances():
        assert pydicom.dcmread(BytesIO(archive.read_instance(row))).SOPInstanceUID
    assert archive.check() == {"partial": 0, "orphans": 0, "missing": 0, "instances": 5}


def test_stow_and_wado_while_s3_is_down_fail_clearly_then_work_again(
    own_s3: TemporarySeaweedFS, s3_node: Node
) -> None:
    [kept] = _instances(1)
    assert _stow(s3_node, kept).status_code == 200
    [lost] = _instances(1)
    own_s3.stop()
    try:
        refused = _stow(s3_node, lost)
        assert refused.status_code == 409
        [failed] = pydicom.Dataset.from_json(refused.json()).FailedSOPSequence
        assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (
            lost.SOPInstanceUID,
            OUT_OF_RESOURCES,
        )
        path = (
            f"/studies/{kept.StudyInstanceUID}/series/{kept.SeriesInstanceUID}"
            f"/instances/{kept.SOPInstanceUID}"
        )
        with httpx.Client(base_url=f"http://127.0.0.1:{s3_node.http_port}/dicom-web") as client:
            down = client.get(path, headers={"Accept": "application/dicom"}, timeout=60)
            assert down.status_code == 503 and "blob store" in down.text
            # A multipart response has begun when its first part is read: it is cut short.
            with pytest.raises(httpx.RemoteProtocolError):
                client.get(
                    f"/studies/{kept.StudyInstanceUID}",
                    headers={"Accept": 'multipart/related; type="application/dicom"'},
                    timeout=60,
                )
    finally:
        own_s3.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{s3_node.http_port}/dicom-web") as client:
        again = client.get(path, headers={"Accept": "application/dicom"}, timeout=60)
    assert again.status_code == 200
    assert pydicom.dcmread(BytesIO(again.content)).SOPInstanceUID == kept.SOPInstanceUID
    assert not s3_node.archive.instances(sop_uid=str(lost.SOPInstanceUID))
    assert _stow(s3_node, lost).status_code == 200
    assert s3_node.archive.check()["missing"] == 0


def test_a_frozen_s3_server_times_stores_and_reads_out_instead_of_hanging(
    own_s3: TemporarySeaweedFS, s3_node: Node
) -> None:
    first, frozen, later = _instances(1), _instances(1), _instances(1)
    assoc = _associate(s3_node, first)
    try:
        assert _store(assoc, first[0]) == 0
        own_s3.pause()  # accepts connections, answers nothing
        try:
            assert _store(assoc, frozen[0]) == OUT_OF_RESOURCES
            with httpx.Client(base_url=f"http://127.0.0.1:{s3_node.http_port}") as client:
                ds = first[0]
                down = client.get(
                    f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                    f"/instances/{ds.SOPInstanceUID}",
                    headers={"Accept": "application/dicom"},
                    timeout=60,
                )
            assert down.status_code == 503
        finally:
            own_s3.resume()
        assert _store(assoc, later[0]) == 0
    finally:
        assoc.release()
    archive = s3_node.archive
    assert {r.sop_instance_uid for r in archive.instances()} == {
        str(first[0].SOPInstanceUID),
        str(later[0].SOPInstanceUID),
    }
    # The frozen PUT may still complete once the server runs again: an orphan check() removes.
    report = archive.check()
    assert (report["missing"], report["instances"]) == (0, 2) and report["orphans"] <= 1
    assert archive.check() == {"partial": 0, "orphans": 0, "missing": 0, "instances": 2}
