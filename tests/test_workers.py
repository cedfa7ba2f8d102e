"""`isthmus serve --workers 2`: two worker processes on the same ports, as a user starts
them, on each backend (SQLite and files, PostgreSQL and files, SQLite and S3).  Both
answer; what one stores the other finds; the same instance sent to both at once is
stored once; events (the supervisor's control sockets on SQLite, LISTEN/NOTIFY on
PostgreSQL) and metrics cross them; a worker killed mid-ingest is started again while
the other serves, and the archive stays whole."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from websockets.sync.client import connect

from isthmus.archive import Archive, scheduled_workitem
from isthmus.testing import dcmtk, processes
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port
from isthmus.web.stow import SPOOL_CHUNK
from web.dicom_ws_support import Browser

READY_LINE = "Press Ctrl+C to stop."
OWN = re.compile(r"(w\d+): DICOM port (\d+), HTTP (http://127\.0\.0\.1:\d+)/")
GLOBAL_UPS = "1.2.840.10008.5.1.4.34.5"
JSON_TYPE = {"Content-Type": "application/dicom+json"}


@dataclass
class Workers:
    """A running `isthmus serve --workers 2`: its shared ports and each worker's own."""

    proc: subprocess.Popen[bytes]
    data: Path
    log: Path
    dicom_port: int
    http: str
    own_dicom: dict[str, int] = field(default_factory=dict)
    own_http: dict[str, str] = field(default_factory=dict)
    index_url: str = ""
    blob_url: str = ""

    def archive(self) -> Archive:
        return Archive(
            self.index_url or f"sqlite:///{self.data / 'index.sqlite'}",
            self.blob_url or f"file://{self.data / 'blobs'}",
        )


def start(folder: Path, workers: int = 2, index_url: str = "", blob_url: str = "") -> Workers:
    """`isthmus serve --workers N` on free ports; "" for the data folder's index or blobs
    (S3 credentials and endpoint come from the standard AWS variables the tests set)."""
    data, log = folder / "data", folder / "serve.log"
    dicom_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISTHMUS_")}
    command = [sys.executable, "-m", "isthmus", "serve", "--data", str(data)]
    command += ["--workers", str(workers), "--dicom-port", str(dicom_port)]
    command += ["--http-port", str(http_port)]
    command += ["--index-url", index_url] if index_url else []
    command += ["--blob-url", blob_url] if blob_url else []
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 90
    while READY_LINE not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            processes.kill(proc)
            raise AssertionError(f"isthmus serve --workers did not start:\n{log.read_text()}")
        time.sleep(0.1)
    http = f"http://127.0.0.1:{http_port}"
    running = Workers(proc, data, log, dicom_port, http, index_url=index_url, blob_url=blob_url)
    for name, port, url in OWN.findall(log.read_text()):
        running.own_dicom[name], running.own_http[name] = int(port), url
    assert sorted(running.own_http) == [f"w{n}" for n in range(workers)]
    return running


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, module_index_url: str, module_blob_url: str
) -> Iterator[Workers]:
    running = start(tmp_path_factory.mktemp("workers"), 2, module_index_url, module_blob_url)
    yield running
    processes.stop(running.proc)


def storescu(port: int, paths: list[Path], *options: str) -> list[str]:
    return [dcmtk.tool("storescu"), *options, "-aec", "ISTHMUS", "127.0.0.1", str(port)] + [
        str(p) for p in paths
    ]


def worker_of_new_connection(url: str) -> str:
    with httpx.Client(timeout=30) as client:  # a new connection each time
        return str(client.get(f"{url}/health").json()["worker"])


def test_both_workers_take_connections_on_the_shared_http_port(node: Workers):
    seen = {worker_of_new_connection(node.http) for _ in range(60)}
    assert seen == {"w0", "w1"}


def test_each_worker_answers_on_its_own_ports(node: Workers):
    for name, url in node.own_http.items():
        assert worker_of_new_connection(url) == name
        echo = dcmtk.run("echoscu", "-aec", "ISTHMUS", "127.0.0.1", str(node.own_dicom[name]))
        assert echo.returncode == 0, echo.stdout + echo.stderr


def test_concurrent_stores_on_the_shared_port_are_found_by_every_worker(
    node: Workers, tmp_path: Path
):
    studies = [
        write_study(StudySpec(patient_id=f"WK-{n}", instances_per_series=12), tmp_path / str(n))
        for n in range(4)
    ]
    senders = [subprocess.Popen(storescu(node.dicom_port, paths)) for paths in studies]
    for sender in senders:
        assert sender.wait(timeout=120) == 0
    for name, url in node.own_http.items():
        for n in range(4):
            found = httpx.get(f"{url}/dicom-web/studies", params={"PatientID": f"WK-{n}"}).json()
            assert len(found) == 1, name
            assert found[0]["00201208"]["Value"] == [12], name  # NumberOfStudyRelatedInstances


