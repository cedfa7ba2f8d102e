"""A site revoked mid-transfer (issue 11, "Faults"): its transfers stop, the DICOM
caller gets a failure within a bounded time, and the site is refused from then on.

Revocation is for good, so this module has its own federation and its tests run in
file order: first the destination site C is revoked while A's C-MOVE from B's PACS to
C's store runs (the caller's association with B stays up: the caller's router ends the
C-MOVE itself), then the source site B while A's C-MOVE from B to A's own store runs
(A's router aborts the association with B, A's receiver ends the transfer).

The stores sleep a second in every C-STORE (storescp --sleep-during), so that a
transfer is still delivering when the revocation reaches the routers.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.relay.federation_support import (
    dcmtk,
    failed,
    movescu,
    running,
    study_uid,
    wait_until,
)

from isthmus.testing.federation import Federation, Site
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.seaweedfs import TemporarySeaweedFS

pytestmark = pytest.mark.dcmtk
TIMEOUT = 5  # relay_timeout of every site
STUDY = StudySpec(
    patient_name="REVOKE^RITA",
    patient_id="REVOKE0001",
    accession="ACCR0001",
    series_count=1,
    instances_per_series=20,
)


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: TemporarySeaweedFS
) -> Iterator[Federation]:
    folder = tmp_path_factory.mktemp("revoke")
    federation = Federation(folder, seaweedfs, names=("A", "B", "C"))
    for site in federation.sites.values():
        site.config = f"relay_timeout = {TIMEOUT}\n"
        site.store.extra = ["--sleep-during", "1"]
    with running(federation):
        federation.study = write_study(STUDY, folder / "study")  # type: ignore[attr-defined]
        federation.sites["B"].pacs.load(federation.study)  # type: ignore[attr-defined]
        yield federation


def files(federation: Federation) -> list[Path]:
    return federation.study  # type: ignore[attr-defined, no-any-return]


def revoke_mid_move(
    federation: Federation, destination: Site, revoked: str
) -> tuple[subprocess.CompletedProcess[str], int]:
    """A's C-MOVE of the study from B's PACS to `destination`'s store, site `revoked`
    revoked once two instances arrived: movescu's outcome (bounded) and how many
    instances had arrived when the revocation was made."""
    move = movescu(
        federation.sites["A"], "PACSB", destination.store.aet, study_uid(files(federation))
    )
    try:
        wait_until(lambda: len(destination.store.received()) >= 2, 60, "the first instances")
        federation.revoke(revoked)
        at_revoke = len(destination.store.received())
        out, _ = move.communicate(timeout=12 * TIMEOUT)  # no hang: a bounded failure
    finally:
        move.kill()
    return subprocess.CompletedProcess(move.args, move.returncode, out, ""), at_revoke


def ended_for(site: Site, revoked: str) -> list[dict[str, object]]:
    """The transfers `site` received that ended because `revoked` was revoked."""
    recent = site.relay_status()["transfers"]
    return [
        t
        for t in recent
        if t["direction"] == "receiving" and f"site {revoked} revoked" in str(t["reason"])
    ]


def test_the_destination_site_revoked_mid_transfer_stops_it_and_fails_the_move(
    federation: Federation,
) -> None:
    c = federation.sites["C"]
    done, at_revoke = revoke_mid_move(federation, c, "C")
    assert failed(done), done.stdout
    assert at_revoke < len(files(federation)), "the transfer ended before the revocation"
    wait_until(lambda: bool(ended_for(c, "C")), 30, "C ended its transfer")
    assert not [t for t in c.relay_status()["transfers"] if t["finished"] is None]
    # Stopped: what C's store holds now is all it gets (one C-STORE may have been under way).
    assert len(c.store.received()) <= at_revoke + 1 < len(files(federation))
    echo = dcmtk(federation.sites["A"], "echoscu", "STOREC", timeout=30)
    assert echo.returncode != 0, echo.stdout + echo.stderr


def test_the_source_site_revoked_mid_transfer_stops_it_and_fails_the_move(
    federation: Federation,
) -> None:
    a = federation.sites["A"]
    done, at_revoke = revoke_mid_move(federation, a, "B")
    assert failed(done), done.stdout
    assert at_revoke < len(files(federation)), "the transfer ended before the revocation"
    wait_until(lambda: bool(ended_for(a, "B")), 30, "A ended the transfer from B")
    assert not [t for t in a.relay_status()["transfers"] if t["finished"] is None]
    assert len(a.store.received()) <= at_revoke + 1 < len(files(federation))
    echo = dcmtk(a, "echoscu", "PACSB", timeout=30)
    assert echo.returncode != 0 and re.search(r"[Rr]eject", echo.stdout + echo.stderr)
