"""Two sites of a real federation with one finished transfer, for the status tests
(tests/relay/test_status.py) and the admin page's (tests/viewer/test_admin.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
from tests.relay.federation_support import dcmtk, move_args, running

from isthmus.testing.federation import Federation, Site
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.seaweedfs import TemporarySeaweedFS

PATIENT = StudySpec(
    patient_name="STATUS^STELLA", patient_id="STAT0001", series_count=1, instances_per_series=3
)


@contextmanager
def federation_with_a_move(folder: Path, s3: TemporarySeaweedFS) -> Iterator[Federation]:
    """Sites A and B; B's PACS holds one study of 3 instances, which A's workstation
    moved to STOREA (a transfer from B to A).  The sites' logs are printed on failure."""
    with running(Federation(folder, s3, names=("A", "B"))) as federation:
        files = write_study(PATIENT, folder / "study")
        federation.sites["B"].pacs.load(files)
        study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        done = dcmtk(federation.sites["A"], "movescu", "PACSB", *move_args("STOREA", study))
        assert done.returncode == 0, done.stderr
        yield federation


def finished_transfer(site: Site) -> dict[str, Any]:
    """The site's one transfer, once finished (the source records its end after the
    destination's final report, so it may lag the C-MOVE response by a moment)."""
    deadline = time.monotonic() + 30
    while True:
        transfers = site.relay_status()["transfers"]
        if transfers and transfers[0]["finished"]:
            return dict(transfers[0])
        assert time.monotonic() < deadline, f"site {site.name}: {transfers}"
        time.sleep(0.2)
