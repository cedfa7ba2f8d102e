"""The relay over a wide-area link (issue 11): every site reaches the cloud services
through a latency proxy, 12.5 ms each way, so two sites are 25 ms apart each way (a
50 ms round trip).  Every service still works and delivers byte-identical data sets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.relay.federation_support import dcmtk, digests, move_args, running, study_uid

from isthmus.testing.federation import Federation
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.seaweedfs import TemporarySeaweedFS

pytestmark = pytest.mark.dcmtk
WAN = 0.0125  # seconds each way between a site and the cloud: 25 ms site to site
STUDY = StudySpec(
    patient_name="WAN^WENDY",
    patient_id="WAN0001",
    accession="ACCW0001",
    series_count=2,
    instances_per_series=3,
)


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: TemporarySeaweedFS
) -> Iterator[Federation]:
    folder = tmp_path_factory.mktemp("wan")
    with running(Federation(folder, seaweedfs, names=("A", "B"), wan=WAN)) as federation:
        federation.files_b = write_study(STUDY, folder / "study-b")  # type: ignore[attr-defined]
        federation.sites["B"].pacs.load(federation.files_b)  # type: ignore[attr-defined]
        yield federation


def files_b(federation: Federation) -> list[Path]:
    return federation.files_b  # type: ignore[attr-defined, no-any-return]


def test_the_sites_reach_the_cloud_only_through_the_wan(federation: Federation) -> None:
    enrolment = (federation.sites["A"].folder / "data" / "relay" / "enrolled.json").read_text()
    assert f":{federation.proxies['nats'].port}" in enrolment
    assert f":{federation.proxies['bridge'].port}" in enrolment


def test_c_echo_over_the_wan_is_answered_by_the_far_device(federation: Federation) -> None:
    done = dcmtk(federation.sites["A"], "echoscu", "PACSB")
    assert done.returncode == 0, done.stdout + done.stderr


def test_c_find_study_level_over_the_wan(federation: Federation, tmp_path: Path) -> None:
    args = ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", f"PatientID={STUDY.patient_id}"]
    args += ["-k", "StudyInstanceUID", "-k", "AccessionNumber", "-X", "-od", str(tmp_path)]
    done = dcmtk(federation.sites["A"], "findscu", "PACSB", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    import pydicom

    found = [pydicom.dcmread(p) for p in tmp_path.glob("rsp*.dcm")]
    assert [str(f.StudyInstanceUID) for f in found] == [study_uid(files_b(federation))]
    assert found[0].AccessionNumber == STUDY.accession


def test_c_move_to_the_callers_site_over_the_wan_is_byte_identical(
    federation: Federation,
) -> None:
    a = federation.sites["A"]
    before = set(a.store.received())
    done = dcmtk(a, "movescu", "PACSB", *move_args("STOREA", study_uid(files_b(federation))))
    assert done.returncode == 0, done.stdout + done.stderr
    arrived = [p for p in a.store.received() if p not in before]
    assert digests(arrived) == digests(files_b(federation))


def test_c_get_over_the_wan_is_byte_identical(federation: Federation, tmp_path: Path) -> None:
    args = ["-S", "-od", str(tmp_path), "-k", "QueryRetrieveLevel=STUDY"]
    args += ["-k", f"StudyInstanceUID={study_uid(files_b(federation))}"]
    done = dcmtk(federation.sites["A"], "getscu", "PACSB", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    arrived = [p for p in tmp_path.iterdir() if p.is_file()]
    assert digests(arrived) == digests(files_b(federation))
