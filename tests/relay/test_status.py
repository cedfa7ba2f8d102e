"""What a site shows of the federation, and what it audits (issue 11, "Status and
audit"): two sites of a real federation (NATS, SeaweedFS, the bridge, `isthmus serve
--relay`, DCMTK devices); `RelaySite.status()` through the admin API lists the transfer
of a C-MOVE at both ends, `isthmus relay status` prints it, and a C-FIND across sites
is an Association event in both sites' audit logs (PS3.15 A.5)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus.testing.dcmtk import tool
from isthmus.testing.federation import Federation, Site
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.seaweedfs import TemporarySeaweedFS

pytestmark = pytest.mark.dcmtk
WORKSTATION = "WSA"
PATIENT = StudySpec(
    patient_name="STATUS^STELLA", patient_id="STAT0001", series_count=1, instances_per_series=3
)


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: TemporarySeaweedFS
) -> Iterator[Federation]:
    """Sites A and B; B's PACS holds one study of 3 instances, which A moved to STOREA."""
    folder = tmp_path_factory.mktemp("federation-status")
    running = Federation(folder, seaweedfs, names=("A", "B"))
    try:
        running.start()
        files = write_study(PATIENT, folder / "study")
        running.sites["B"].pacs.load(files)
        study = _study_uid(files[0])
        done = dcmtk(
            running.sites["A"],
            "movescu",
            "PACSB",
            "-S",
            "-aem",
            "STOREA",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study}",
        )
        assert done.returncode == 0, done.stderr
        yield running
    except BaseException:
        for site in running.sites.values():
            print(f"--- site {site.name}\n{site.tail()}")
        raise
    finally:
        running.close()


def _study_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def dcmtk(site: Site, name: str, called: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A DCMTK tool of the site's workstation, calling `called` on the site's node."""
    return subprocess.run(
        [tool(name), "-aet", WORKSTATION, "-aec", called, *args, "127.0.0.1", str(site.dicom_port)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def finished_transfer(site: Site) -> dict[str, Any]:
    """The site's one transfer, once finished (the source records its end after the
    destination's final report, so it may lag the C-MOVE response by a moment)."""
    deadline = time.monotonic() + 30
    while True:
        transfers = site.relay_status()["transfers"]
        if transfers and transfers[0]["status"] != "receiving" and transfers[0]["finished"]:
            return dict(transfers[0])
        assert time.monotonic() < deadline, f"site {site.name}: {transfers}"
        time.sleep(0.2)


def test_status_shows_the_c_move_transfer_received_and_sent(federation: Federation) -> None:
    received = finished_transfer(federation.sites["A"])
    sent = finished_transfer(federation.sites["B"])
    assert received["id"] == sent["id"]
    assert (received["direction"], sent["direction"]) == ("receiving", "sending")
    for transfer in (received, sent):
        assert (transfer["source"], transfer["destination"]) == ("B", "A")
        assert transfer["destination_aet"] == "STOREA"
        assert transfer["status"] == "complete"
        assert (transfer["delivered"], transfer["failed"]) == (3, 0)
        assert transfer["started"] <= transfer["updated"]
    assert (received["expected"], received["remaining"]) == (3, 0)


def test_relay_status_command_prints_sites_ae_titles_and_transfers(
    federation: Federation,
) -> None:
    a, b = federation.sites["A"], federation.sites["B"]
    finished_transfer(a)
    command = [sys.executable, "-m", "isthmus", "relay", "status"]
    server = ["--server", f"http://127.0.0.1:{a.http_port}"]
    done = subprocess.run(command + server, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    b_fingerprint = b.relay_status()["fingerprint"]
    assert f"site A  fingerprint {a.relay_status()['fingerprint']}" in out
    assert "NATS connected" in out
    assert f"B            {b_fingerprint}  trusted" in out
    imports = out.split("imports:")[1].split("sites:")[0]
    assert {"PACSB", "STOREB", "ISTHMUSB"} <= {line.split()[0] for line in imports.splitlines()[1:]}
    transfers = out.split("transfers:")[1]
    assert "receiving B -> A STOREA  complete  [##########] 3/3 delivered, 0 failed" in transfers

    as_json = subprocess.run(command + server + ["--json"], capture_output=True, text=True)
    assert json.loads(as_json.stdout)["transfers"][0]["destination_aet"] == "STOREA"


def test_relay_status_command_says_when_a_node_is_not_a_site(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "isthmus", "relay", "status", "--server", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "cannot reach http://127.0.0.1:9" in done.stderr


def associations(site: Site, called: str) -> list[dict[str, Any]]:
    """The Association events of the site's audit log (DATA/audit.log) naming `called`."""
    log = site.folder / "data" / "audit.log"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r for r in records if "110114" in r["xml"] and f'UserID="{called}"' in r["xml"]]


def test_a_c_find_across_sites_is_audited_at_both_sites(
    federation: Federation, tmp_path: Path
) -> None:
    a, b = federation.sites["A"], federation.sites["B"]
    before = {s.name: len(associations(s, "PACSB")) for s in (a, b)}
    done = dcmtk(
        a, "findscu", "PACSB", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=STAT0001"
    )
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    while any(len(associations(s, "PACSB")) == before[s.name] for s in (a, b)):
        assert time.monotonic() < deadline, "the association is not in both audit logs"
        time.sleep(0.2)
    at_a, at_b = associations(a, "PACSB")[-1]["xml"], associations(b, "PACSB")[-1]["xml"]
    for xml in (at_a, at_b):  # the workstation asked for the far PACS, and it was accepted
        assert f'UserID="{WORKSTATION}" UserIsRequestor="true"' in xml
        assert 'EventOutcomeIndicator="0"' in xml
    # Each names the other site: the caller's where PACSB is, the far site where WSA is.
    assert 'UserID="PACSB" UserIsRequestor="false" NetworkAccessPointID="B (relay)"' in at_a
    assert f'UserID="{WORKSTATION}" UserIsRequestor="true" NetworkAccessPointID="A (relay)"' in at_b
