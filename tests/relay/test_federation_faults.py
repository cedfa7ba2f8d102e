"""Faults across a federation (issue 11, "Tests that must exist"): refusals at the
calling site; the receiving site killed mid-transfer; NATS or the object store
stopped mid-transfer.  A revoked site has its own module (test_federation_revoke.py):
a revocation is for good.

Every site runs with `relay_timeout = 5` (seconds), so that a silent far side is
noticed within a few seconds; site B narrows two of its exports
(`relay_export_rules`) and knows a device it does not export (HIDDENB).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.relay.federation_support import (
    dcmtk,
    digests,
    failed,
    move_args,
    movescu,
    running,
    sop_instances,
    study_uid,
    wait_until,
)

from isthmus.testing.federation import Federation
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.seaweedfs import TemporarySeaweedFS

pytestmark = pytest.mark.dcmtk
TIMEOUT = 5  # relay_timeout of every site
LARGE = StudySpec(
    patient_name="FAULT^FRANK",
    patient_id="FAULT0001",
    accession="ACCF0001",
    series_count=2,
    instances_per_series=20,
    rows=256,
    columns=256,
)
SMALL = StudySpec(patient_name="AFTER^ALICE", patient_id="AFTER0001", instances_per_series=3)


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: TemporarySeaweedFS
) -> Iterator[Federation]:
    folder = tmp_path_factory.mktemp("faults")
    federation = Federation(folder, seaweedfs, names=("A", "B", "C"))
    for site in federation.sites.values():
        site.config = f"relay_timeout = {TIMEOUT}\n"
    a, b = federation.sites["A"], federation.sites["B"]
    a.store.extra = ["--unique-filenames"]  # a second copy of an instance is a second file
    b.config += (
        f'peers = ["HIDDENB@127.0.0.1:{b.pacs.port}"]\n'
        '[relay_export_rules.STOREB]\nsites = ["C"]\n'
        '[relay_export_rules.ISTHMUSB]\nservices = ["echo"]\n'
    )
    with running(federation):
        federation.large = write_study(LARGE, folder / "large")  # type: ignore[attr-defined]
        federation.small = write_study(SMALL, folder / "small")  # type: ignore[attr-defined]
        b.pacs.load(federation.large + federation.small)  # type: ignore[attr-defined]
        yield federation


def large(federation: Federation) -> list[Path]:
    return federation.large  # type: ignore[attr-defined, no-any-return]


def rejected(done: subprocess.CompletedProcess[str]) -> bool:
    return done.returncode != 0 and bool(re.search(r"[Rr]eject", done.stdout + done.stderr))


@pytest.mark.parametrize(
    ("tool", "called", "args"),
    [
        ("echoscu", "NOSUCHAE", []),  # unknown anywhere in the federation
        ("echoscu", "HIDDENB", []),  # a device of site B that B does not export
        ("echoscu", "STOREB", []),  # exported to site C only
        ("findscu", "ISTHMUSB", ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID"]),
    ],
    ids=["unknown-ae", "not-exported", "site-not-allowed", "service-not-exported"],
)
def test_a_call_the_directory_does_not_allow_is_rejected_at_the_calling_site(
    federation: Federation, tool: str, called: str, args: list[str]
) -> None:
    done = dcmtk(federation.sites["A"], tool, called, *args, timeout=30)
    assert rejected(done), done.stdout + done.stderr


def test_the_narrowed_exports_still_serve_whom_and_what_they_allow(
    federation: Federation,
) -> None:
    to_c = dcmtk(federation.sites["C"], "echoscu", "STOREB", timeout=30)
    assert to_c.returncode == 0, to_c.stdout + to_c.stderr
    echo = dcmtk(federation.sites["A"], "echoscu", "ISTHMUSB", timeout=30)
    assert echo.returncode == 0, echo.stdout + echo.stderr


def test_the_receiving_site_killed_mid_transfer_resumes_and_duplicates_nothing(
    federation: Federation,
) -> None:
    a, files = federation.sites["A"], large(federation)
    before = set(a.store.received())

    def arrived() -> list[Path]:
        return [p for p in a.store.received() if p not in before]

    move = movescu(a, "PACSB", "STOREA", study_uid(files))
    try:
        wait_until(lambda: len(arrived()) >= 3, 60, "the first instances at STOREA")
        a.kill()  # SIGKILL: the receiver and the caller's router die together
        at_kill = len(arrived())
        move.communicate(timeout=60)  # its association died with the node: any status
    finally:
        move.kill()
    assert at_kill < len(files), "the transfer ended before the kill: nothing to resume"
    a.restart()
    wait_until(lambda: federation.consumer("A") == (0, 0), 180, "A handled the transfer")
    copies = sop_instances(arrived())
    assert set(copies) == set(sop_instances(files)), "not every instance arrived"
    # The batch the killed node had pulled is redelivered (up to 16 instances): what
    # it recorded as delivered is not sent again.  The one C-STORE the kill cut short
    # is in doubt (the store may have written it before its response came back) and is
    # sent again: at-least-once for that one, as no DICOM store can be asked whether
    # it kept an instance of an aborted association (docs/relay.md, "Rules").
    twice = [uid for uid, n in copies.items() if n > 1]
    assert len(twice) <= 1 and all(copies[uid] == 2 for uid in twice), copies
    unique = {sop: p for p in arrived() for sop in sop_instances([p])}
    assert digests(list(unique.values())) == digests(files)


def stop_mid_transfer(federation: Federation, stop: object) -> subprocess.CompletedProcess[str]:
    """A C-MOVE of the large study to STOREA, `stop()` called once instances arrive;
    the movescu's outcome (it must end by itself, bounded)."""
    a, files = federation.sites["A"], large(federation)
    before = set(a.store.received())
    move = movescu(a, "PACSB", "STOREA", study_uid(files))
    try:
        wait_until(lambda: len(set(a.store.received()) - before) >= 3, 60, "instances at STOREA")
        stop()  # type: ignore[operator]
        out, _ = move.communicate(timeout=12 * TIMEOUT)  # no hang: a bounded failure
    finally:
        move.kill()
    return subprocess.CompletedProcess(move.args, move.returncode, out, "")


