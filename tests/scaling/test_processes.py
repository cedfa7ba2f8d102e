"""Two `isthmus serve` processes, one PostgreSQL index, one blob store (a folder or S3), HAProxy in front
(examples/scaling/haproxy.cfg, docs/scaling.md): what one process commits, every query
on either sees; the same instance sent to both is stored once; events and browser AE
titles cross processes; a process killed mid-ingest leaves the other serving and the
archive consistent."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

from isthmus.archive import Archive, Event
from isthmus.archive.events_postgres import PostgresEventBus
from isthmus.testing import dcmtk
from isthmus.testing.generate import StudySpec, write_study
from web.dicom_ws_support import Browser, ws

from .cluster import Balancer
from .conftest import Cluster

STUDY_ROOT_MOVE = StudyRootQueryRetrieveInformationModelMove


def storescu(
    port: int, paths: list[Path], calling: str = "STORESCU", called: str = "ISTHMUS"
) -> list[str]:
    return [
        dcmtk.tool("storescu"),
        "-aet",
        calling,
        "-aec",
        called,
        "127.0.0.1",
        str(port),
        *map(str, paths),
    ]


def store_ok(port: int, paths: list[Path], called: str = "ISTHMUS") -> None:
    done = subprocess.run(
        storescu(port, paths, called=called), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def stow(base: str, paths: list[Path]) -> httpx.Response:
    boundary = "isthmus-scaling-boundary"
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + p.read_bytes()
        + b"\r\n"
        for p in paths
    )
    body += f"--{boundary}--\r\n".encode()
    return httpx.post(
        f"{base}/dicom-web/studies",
        content=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        },
        timeout=120,
    )


def qido(base: str, path: str) -> list[dict[str, dict[str, list[object]]]]:
    response = httpx.get(f"{base}/dicom-web/{path}", timeout=60)
    assert response.status_code in (200, 204), response.text
    return response.json() if response.status_code == 200 else []


def findscu_studies(port: int, patient_id: str, folder: Path) -> int:
    """How many studies C-FIND (DCMTK findscu, study root) finds for `patient_id`."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("rsp*.dcm"):
        old.unlink()
    done = dcmtk.run(
        "findscu",
        "-S",
        "-aet",
        "FINDSCU",
        "-aec",
        "ISTHMUS",
        "-X",
        "-od",
        str(folder),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"PatientID={patient_id}",
        "-k",
        "StudyInstanceUID",
        "127.0.0.1",
        str(port),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return len(list(folder.glob("rsp*.dcm")))


def sessions(balancer: Balancer, backend: str) -> dict[str, int]:
    stats = balancer.stats()
    return {n: int(stats[(backend, n)]["stot"]) for n in ("isthmus1", "isthmus2")}


def related_instances(study: dict[str, dict[str, list[object]]]) -> int:
    return int(str(study["00201208"]["Value"][0]))


@contextmanager
def archive_of(cluster: Cluster) -> Iterator[Archive]:
    """The shared archive, opened by the test as a third process."""
    archive = Archive(cluster.index_url, cluster.blob_url)
    try:
        yield archive
    finally:
        archive.close()


# ---------------------------------------------------------------- the balancer
def test_the_balancer_spreads_dicom_associations_and_http_requests_over_both(
    cluster: Cluster,
) -> None:
    lb = cluster.balancer
    dicom_before, http_before = sessions(lb, "isthmus_dicom"), sessions(lb, "isthmus_http")
    for _ in range(4):
        echo = dcmtk.run("echoscu", "-aec", "ISTHMUS", "127.0.0.1", str(lb.dicom_port))
        assert echo.returncode == 0, echo.stdout + echo.stderr
        with httpx.Client() as client:  # a new connection each time
            assert client.get(f"http://127.0.0.1:{lb.http_port}/health").status_code == 200
    dicom, http = sessions(lb, "isthmus_dicom"), sessions(lb, "isthmus_http")
    for name in ("isthmus1", "isthmus2"):
        assert dicom[name] > dicom_before[name], f"no association reached {name}"
        assert http[name] > http_before[name], f"no HTTP request reached {name}"


# ------------------------------------------------------- stores and queries
def test_concurrent_c_store_and_stow_to_both_are_seen_by_queries_on_either(
    cluster: Cluster, tmp_path: Path
) -> None:
    lb, (one, two) = cluster.balancer, cluster.processes
    specs = [
        StudySpec(patient_id=f"SCALE-{n}", accession=f"SC{n}", instances_per_series=8)
        for n in range(6)
    ]
    studies = [write_study(spec, tmp_path / f"s{n}") for n, spec in enumerate(specs)]
    # C-STORE through the balancer and to each process; STOW-RS likewise; all at once.
    c_stores = zip(
        (lb.dicom_port, lb.dicom_port, one.dicom_port, two.dicom_port), studies[:4], strict=True
    )
    senders = [
        subprocess.Popen(storescu(port, paths), stdout=subprocess.PIPE, text=True)
        for port, paths in c_stores
    ]
    stowed: queue.Queue[httpx.Response] = queue.Queue()
    stows = zip((f"http://127.0.0.1:{lb.http_port}", two.http), studies[4:], strict=True)
    threads = [
        threading.Thread(target=lambda b=base, p=paths: stowed.put(stow(b, p)))
        for base, paths in stows
    ]
    for thread in threads:
        thread.start()
    for sender in senders:
        sender.wait(timeout=120)
        assert sender.returncode == 0
    for thread in threads:
        thread.join(120)
    responses = [stowed.get_nowait() for _ in threads]
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]

    for process in cluster.processes:  # each process, directly
        for spec in specs:
            found = qido(process.http, f"studies?PatientID={spec.patient_id}")
            assert len(found) == 1, (process.name, spec.patient_id)
            assert related_instances(found[0]) == 8
            assert findscu_studies(process.dicom_port, spec.patient_id, tmp_path / "f") == 1
            study_uid = str(found[0]["0020000D"]["Value"][0])
            assert len(qido(process.http, f"studies/{study_uid}/instances")) == 8


