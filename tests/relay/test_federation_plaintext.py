"""The cloud sees ciphertext only (issue 11, docs/relay.md "Threat model"): after
C-FIND, C-MOVE and C-GET across sites, no patient name, patient ID, study, series or
SOP Instance UID, nor a run of pixel bytes of the study, appears in any object of the
bucket (read while the transfers run: finished transfers delete theirs), in any
message of the JetStream stream RELAY_TRANSFERS (read raw), or in any message core
NATS carried meanwhile (a subscriber on `>`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from tests.relay.federation_support import dcmtk, digests, move_args, running, study_uid
from tests.relay.router_support import spying

from isthmus.testing.federation import Federation
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.seaweedfs import TemporarySeaweedFS

pytestmark = pytest.mark.dcmtk
STUDY = StudySpec(
    patient_name="PLAINTEXT^PENELOPE",
    patient_id="PLAIN0001",
    accession="ACCP0001",
    series_count=2,
    instances_per_series=10,
    rows=256,
    columns=256,
)


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: TemporarySeaweedFS
) -> Iterator[Federation]:
    folder = tmp_path_factory.mktemp("plaintext")
    with running(Federation(folder, seaweedfs, names=("A", "B"))) as federation:
        federation.files_b = write_study(STUDY, folder / "study-b")  # type: ignore[attr-defined]
        federation.sites["B"].pacs.load(federation.files_b)  # type: ignore[attr-defined]
        yield federation


def secrets_of(files: list[Path]) -> dict[str, bytes]:
    """What must never be seen in clear: identifiers, UIDs, and 64-byte runs of pixels
    (from the noisy disc in the middle of each image, not the flat background)."""
    found = {"patient name": STUDY.patient_name.encode(), "patient ID": STUDY.patient_id.encode()}
    found["accession"] = STUDY.accession.encode()
    for path in files:
        ds = pydicom.dcmread(path)
        found[f"study {ds.StudyInstanceUID}"] = str(ds.StudyInstanceUID).encode()
        found[f"series {ds.SeriesInstanceUID}"] = str(ds.SeriesInstanceUID).encode()
        found[f"SOP {ds.SOPInstanceUID}"] = str(ds.SOPInstanceUID).encode()
        pixels = bytes(ds.PixelData)
        middle = len(pixels) // 2 + 2 * ds.Columns // 2 - 32
        found[f"pixels of {ds.SOPInstanceUID}"] = pixels[middle : middle + 64]
    return found


class BucketWatch:
    """Reads every object of the bridge's prefix, over and over, until stopped."""

    def __init__(self, federation: Federation) -> None:
        self.federation = federation
        self.seen: dict[str, bytes] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(self.federation.bucket())
            self._stop.wait(0.02)

    def __enter__(self) -> BucketWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.seen.update(self.federation.bucket())


def leaks(secrets: dict[str, bytes], where: str, data: bytes) -> list[str]:
    return [f"{name} in {where}" for name, secret in secrets.items() if secret in data]


def test_no_identifier_uid_or_pixels_in_the_bucket_the_stream_or_on_nats(
    federation: Federation, tmp_path: Path
) -> None:
    a, files = federation.sites["A"], federation.files_b  # type: ignore[attr-defined]
    study = study_uid(files)
    secrets = secrets_of(files)
    source = b"".join(p.read_bytes() for p in files)
    assert all(secret in source for secret in secrets.values())  # what is looked for is real
    before = set(a.store.received())
    with spying(federation.nats) as spy, BucketWatch(federation) as bucket:
        find = ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", f"PatientID={STUDY.patient_id}"]
        find += ["-k", "StudyInstanceUID", "-k", "PatientName"]
        assert dcmtk(a, "findscu", "PACSB", *find).returncode == 0
        moved = dcmtk(a, "movescu", "PACSB", *move_args("STOREA", study))
        assert moved.returncode == 0, moved.stdout + moved.stderr
        get = ["-S", "-od", str(tmp_path), "-k", "QueryRetrieveLevel=STUDY"]
        got = dcmtk(a, "getscu", "PACSB", *get, "-k", f"StudyInstanceUID={study}")
        assert got.returncode == 0, got.stdout + got.stderr
    # The transfers happened, in full, and the watchers saw their traffic.
    assert digests([p for p in a.store.received() if p not in before]) == digests(files)
    assert digests([p for p in tmp_path.iterdir() if p.is_file()]) == digests(files)
    stream = federation.stream()
    assert len(stream) >= len(files) + 1  # every announcement and the manifest notice
    assert any("/transfers/" in path for path in bucket.seen), "no transfer object seen"
    assert len(spy.seen) > len(files)
    found: list[str] = []
    for path, data in bucket.seen.items():
        found += leaks(secrets, f"object {path}", data)
    for subject, data in stream:
        found += leaks(secrets, f"stream message on {subject}", data)
    for subject, data in spy.seen:
        found += leaks(secrets, f"NATS message on {subject}", subject.encode() + data)
    assert not found, found[:20]
