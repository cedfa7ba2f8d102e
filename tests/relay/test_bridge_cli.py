"""`isthmus bridge serve | add-site | revoke-site` (relay/bridge_cli.py): the bridge as a
real process, enrolment files, revocation published to NATS at once."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from isthmus.cli import main
from isthmus.relay.bridge_client import BridgeRefused
from isthmus.relay.directory import Export
from isthmus.relay.enrolment import EnrolmentFile, enrol_site
from isthmus.testing.nats import TemporaryNATS
from isthmus.testing.net import free_port, wait_for_port
from isthmus.testing.seaweedfs import TemporarySeaweedFS

from .bridge_support import eventually, kv_entry, nats_server_fixture  # noqa: F401 - fixture

SRC = Path(__file__).parents[2] / "src"


@dataclass
class BridgeProcess:
    data: Path
    url: str
    nats: str


@pytest.fixture(name="served")
def served_fixture(
    nats_server: TemporaryNATS, seaweedfs: TemporarySeaweedFS, tmp_path: Path
) -> Iterator[BridgeProcess]:
    """`isthmus bridge serve` in a process of its own, stopped with SIGTERM."""
    data, port = tmp_path / "bridge", free_port()
    command = [sys.executable, "-m", "isthmus", "bridge", "serve", "--data", str(data)]
    command += ["--http-port", str(port), "--nats", nats_server.url, "--blob-url", seaweedfs.url()]
    env = dict(os.environ, PYTHONPATH=str(SRC))
    log = open(tmp_path / "bridge.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=30)
        yield BridgeProcess(data, f"http://127.0.0.1:{port}", nats_server.url)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        log.close()


def test_serve_records_the_urls_add_site_writes_into_a_private_enrolment_file(
    served: BridgeProcess, tmp_path: Path
) -> None:
    out = tmp_path / "a.json"
    assert main(["bridge", "add-site", "A", "--data", str(served.data), "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    enrolment = EnrolmentFile.load(out)
    assert (enrolment.bridge, enrolment.nats, enrolment.site) == (served.url, served.nats, "A")
    assert len(enrolment.secret) >= 40
    assert stat.S_IMODE((served.data / "bridge.json").stat().st_mode) == 0o600


def test_add_site_refuses_a_name_taken_or_badly_formed(
    served: BridgeProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def add(name: str, out: str) -> int:
        return main(["bridge", "add-site", name, "--data", str(served.data), "--out", out])

    assert add("A", str(tmp_path / "a.json")) == 0
    assert add("A", str(tmp_path / "a2.json")) == 1
    assert "site 'A' already exists" in capsys.readouterr().err
    assert not (tmp_path / "a2.json").exists()
    assert add("a.b", str(tmp_path / "ab.json")) == 1
    assert "not valid" in capsys.readouterr().err
    assert add("B", str(tmp_path / "a.json")) == 2  # never overwrites an enrolment file
    assert "not overwriting" in capsys.readouterr().err


def test_a_site_enrols_from_its_file_and_revoke_site_cuts_it_off_at_once(
    served: BridgeProcess, tmp_path: Path
) -> None:
    out = tmp_path / "a.json"
    assert main(["bridge", "add-site", "A", "--data", str(served.data), "--out", str(out)]) == 0
    identity, client = enrol_site(tmp_path / "site-a", out)
    client.publish_exports([Export("PACSA", "A")])
    listed = httpx.get(served.url + "/api/relay/directory").json()["sites"]
    assert [(s["site"], s["fingerprint"]) for s in listed] == [("A", identity.keys.fingerprint)]
    assert eventually(lambda: (e := kv_entry(served.nats, "A")) and not e["revoked"])

    assert main(["bridge", "revoke-site", "A", "--data", str(served.data)]) == 0
    assert eventually(lambda: (e := kv_entry(served.nats, "A")) and e["revoked"])
    with pytest.raises(BridgeRefused, match="revoked") as refused:
        client.publish_exports([])
    assert refused.value.status == 403


def test_revoke_site_of_an_unknown_site_fails(
    served: BridgeProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bridge", "revoke-site", "Z", "--data", str(served.data)]) == 1
    assert "no site 'Z'" in capsys.readouterr().err


def test_add_site_without_a_served_bridge_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a.json"
    assert main(["bridge", "add-site", "A", "--data", str(tmp_path), "--out", str(out)]) == 2
    assert "--bridge-url and --nats" in capsys.readouterr().err
    args = ["--bridge-url", "https://bridge.example", "--nats", "nats://nats.example:4222"]
    assert main(["bridge", "add-site", "A", "--data", str(tmp_path), "--out", str(out), *args]) == 0
    assert json.loads(out.read_text())["bridge"] == "https://bridge.example"


def test_revoke_site_publishes_the_revocation_itself_when_no_bridge_runs(
    nats_server: TemporaryNATS, tmp_path: Path
) -> None:
    from isthmus.relay.bridge_state import BridgeState
    from isthmus.relay.crypto import SiteIdentity

    state = BridgeState(f"sqlite:///{tmp_path / 'bridge.db'}")
    state.enrol("A", state.add_site("A"), SiteIdentity.create("A").keys)
    state.close()
    command = ["bridge", "revoke-site", "A", "--data", str(tmp_path), "--nats", nats_server.url]
    assert main(command) == 0
    entry = kv_entry(nats_server.url, "A")
    assert entry is not None and entry["revoked"] is True


def test_serve_refuses_plain_http_beyond_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["bridge", "serve", "--data", str(tmp_path), "--host", "0.0.0.0"]
    command += ["--nats", "nats://127.0.0.1:1", "--blob-url", "s3://b/p"]
    assert main([*command, "--public-url", "http://bridge.example"]) == 2
    assert "over plain HTTP" in capsys.readouterr().err
    assert main(command) == 2
    assert "--public-url is needed" in capsys.readouterr().err
    assert not (tmp_path / "bridge.json").exists()


def test_serve_without_nats_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    command = ["bridge", "serve", "--data", str(tmp_path), "--http-port", str(free_port())]
    command += ["--nats", f"nats://127.0.0.1:{free_port()}", "--blob-url", "s3://b/p"]
    assert main(command) == 1
    assert "not reached" in capsys.readouterr().err


def test_sites_lists_each_site_with_its_state_fingerprint_and_exports(
    served: BridgeProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(served.data)
    for name in ("A", "B", "C"):
        assert (
            main(["bridge", "add-site", name, "--data", data, "--out", str(tmp_path / name)]) == 0
        )
    a, client = enrol_site(tmp_path / "site-a", tmp_path / "A")
    client.publish_exports([Export("PACSA", "A")])
    enrol_site(tmp_path / "site-c", tmp_path / "C")
    assert main(["bridge", "revoke-site", "C", "--data", data]) == 0
    capsys.readouterr()
    assert main(["bridge", "sites", "--data", data, "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(s["site"], s["state"], s["exports"]) for s in listed] == [
        ("A", "enrolled", ["PACSA"]),
        ("B", "added", []),
        ("C", "revoked", []),
    ]
    assert listed[0]["fingerprint"] == a.keys.fingerprint


def test_commands_on_a_folder_without_a_bridge_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bridge", "sites", "--data", str(tmp_path / "none")]) == 2
    assert "no bridge database" in capsys.readouterr().err
    assert main(["bridge", "revoke-site", "A", "--data", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()