def test_the_same_instances_sent_to_both_processes_at_once_are_stored_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    paths = write_study(StudySpec(patient_id="SCALE-TWICE", instances_per_series=30), tmp_path)
    one, two = cluster.processes
    senders = [
        subprocess.Popen(storescu(p.dicom_port, paths), stdout=subprocess.PIPE, text=True)
        for p in (one, two)
    ]
    stowed = stow(two.http, paths)  # and a third copy of each, over DICOMweb
    for sender in senders:
        sender.wait(timeout=120)
        assert sender.returncode == 0
    assert stowed.status_code == 200, stowed.text

    with archive_of(cluster) as archive:
        uid = str(dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
        rows = archive.instances(study_uid=uid)
        assert len(rows) == 30
        assert len({r.sop_instance_uid for r in rows}) == 30
        folders = {r.blob_key.rsplit("/", 1)[0] for r in rows}
        assert len(folders) == 1  # one folder (key prefix) per study
        prefix = folders.pop() + "/"
        assert sum(k.startswith(prefix) for k in archive.blobs.keys()) == 30  # losers' gone
        assert archive.counts()["study"] == len(qido(one.http, "studies"))


# ------------------------------------------------------------------ events
def test_events_published_by_one_process_reach_subscribers_in_another(
    cluster: Cluster, tmp_path: Path
) -> None:
    paths = write_study(StudySpec(patient_id="SCALE-EVENT", instances_per_series=2), tmp_path)
    one, two = cluster.processes
    store_ok(one.dicom_port, paths)
    uid = str(dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
    heard: queue.Queue[Event] = queue.Queue()
    bus = PostgresEventBus(cluster.index_url)
    try:
        bus.subscribe("archive.", heard.put)
        bus.subscribe("route.", heard.put)
        assert httpx.delete(f"{two.http}/dicom-web/studies/{uid}", timeout=60).status_code in (
            200,
            204,
        )
        event = heard.get(timeout=30)
        assert event.topic == "archive.index.parents"
        with ws(f"ws://127.0.0.1:{one.http_port}/dicom-ws/listen?aet=EVENTAE") as listener:
            assert json.loads(listener.recv(timeout=30))["type"] == "registered"
            event = heard.get(timeout=30)
            assert (event.topic, event.payload["aet"], event.payload["port"]) == (
                "route.browser",
                "EVENTAE",
                one.dicom_port,
            )
    finally:
        bus.close()
    assert not qido(one.http, f"studies?StudyInstanceUID={uid}")  # the delete, seen by 1


# ------------------------------------------------- browser AE on the other one
def c_move(port: int, study_uid: str, destination: str) -> tuple[int, int]:
    """C-MOVE a study (pynetdicom SCU); returns (final status, completed sub-operations)."""
    from pydicom.dataset import Dataset

    ae = AE("MOVESCU")
    ae.add_requested_context(STUDY_ROOT_MOVE)
    assoc = ae.associate("127.0.0.1", port, ae_title="ISTHMUS")
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    status, completed = -1, 0
    try:
        for response, _identifier in assoc.send_c_move(query, destination, STUDY_ROOT_MOVE):
            if response is not None and "Status" in response:
                status = int(response.Status)
                completed = int(getattr(response, "NumberOfCompletedSuboperations", completed))
    finally:
        assoc.release()
    return status, completed


def test_a_c_move_at_one_process_reaches_a_browser_registered_on_the_other(
    cluster: Cluster, tmp_path: Path
) -> None:
    paths = write_study(StudySpec(patient_id="SCALE-MOVE", instances_per_series=3), tmp_path)
    one, two = cluster.processes
    store_ok(one.dicom_port, paths)
    uid = str(dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
    wanted = sorted(str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths)
    browser = Browser(one.http_port, "WSBROWSER")
    try:
        assert c_move(two.dicom_port, uid, "WSBROWSER") == (0x0000, 3)
        assert sorted(browser.received) == wanted
        for _ in range(2):  # through the balancer, whichever process answers
            assert c_move(cluster.balancer.dicom_port, uid, "WSBROWSER") == (0x0000, 3)
        assert sorted(browser.received) == sorted(wanted * 3)
    finally:
        browser.close()
    # A browser that reaches the gateway through the balancer too (its listen and accept
    # WebSockets land on one process: the gateway backend is balanced by source).
    balanced = Browser(cluster.balancer.http_port, "LBBROWSER")
    try:
        for port in (one.dicom_port, two.dicom_port):
            assert c_move(port, uid, "LBBROWSER") == (0x0000, 3)
        assert sorted(balanced.received) == sorted(wanted * 2)
    finally:
        balanced.close()
    status, _ = c_move(two.dicom_port, uid, "WSBROWSER")
    assert status == 0xA801  # unregistered with its WebSocket: an unknown destination again


def test_a_c_store_to_a_browser_ae_reaches_it_through_either_process(
    cluster: Cluster, tmp_path: Path
) -> None:
    paths = write_study(StudySpec(patient_id="SCALE-DIRECT", instances_per_series=2), tmp_path)
    one, two = cluster.processes
    wanted = sorted(str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths)
    browser = Browser(one.http_port, "DIRECTAE")
    try:
        # Process 2 passes the association on to process 1's DICOM port (node/remote.py);
        # through the balancer it lands on either.
        for port in (two.dicom_port, one.dicom_port, *[cluster.balancer.dicom_port] * 2):
            store_ok(port, paths, called="DIRECTAE")
        assert sorted(browser.received) == sorted(wanted * 4)
    finally:
        browser.close()


# --------------------------------------------------------- one process dies
def test_sigkill_of_one_process_mid_ingest_leaves_the_other_serving_and_check_clean(
    cluster: Cluster, tmp_path: Path
) -> None:
    one, two = cluster.processes
    doomed = write_study(
        StudySpec(patient_id="SCALE-KILL", instances_per_series=60, rows=256, columns=256),
        tmp_path / "kill",
    )
    survivor = write_study(
        StudySpec(patient_id="SCALE-LIVE", instances_per_series=60, rows=256, columns=256),
        tmp_path / "live",
    )
    killed = subprocess.Popen(
        [*storescu(one.dicom_port, doomed)[:1], "-v", *storescu(one.dicom_port, doomed)[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    living = subprocess.Popen(storescu(two.dicom_port, survivor), stdout=subprocess.PIPE, text=True)
    acknowledged: list[str] = []
    current = None
    assert killed.stdout is not None
    for line in killed.stdout:  # kill process 1 once 20 of its stores are acknowledged
        sending = re.search(r"Sending file: (.+)$", line)
        if sending:
            current = sending[1].strip()
        elif "Received Store Response (Success)" in line and current:
            acknowledged.append(current)
            if len(acknowledged) == 20:
                one.kill()
    killed.wait(timeout=60)
    assert 20 <= len(acknowledged) < 60, "the kill came too late to test"

    with archive_of(cluster) as archive:
        # Process 2 is still storing: a check now must leave its work alone.
        assert archive.shared()
        during = archive.check()
        assert during["missing"] == 0
        living.wait(timeout=120)
        assert living.returncode == 0, "process 2 stopped serving"

        lb = cluster.balancer
        lb.wait_up("isthmus_dicom", "isthmus1", up=False)
        for _ in range(3):  # both doors, through the balancer: process 2 answers
            assert httpx.get(f"http://127.0.0.1:{lb.http_port}/health").status_code == 200
            echo = dcmtk.run("echoscu", "-aec", "ISTHMUS", "127.0.0.1", str(lb.dicom_port))
            assert echo.returncode == 0

        # Nothing in flight now: leftovers of the dead process may go, at once.
        repaired = archive.check(grace=0)
        assert repaired["missing"] == 0  # never a row without its blob
        assert archive.check(grace=0) == {
            "partial": 0,
            "orphans": 0,
            "missing": 0,
            "instances": repaired["instances"],
        }
        for path in [*map(Path, acknowledged), *survivor]:
            uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            rows = archive.instances(sop_uid=uid)
            assert rows, f"acknowledged {path.name} is missing"
            assert archive.read_instance(rows[0])  # its blob is there
        assert set(archive.blobs.keys()) == {r.blob_key for r in archive.instances()}

    one.proc = None
    one.launch().wait_ready()  # back: it joins the running archive
    lb.wait_up("isthmus_dicom", "isthmus1")
    found = qido(one.http, "studies?PatientID=SCALE-LIVE")
    assert related_instances(found[0]) == 60
