"""The SOURCE site's router killed mid-transfer (issue 11: "resumable after either router
restarts"; the receiving side is test_federation_faults.py).

Site A's workstation C-MOVEs a study from site B's PACS to A's own store; B's router
C-GETs it from its PACS into the transfer.  B's router reaches its PACS through a
LatencyProxy (0.3 s each way), so that its C-GETs take long enough to be cut short:
then `isthmus serve` at B is SIGKILLed and started again.  On its start it takes up the
transfer it left SENDING (relay/resume.py): the same transfer, the instances it had
sent not sent again, so the destination receives every instance exactly once and
movescu - whose association with A's router never broke - gets its final response,
Success, with every sub-operation counted.  If B's PACS is gone when it restarts, the
transfer is aborted with the reason, and movescu gets a failure: nothing hangs.

Every site runs with `relay_timeout = 10`: the caller's router waits 4 x that for a
report, long enough for B to restart.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.relay.federation_support import (
    digests,
    failed,
    move_args,
    running,
    sop_instances,
    study_uid,
    wait_until,
)

from isthmus.testing.dcmtk import dcmtk_env
from isthmus.testing.federation import Federation, Site
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.latency import LatencyProxy
from isthmus.testing.seaweedfs import TemporarySeaweedFS

pytestmark = pytest.mark.dcmtk
TIMEOUT = 10  # relay_timeout of every site
DEVICE_DELAY = 0.3  # seconds each way between B's router and B's PACS
STUDY = StudySpec(
    patient_name="RESUME^ROSA",
    patient_id="RESUME0001",
    accession="ACCS0001",
    series_count=2,
    instances_per_series=20,
    rows=128,
    columns=128,
)


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: TemporarySeaweedFS
) -> Iterator[Federation]:
    folder = tmp_path_factory.mktemp("source-restart")
    federation = Federation(folder, seaweedfs, names=("A", "B"))
    for site in federation.sites.values():
        site.config = f"relay_timeout = {TIMEOUT}\n"
    a, b = federation.sites["A"], federation.sites["B"]
    a.store.extra = ["--unique-filenames"]  # a second copy of an instance is a second file
    proxy = LatencyProxy(("127.0.0.1", b.pacs.port), DEVICE_DELAY).start()
    b.pacs_port_for_node = proxy.port
    federation.device_proxy = proxy  # type: ignore[attr-defined]
    try:
        with running(federation):
            federation.study = write_study(STUDY, folder / "study")  # type: ignore[attr-defined]
            b.pacs.load(federation.study)  # type: ignore[attr-defined]
            yield federation
    finally:
        federation.device_proxy.close()  # type: ignore[attr-defined]


def files(federation: Federation) -> list[Path]:
    return federation.study  # type: ignore[attr-defined, no-any-return]


def start_move(a: Site, study: str) -> subprocess.Popen[str]:
    """movescu at A (debug output: the final response's counts), in the background."""
    return subprocess.Popen(
        a.dcmtk_command("movescu", "PACSB", "-d", *move_args("STOREA", study)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dcmtk_env(),
    )


def kill_mid_move(
    federation: Federation, between: object = None
) -> tuple[subprocess.CompletedProcess[str], list[Path], int]:
    """A's C-MOVE of the study to STOREA; B's router SIGKILLed once 3 instances
    arrived, `between()` called, B started again.  movescu's outcome (bounded), what
    arrived at STOREA, and how much had when B was killed."""
    a, b = federation.sites["A"], federation.sites["B"]
    before = set(a.store.received())

    def arrived() -> list[Path]:
        return [p for p in a.store.received() if p not in before]

    move = start_move(a, study_uid(files(federation)))
    try:
        wait_until(lambda: len(arrived()) >= 3, 60, "the first instances at STOREA")
        b.kill()
        at_kill = len(arrived())
        if between is not None:
            between()  # type: ignore[operator]
        b.restart()
        out, _ = move.communicate(timeout=12 * TIMEOUT)  # bounded either way
    finally:
        move.kill()
    done = subprocess.CompletedProcess(move.args, move.returncode, out, "")
    return done, arrived(), at_kill


def final_count(done: subprocess.CompletedProcess[str], what: str) -> int | None:
    """A count of the final C-MOVE-RSP: `what` "Completed", "Failed"… (movescu -d
    dumps its command set)."""
    final = done.stdout.split("Received Final Move Response")[-1]
    found = re.search(rf"{what} Suboperations\s*:\s*(\d+)", final)
    return int(found.group(1)) if found else None


def sent_by_b(federation: Federation) -> list[dict[str, object]]:
    return [
        t for t in federation.sites["B"].relay_status()["transfers"] if t["direction"] == "sending"
    ]


def test_the_source_site_killed_mid_transfer_resumes_it_and_the_move_succeeds(
    federation: Federation,
) -> None:
    b, study = federation.sites["B"], files(federation)
    done, arrived, at_kill = kill_mid_move(federation)
    assert at_kill < len(study), "the transfer ended before the kill: nothing to resume"
    assert "resumed (" in b.log.read_text(errors="replace"), b.tail()
    assert not failed(done), done.stdout[-3000:]
    assert final_count(done, "Completed") == len(study), done.stdout[-3000:]
    assert final_count(done, "Failed") in (0, None), done.stdout[-3000:]
    copies = sop_instances(arrived)
    assert set(copies) == set(sop_instances(study)), "not every instance arrived"
    assert [uid for uid, n in copies.items() if n > 1] == [], "an instance delivered twice"
    assert digests(arrived) == digests(study)
    transfer = sent_by_b(federation)[0]
    assert (transfer["status"], transfer["finished"] is not None) == ("complete", True)


def test_a_transfer_found_sending_whose_device_is_gone_is_aborted_with_the_reason(
    federation: Federation,
) -> None:
    b, proxy = federation.sites["B"], federation.device_proxy  # type: ignore[attr-defined]
    port = proxy.port
    try:
        done, arrived, at_kill = kill_mid_move(federation, between=proxy.close)
    finally:  # B's PACS reachable again for whatever follows
        federation.device_proxy = LatencyProxy(  # type: ignore[attr-defined]
            ("127.0.0.1", b.pacs.port), DEVICE_DELAY, port=port
        ).start()
    assert at_kill < len(files(federation)), "the transfer ended before the kill"
    assert failed(done), done.stdout[-3000:]
    ended = sent_by_b(federation)[0]
    assert ended["status"] == "aborted" and ended["finished"] is not None, ended
    assert "C-GET from PACSB failed" in str(ended["reason"]), ended
    received = [
        t for t in federation.sites["A"].relay_status()["transfers"] if t["id"] == ended["id"]
    ]
    assert received and received[0]["finished"] is not None, received
    assert "aborted by the source: resumed, but C-GET" in str(received[0]["reason"])
    assert [uid for uid, n in sop_instances(arrived).items() if n > 1] == []
