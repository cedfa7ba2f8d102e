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

from isthmus.config import Settings
from isthmus.relay import console
from isthmus.server import Node
from isthmus.testing.federation import WORKSTATION, Federation, Site
from isthmus.testing.net import free_port
from isthmus.testing.seaweedfs import TemporarySeaweedFS

from .status_support import dcmtk, federation_with_a_move, finished_transfer

pytestmark = pytest.mark.dcmtk


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: TemporarySeaweedFS
) -> Iterator[Federation]:
    with federation_with_a_move(tmp_path_factory.mktemp("federation-status"), seaweedfs) as running:
        yield running


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
    done = relay_status(f"http://127.0.0.1:{a.http_port}")
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

    as_json = relay_status(f"http://127.0.0.1:{a.http_port}", "--json")
    assert json.loads(as_json.stdout)["transfers"][0]["destination_aet"] == "STOREA"


def test_relay_status_command_says_when_a_node_is_not_a_site(tmp_path: Path) -> None:
    settings = Settings(
        data=tmp_path, dicom_port=free_port(), http_port=free_port(), check_on_start=False
    )
    with Node(settings) as node:
        done = relay_status(f"http://127.0.0.1:{node.http_port}")
    assert done.returncode == 1
    assert "is not in a federation (started without --relay)" in done.stdout


def test_relay_status_command_says_when_it_cannot_reach_the_node() -> None:
    done = relay_status(f"http://127.0.0.1:{free_port()}")
    assert done.returncode != 0
    assert "cannot reach http://127.0.0.1:" in done.stderr


def relay_status(server: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`isthmus relay status --server SERVER`, as an administrator types it."""
    return subprocess.run(
        [sys.executable, "-m", "isthmus", "relay", "status", "--server", server, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


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


def test_a_transfer_line_shows_progress_once_the_count_is_known() -> None:
    moving = {
        "id": "B.A.1",
        "direction": "receiving",
        "source": "B",
        "destination": "A",
        "destination_aet": "STOREA",
        "status": "receiving",
        "delivered": 4,
        "failed": 1,
        "expected": 10,
        "remaining": 5,
        "reason": None,
    }
    assert console.transfer_line(moving) == (
        "  receiving B -> A STOREA  receiving [#####.....] 4/10 delivered, 1 failed  (B.A.1)"
    )
    unknown = dict(moving, expected=None, remaining=None, status="aborted", reason="timed out")
    assert console.transfer_line(unknown) == (
        "  receiving B -> A STOREA  aborted   4 delivered, 1 failed  (B.A.1)\n      timed out"
    )


def transfers_audited(site: Site) -> list[str]:
    """The DICOM Instances Transferred messages (110104) of the relay in the audit log."""
    log = site.folder / "data" / "audit.log"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r["xml"] for r in records if "110104" in r["xml"] and "(relay)" in r["xml"]]


def test_a_c_move_across_sites_is_audited_as_instances_transferred_at_both_ends(
    federation: Federation,
) -> None:
    """The move of the module's fixture: A received the study from B, B sent it to A."""
    a, b = federation.sites["A"], federation.sites["B"]
    deadline = time.monotonic() + 30
    while not (transfers_audited(a) and transfers_audited(b)):
        assert time.monotonic() < deadline, "the transfer is not in both audit logs"
        time.sleep(0.2)
    received, sent = transfers_audited(a)[-1], transfers_audited(b)[-1]
    assert 'EventActionCode="C"' in received and 'NetworkAccessPointID="B (relay)"' in received
    assert 'EventActionCode="R"' in sent and 'NetworkAccessPointID="A (relay)"' in sent
    for xml in (received, sent):
        assert 'EventOutcomeIndicator="0"' in xml
        assert "ParticipantObjectIDTypeCode" in xml and 'csd-code="110180"' in xml  # a study
