"""Three sites joined by the relay, driven by unmodified DCMTK devices (issue 11).

A workstation at site A calls the AE titles of site B's and C's devices on site A's
own Isthmus DICOM port; everything crosses NATS and S3 encrypted.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.relay.federation_support import dcmtk, move_args

from isthmus.dicom.part10 import dataset_offset
from isthmus.testing.federation import Federation
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.seaweedfs import TemporarySeaweedFS

pytestmark = pytest.mark.dcmtk
PATIENT_B = StudySpec(
    patient_name="FEDERATION^BETTY",
    patient_id="FEDB0001",
    accession="ACCB0001",
    series_count=2,
    instances_per_series=4,
)


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: TemporarySeaweedFS
) -> Iterator[Federation]:
    folder = tmp_path_factory.mktemp("federation")
    running = Federation(folder, seaweedfs)
    try:
        running.start()
        files = write_study(PATIENT_B, folder / "study-b")
        running.sites["B"].pacs.load(files)
        running.files_b = files  # type: ignore[attr-defined]
        yield running
    except BaseException:
        for site in running.sites.values():
            print(f"--- site {site.name}\n{site.tail()}")
        raise
    finally:
        running.close()


def dataset_digest(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha256(data[dataset_offset(data) :]).hexdigest()


def test_c_echo_across_sites_is_answered_by_the_far_device(federation: Federation) -> None:
    done = dcmtk(federation.sites["A"], "echoscu", "PACSB")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("level", "keys", "count"),
    [
        ("PATIENT", ["PatientID=FEDB0001", "PatientName"], 1),
        ("STUDY", ["PatientID=FEDB0001", "StudyInstanceUID", "AccessionNumber"], 1),
        ("SERIES", ["StudyInstanceUID={study}", "SeriesInstanceUID", "Modality"], 2),
        ("IMAGE", ["StudyInstanceUID={study}", "SeriesInstanceUID={series}", "SOPInstanceUID"], 4),
    ],
)
def test_c_find_across_sites_at_every_level(
    federation: Federation, level: str, keys: list[str], count: int, tmp_path: Path
) -> None:
    import pydicom

    first = pydicom.dcmread(federation.files_b[0])  # type: ignore[attr-defined]
    model = "-P" if level == "PATIENT" else "-S"
    args = [model, "-k", f"QueryRetrieveLevel={level}", "-X", "-od", str(tmp_path)]
    for key in keys:
        args += ["-k", key.format(study=first.StudyInstanceUID, series=first.SeriesInstanceUID)]
    done = dcmtk(federation.sites["A"], "findscu", "PACSB", *args)
    assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.glob("rsp*.dcm"))) == count


def test_c_move_to_the_callers_site_delivers_byte_identical_datasets(
    federation: Federation,
) -> None:
    a = federation.sites["A"]
    before = set(a.store.received())
    study = _study_uid(federation)
    done = dcmtk(a, "movescu", "PACSB", *move_args("STOREA", study))
    assert done.returncode == 0, done.stderr
    arrived = [p for p in a.store.received() if p not in before]
    assert sorted(map(dataset_digest, arrived)) == sorted(map(dataset_digest, federation.files_b))  # type: ignore[attr-defined]


def test_c_move_to_a_third_site_delivers_byte_identical_datasets(federation: Federation) -> None:
    c = federation.sites["C"]
    before = set(c.store.received())
    study = _study_uid(federation)
    done = dcmtk(federation.sites["A"], "movescu", "PACSB", *move_args("STOREC", study))
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    while (
        len(set(c.store.received()) - before) < len(federation.files_b)
        and time.monotonic() < deadline
    ):  # type: ignore[attr-defined]
        time.sleep(0.2)
    arrived = [p for p in c.store.received() if p not in before]
    assert sorted(map(dataset_digest, arrived)) == sorted(map(dataset_digest, federation.files_b))  # type: ignore[attr-defined]


def test_c_get_across_sites_delivers_on_the_callers_association(
    federation: Federation, tmp_path: Path
) -> None:
    study = _study_uid(federation)
    done = dcmtk(
        federation.sites["A"], "getscu", "PACSB", "-S", "-od", str(tmp_path),
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    arrived = [p for p in tmp_path.iterdir() if p.is_file()]
    assert sorted(map(dataset_digest, arrived)) == sorted(map(dataset_digest, federation.files_b))  # type: ignore[attr-defined]


def test_c_store_across_sites_lands_in_the_far_store(
    federation: Federation, tmp_path: Path
) -> None:
    files = write_study(
        StudySpec(patient_name="STORE^SAM", patient_id="FEDS1", instances_per_series=3), tmp_path
    )
    b = federation.sites["B"]
    before = set(b.store.received())
    a = federation.sites["A"]
    done = a.dcmtk("storescu", "STOREB", files=files)
    assert done.returncode == 0, done.stderr
    arrived = [p for p in b.store.received() if p not in before]
    assert sorted(map(dataset_digest, arrived)) == sorted(map(dataset_digest, files))


def test_an_unknown_ae_title_is_refused_at_the_callers_site(federation: Federation) -> None:
    done = dcmtk(federation.sites["A"], "echoscu", "NOSUCHAE")
    assert done.returncode != 0
    assert re.search(r"[Rr]eject", done.stdout + done.stderr)


def test_nothing_in_the_bucket_shows_patient_data(federation: Federation) -> None:
    """After the transfers above: every object in the bucket is ciphertext."""
    import obstore
    from obstore.store import S3Store

    s3 = federation.s3
    store = S3Store(
        "isthmus",
        endpoint=s3.endpoint,
        access_key_id="isthmus-test",
        secret_access_key="isthmus-test-secret-key",
        region="us-east-1",
        client_options={"allow_http": True},
    )
    secrets = [
        PATIENT_B.patient_name.encode(),
        PATIENT_B.patient_id.encode(),
        _study_uid(federation).encode(),
    ]
    for batch in obstore.list(store, prefix="relay"):
        for meta in batch:
            data = bytes(obstore.get(store, meta["path"]).bytes())
            assert not any(s in data for s in secrets), meta["path"]


def _study_uid(federation: Federation) -> str:
    import pydicom

    return str(pydicom.dcmread(federation.files_b[0], stop_before_pixels=True).StudyInstanceUID)  # type: ignore[attr-defined]


def test_a_sites_own_archive_exported_by_its_title_stores_and_answers_across_sites(
    federation: Federation, tmp_path: Path
) -> None:
    files = write_study(
        StudySpec(patient_name="ARCHIVE^ANN", patient_id="FEDARCH1", instances_per_series=2),
        tmp_path / "in",
    )
    a = federation.sites["A"]
    stored = a.dcmtk("storescu", "ISTHMUSB", files=files)
    assert stored.returncode == 0, stored.stderr
    found = dcmtk(
        a, "findscu", "ISTHMUSB", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=FEDARCH1",
        "-k", "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances", "-X", "-od", str(tmp_path),
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    (answer,) = tmp_path.glob("rsp*.dcm")
    import pydicom

    study = pydicom.dcmread(answer)
    assert study.StudyInstanceUID == _uid(files[0])
    assert int(study.NumberOfStudyRelatedInstances) == 2


def _uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