def test_the_same_instances_sent_to_both_workers_at_once_are_stored_once(
    node: Workers, tmp_path: Path
):
    paths = write_study(StudySpec(patient_id="WK-TWICE", instances_per_series=30), tmp_path)
    senders = [subprocess.Popen(storescu(port, paths)) for port in node.own_dicom.values()]
    for sender in senders:
        assert sender.wait(timeout=120) == 0
    archive = node.archive()
    try:
        uid = str(dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
        rows = archive.instances(study_uid=uid)
        assert len({r.sop_instance_uid for r in rows}) == len(rows) == 30
        prefix = rows[0].blob_key.rsplit("/", 1)[0] + "/"
        assert sum(k.startswith(prefix) for k in archive.blobs.keys()) == 30  # copies gone
    finally:
        archive.close()


def test_a_ups_subscriber_on_one_worker_hears_a_work_item_made_on_the_other(node: Workers):
    me = "WK" + uuid.uuid4().hex[:10].upper()
    w0, w1 = node.own_http["w0"], node.own_http["w1"]
    r = httpx.post(f"{w0}/dicom-web/workitems/{GLOBAL_UPS}/subscribers/{me}")
    assert r.status_code == 201
    ws_url = w0.replace("http://", "ws://") + f"/dicom-web/subscribers/{me}"
    with connect(ws_url, open_timeout=10) as ws:
        uid = "2.25." + str(uuid.uuid4().int)
        body = scheduled_workitem({"patient_id": "WK-UPS", "label": "CT", "start": "202612030930"})
        made = httpx.post(
            f"{w1}/dicom-web/workitems?{uid}", content=json.dumps(body), headers=JSON_TYPE
        )
        assert made.status_code == 201, made.text
        reports = []
        while not reports or reports[-1]["00001000"]["Value"] != [uid]:
            reports.append(json.loads(ws.recv(timeout=30)))


def test_a_browser_ae_registered_on_one_worker_is_reached_through_the_other(
    node: Workers, tmp_path: Path
):
    """storescu calls the browser's AE title at w1, which passes the association on to
    w0 (the route table names w0's own port); the browser accepts it at w1, which
    passes the WebSocket on to w0 (the id names w0)."""
    w0, w1 = (int(node.own_http[n].rsplit(":", 1)[1]) for n in ("w0", "w1"))
    paths = write_study(StudySpec(patient_id="WK-BROWSER", instances_per_series=3), tmp_path)
    browser = Browser(w0, "WKBROWSER", accept_port=w1)
    try:
        sent = subprocess.run(
            [dcmtk.tool("storescu"), "-aec", "WKBROWSER", "127.0.0.1", str(node.own_dicom["w1"])]
            + [str(p) for p in paths],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        expected = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}
        assert set(browser.received) == expected
    finally:
        browser.close()


def test_a_p2p_fetch_started_on_one_worker_is_followed_through_the_other(node: Workers):
    w0, w1 = node.own_http["w0"], node.own_http["w1"]
    link = f"{w0}/share/nosuchlink#secret"  # a fetch that fails: it is followed all the same
    started = httpx.post(f"{w0}/api/admin/p2p/fetch", json={"link": link}, timeout=30)
    assert started.status_code == 202, started.text
    fetch_id = started.json()["id"]
    assert fetch_id.startswith("w0.")
    status = httpx.get(f"{w1}/api/admin/p2p/fetch/{fetch_id}", timeout=30)
    assert status.status_code == 200, status.text
    assert status.json()["id"] == fetch_id
    assert httpx.get(f"{w1}/api/admin/p2p/fetch/w0.nosuchfetch").status_code == 404


def test_metrics_on_the_shared_port_cover_every_worker(node: Workers):
    text = httpx.get(f"{node.http}/metrics", timeout=30).text
    for name in node.own_http:
        assert f'worker="{name}"' in text
    own = httpx.get(f"{node.own_http['w1']}/metrics", params={"worker": "self"}).text
    assert 'worker="' not in own  # one worker's own, unlabelled


def test_a_worker_killed_mid_ingest_is_started_again_and_the_archive_stays_whole(
    node: Workers, tmp_path: Path
):
    doomed = write_study(
        StudySpec(patient_id="WK-KILL", instances_per_series=60, rows=256, columns=256),
        tmp_path / "kill",
    )
    survivor = write_study(
        StudySpec(patient_id="WK-LIVE", instances_per_series=40), tmp_path / "live"
    )
    victim = worker_pid(node, "w0")
    killed = subprocess.Popen(
        storescu(node.own_dicom["w0"], doomed, "-v"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    acknowledged = acknowledged_until_kill(killed, victim, after=15)
    assert 15 <= len(acknowledged) < 60, "the kill came too late to test"
    living = subprocess.run(storescu(node.own_dicom["w1"], survivor), timeout=120)
    assert living.returncode == 0, "w1 stopped serving"

    deadline = time.monotonic() + 60  # the supervisor starts w0 again
    while worker_pid(node, "w0") in (victim, 0):
        assert time.monotonic() < deadline, node.log.read_text()
        time.sleep(0.2)
    archive = node.archive()
    try:
        assert archive.check(grace=0)["missing"] == 0  # never a row without its blob
        for path in [*acknowledged, *survivor]:
            rows = archive.instances(
                sop_uid=str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            )
            assert rows and archive.read_instance(rows[0]), f"acknowledged {path.name} is missing"
        assert set(archive.blobs.keys()) == {r.blob_key for r in archive.instances()}
    finally:
        archive.close()


def test_a_worker_killed_mid_stow_answers_no_success_and_leaves_nothing_half_stored(
    node: Workers, tmp_path: Path
):
    """STOW-RS to w0 killed (SIGKILL) while its body arrives: the client gets an error,
    never a success; the supervisor starts w0 again; none of the body's instances is
    indexed (a STOW-RS body is committed once whole, PS3.18 10.5), and its staged
    blobs are orphans a check removes, never rows without their blob.

    The kill waits until w0 has staged a part of this body, so w0 has accepted the
    connection.  Killed earlier, the connection can still wait in the listening
    socket's backlog (the supervisor holds that socket, so the restarted w0 listens
    on it too): the restarted w0 then receives the whole body and rightly answers 200."""
    doomed = write_study(
        StudySpec(patient_id="WK-STOWKILL", instances_per_series=40, rows=256, columns=256),
        tmp_path,
    )
    study_uid = str(dcmread(doomed[0], stop_before_pixels=True).StudyInstanceUID)
    victim = worker_pid(node, "w0")
    archive = node.archive()
    try:
        before = set(archive.blobs.keys())
        staged: set[str] = set()
        parts = [
            b"--b\r\nContent-Type: application/dicom\r\n\r\n" + p.read_bytes() + b"\r\n"
            for p in doomed
        ]
        parts.append(b"--b--\r\n")

        def body() -> Iterator[bytes]:
            sent = 0
            for part in parts:
                if not staged and sent >= 3 * SPOOL_CHUNK:  # parts are staged once spooled
                    staged.update(staged_by(archive, before, victim))
                    os.kill(victim, signal.SIGKILL)
                yield part
                sent += len(part)

        with pytest.raises(httpx.HTTPError):
            answer = httpx.post(
                f"{node.own_http['w0']}/dicom-web/studies",
                content=body(),
                headers={  # a declared length: parts are staged as they arrive
                    "Content-Type": 'multipart/related; type="application/dicom"; boundary=b',
                    "Content-Length": str(sum(map(len, parts))),
                },
                timeout=60,
            )
            raise AssertionError(f"answered {answer.status_code} by a killed worker")
        deadline = time.monotonic() + 60
        while worker_pid(node, "w0") in (victim, 0):
            assert time.monotonic() < deadline, node.log.read_text()
            time.sleep(0.2)
        assert archive.instances(study_uid=study_uid) == []
        assert archive.check(grace=0)["missing"] == 0
        keys = set(archive.blobs.keys())
        assert not staged & keys, "the killed worker's staged blobs were kept"
        assert keys == {r.blob_key for r in archive.instances()}
    finally:
        archive.close()


def staged_by(archive: Archive, before: set[str], pid: int) -> set[str]:
    """Wait until blobs appear that were not there `before` while process `pid` still
    runs (w1 stores nothing meanwhile, so they are `pid`'s staging); those keys."""
    deadline = time.monotonic() + 60
    while not (new := set(archive.blobs.keys()) - before):
        assert time.monotonic() < deadline, "w0 staged nothing of the body"
        time.sleep(0.05)
    assert running(pid), "w0 was gone before it was killed"
    return new


def running(pid: int) -> bool:
    """Does process `pid` still run (not gone, not a zombie)?"""
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False


def worker_pid(node: Workers, name: str) -> int:
    """The process id behind a worker's own HTTP port (0 while it does not answer)."""
    try:
        return int(httpx.get(f"{node.own_http[name]}/health", timeout=5).json()["pid"])
    except (httpx.HTTPError, KeyError, ValueError):
        return 0


def acknowledged_until_kill(sender: subprocess.Popen[str], pid: int, after: int) -> list[Path]:
    """Follow storescu -v; SIGKILL `pid` once `after` stores are acknowledged."""
    acknowledged: list[Path] = []
    current = None
    assert sender.stdout is not None
    for line in sender.stdout:
        sending = re.search(r"Sending file: (.+)$", line)
        if sending:
            current = Path(sending[1].strip())
        elif "Received Store Response (Success)" in line and current:
            acknowledged.append(current)
            if len(acknowledged) == after:
                os.kill(pid, signal.SIGKILL)
    sender.wait(timeout=60)
    return acknowledged


def test_sigterm_stops_every_worker_and_the_supervisor(tmp_path: Path):
    running = start(tmp_path, workers=2)
    pids = [worker_pid(running, name) for name in running.own_http]
    assert all(pids)
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=60) == 0
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        )


def test_workers_refuse_a_relay_configuration(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISTHMUS_")}
    command = [sys.executable, "-m", "isthmus", "serve", "--data", str(tmp_path / "d")]
    (tmp_path / "enrolment.json").write_text("{}")
    command += ["--workers", "2", "--relay", str(tmp_path / "enrolment.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0
    assert "--workers 1" in done.stderr + done.stdout