def next_move_works(federation: Federation) -> None:
    """Once the service is back: a new C-MOVE delivers the small study in full."""
    a, small = federation.sites["A"], federation.small  # type: ignore[attr-defined]
    wait_until(lambda: a.relay_status()["connected"], 60, "A reconnected")
    before = set(a.store.received())
    done = dcmtk(a, "movescu", "PACSB", *move_args("STOREA", study_uid(small)), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # The interrupted transfer may deliver what it had made durable meanwhile: only the
    # small study's instances are this C-MOVE's.
    wanted = set(sop_instances(small))
    arrived = [p for p in a.store.received() if p not in before]
    assert digests([p for p in arrived if set(sop_instances([p])) <= wanted]) == digests(small)


def test_nats_stopped_mid_transfer_fails_the_move_and_the_next_one_works(
    federation: Federation,
) -> None:
    try:
        done = stop_mid_transfer(federation, federation.nats.stop)
    finally:
        federation.nats.start()
    assert failed(done), done.stdout
    for site in federation.sites.values():
        wait_until(lambda site=site: site.relay_status()["connected"], 60, "NATS reconnected")  # type: ignore[misc]
    next_move_works(federation)


def test_s3_stopped_mid_transfer_fails_the_move_and_the_next_one_works(
    federation: Federation, seaweedfs: TemporarySeaweedFS
) -> None:
    try:
        done = stop_mid_transfer(federation, seaweedfs.stop)
    finally:
        seaweedfs.start()  # shared by the whole session: up again whatever happened
    assert failed(done), done.stdout
    next_move_works(federation)
