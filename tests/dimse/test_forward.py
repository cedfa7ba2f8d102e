"""Forwarding rules with real peers: storescu from CT01 into Isthmus, on to DCMTK's
storescp; a destination down at first, a node killed mid-job, a destination that refuses
instances (pynetdicom), and retention that deletes only forwarded studies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove  # type: ignore[attr-defined]

from isthmus.archive import Event, Job
from isthmus.config import Peer, Settings
from isthmus.server import Node
from isthmus.testing.dcmtk import StoreSCP
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port, wait_for_port

from .support import address, run_ok, sop_uid_of

FINAL = ("completed", "partial", "failed", "cancelled")


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Poll `check` until it returns something true (bounded; no timing asserted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def forward_jobs(node: Node, study: str | None = None) -> list[Job]:
    jobs = node.archive.jobs.search(kind="forward")
    return [j for j in jobs if study is None or j.subject == study]


def finished(node: Node, study: str) -> Job | None:
    jobs = forward_jobs(node, study)
    return jobs[0] if jobs and all(j.status in FINAL for j in jobs) else None


def study_files(tmp: Path, name: str, count: int, modality: str = "CT") -> list[Path]:
    spec = StudySpec(patient_id=f"PID-{name}", instances_per_series=count, modality=modality)
    return write_study(spec, tmp / name)


def study_of(files: list[Path]) -> str:
    return str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def send(node: Node, calling: str, files: list[Path]) -> None:
    run_ok("storescu", "-aet", calling, *address(node), *map(str, files))


def received_uids(scp: StoreSCP) -> set[str]:
    return {sop_uid_of(p) for p in scp.received()}


def node_settings(tmp: Path, peer: Peer, rules: list[dict[str, Any]], **more: Any) -> Settings:
    values: dict[str, Any] = {
        "data": tmp / "data",
        "dicom_port": free_port(),
        "http_port": free_port(),
        "peers": (peer,),
        "forward": tuple(rules),
        "job_retry_base": 0.2,
        "job_lease": 5.0,
        "check_on_start": False,
    }
    return Settings(**{**values, **more})


@pytest.fixture(scope="module")
def storescp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreSCP]:
    with StoreSCP(tmp_path_factory.mktemp("storescp"), aet="PACS2") as scp:
        yield scp


@pytest.fixture(scope="module")
def forwarding_node(storescp: StoreSCP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    rules = [
        {"name": "ct01", "from": "CT01", "to": "PACS2", "settle": 0.5, "delete_after_days": 90},
        {"name": "mr", "modality": "MR", "to": "PACS2", "settle": 0.5},
    ]
    peer = Peer("PACS2", "127.0.0.1", storescp.port)
    with Node(node_settings(tmp_path_factory.mktemp("fwd"), peer, rules)) as node:
        yield node


def test_a_study_from_ct01_reaches_storescp_as_one_job_on_one_association(
    dcmtk: None, forwarding_node: Node, storescp: StoreSCP, tmp_path: Path
) -> None:
    opened: list[Event] = []
    transferred: list[Event] = []
    events = forwarding_node.archive.events
    unsubscribe = events.subscribe("association.opened", opened.append)
    unaudit = events.subscribe("audit.transferred", transferred.append)
    files = study_files(tmp_path, "CT01-A", 6)
    study = study_of(files)
    send(forwarding_node, "CT01", files[:3])
    send(forwarding_node, "CT01", files[3:])  # two associations in, one job out
    job = wait_for(lambda: finished(forwarding_node, study), what="the forward job")
    wait_for(lambda: transferred or None, what="the audit message of the forward")
    unsubscribe()
    unaudit()
    # PS3.15 A.5.3.2 DICOM Instances Transferred: one message naming the study and PACS2.
    assert [(e.payload["peer"], [s["uid"] for s in e.payload["studies"]]) for e in transferred] == [
        ("PACS2", [study])
    ]
    assert job.status == "completed", job
    assert job.counts == {"total": 6, "done": 6, "failed": 0, "pending": 0}
    assert len(forward_jobs(forwarding_node, study)) == 1
    assert {sop_uid_of(f) for f in files} <= received_uids(storescp)
    outbound = [e for e in opened if e.payload["direction"] == "outbound"]
    assert [e.payload["called_aet"] for e in outbound] == ["PACS2"]
    assert forwarding_node.contacts.last_contact("PACS2") is not None
    assert forwarding_node.contacts.last_contact("CT01") is not None


def test_rules_match_on_modality_and_leave_other_studies_alone(
    dcmtk: None, forwarding_node: Node, storescp: StoreSCP, tmp_path: Path
) -> None:
    mr = study_files(tmp_path, "MR-OTHER", 2, modality="MR")
    ct = study_files(tmp_path, "CT-OTHER", 2)
    send(forwarding_node, "OTHER", mr + ct)
    job = wait_for(lambda: finished(forwarding_node, study_of(mr)), what="the MR job")
    assert job.status == "completed" and job.label == "mr"
    assert {sop_uid_of(f) for f in mr} <= received_uids(storescp)
    assert forward_jobs(forwarding_node, study_of(ct)) == []
    assert not {sop_uid_of(f) for f in ct} & received_uids(storescp)


def test_retention_deletes_only_studies_forwarded_whole_and_older_than_n_days(
    dcmtk: None, forwarding_node: Node, tmp_path: Path
) -> None:
    archive = forwarding_node.archive
    forwarded = study_files(tmp_path, "RET-DONE", 2)
    mixed = study_files(tmp_path, "RET-MIXED", 3)  # one instance from another AE
    local = study_files(tmp_path, "RET-LOCAL", 1)
    send(forwarding_node, "CT01", forwarded + mixed[:2])
    send(forwarding_node, "OTHER", mixed[2:] + local)
    for files in (forwarded, mixed):
        wait_for(lambda f=files: finished(forwarding_node, study_of(f)), what="forwarding")

    def retention_at(days: float) -> None:
        real = archive.jobs.clock
        archive.jobs.clock = lambda: real() + timedelta(days=days)
        try:
            (pk,) = forwarding_node.forwarding.schedule_retention()
            wait_for(lambda: archive.jobs.get(pk).status in FINAL, what="retention")  # type: ignore[union-attr]
            assert archive.jobs.get(pk).status == "completed"  # type: ignore[union-attr]
        finally:
            archive.jobs.clock = real

    retention_at(89)
    assert archive.instances(study_of(forwarded)), "deleted before N days"
    retention_at(91)
    assert archive.instances(study_of(forwarded)) == []
    assert len(archive.instances(study_of(mixed))) == 3
    assert len(archive.instances(study_of(local))) == 1


def test_a_destination_down_at_first_is_retried_until_it_comes_up(
    dcmtk: None, tmp_path: Path
) -> None:
    port = free_port()
    rules = [{"from": "CT01", "to": "PACS2", "settle": 1.0}]
    settings = node_settings(tmp_path, Peer("PACS2", "127.0.0.1", port), rules)
    files = study_files(tmp_path, "DOWN", 3)
    study = study_of(files)
    with Node(settings) as node:
        send(node, "CT01", files)
        waiting = wait_for(
            lambda: [j for j in forward_jobs(node, study) if j.attempts >= 2 and j.error],
            what="two failed attempts",
        )[0]
        assert waiting.status in ("queued", "running")
        assert "cannot connect" in waiting.error
        with StoreSCP(tmp_path / "late", aet="PACS2", port=port) as scp:
            job = wait_for(lambda: finished(node, study), what="the job after the peer is up")
            assert job.status == "completed", job
            assert job.attempts >= 3
            assert received_uids(scp) == {sop_uid_of(f) for f in files}


class RefusingSCP:
    """A pynetdicom storage SCP that refuses instances with an odd Instance Number
    (0xA700, out of resources) and can hold a C-STORE until released."""

    def __init__(self, aet: str = "PACS2", hold_at: int = 0) -> None:
        self.received: list[str] = []
        self.hold_at = hold_at
        self.held = threading.Event()
        self.release = threading.Event()
        self.refuse_odd = hold_at == 0
        ae = AE(ae_title=aet)
        ae.supported_contexts = AllStoragePresentationContexts
        self.port = free_port()
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self.on_store)]
        )

    def on_store(self, event: Any) -> int:
        ds = event.dataset
        if self.hold_at and len(self.received) + 1 == self.hold_at and not self.held.is_set():
            self.held.set()
            self.release.wait(60)
        if self.refuse_odd and int(ds.InstanceNumber) % 2:
            return 0xA700
        self.received.append(str(ds.SOPInstanceUID))
        return 0x0000

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()


def test_a_destination_that_refuses_instances_gives_partial_and_failed_with_reasons(
    dcmtk: None, tmp_path: Path
) -> None:
    scp = RefusingSCP()
    try:
        rules = [{"from": "CT01", "to": "PACS2", "settle": 1.0}]
        settings = node_settings(tmp_path, Peer("PACS2", "127.0.0.1", scp.port), rules)
        mixed = study_files(tmp_path, "REFUSED-SOME", 4)
        refused = study_files(tmp_path, "REFUSED-ALL", 1)  # instance number 1
        with Node(settings) as node:
            send(node, "CT01", mixed + refused)
            partial = wait_for(lambda: finished(node, study_of(mixed)), what="partial job")
            failed = wait_for(lambda: finished(node, study_of(refused)), what="failed job")
    finally:
        scp.stop()
    assert partial.status == "partial"
    assert partial.counts == {"total": 4, "done": 2, "failed": 2, "pending": 0}
    assert all("0xA700" in f["reason"] for f in partial.failures)
    assert partial.error.startswith("2 done, 2 failed: PACS2 answered 0xA700")
    assert failed.status == "failed" and failed.counts["failed"] == 1
    assert set(scp.received) == {sop_uid_of(f) for f in mixed[1::2]}


def test_a_node_killed_mid_job_resumes_it_after_restart(
    dcmtk: None, index_url: str, tmp_path: Path
) -> None:
    scp = RefusingSCP(hold_at=3)
    files = study_files(tmp_path, "RESTART", 6)
    study = study_of(files)
    settings = node_settings(
        tmp_path,
        Peer("PACS2", "127.0.0.1", scp.port),
        [{"name": "ct01", "from": "CT01", "to": "PACS2", "settle": 1.0}],
        index_url=index_url,
        job_lease=2.0,
    )
    config = tmp_path / "isthmus.toml"
    config.write_text(
        f'data = "{settings.data}"\nindex_url = "{index_url}"\n'
        f"dicom_port = {settings.dicom_port}\nhttp_port = {settings.http_port}\n"
        f"check_on_start = false\njob_lease = 2.0\njob_retry_base = 0.2\n"
        f'peers = ["PACS2@127.0.0.1:{scp.port}"]\n'
        '[[forward]]\nname = "ct01"\nfrom = "CT01"\nto = "PACS2"\nsettle = 1\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISTHMUS_")}
    first = subprocess.Popen(
        [sys.executable, "-m", "isthmus", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for_port(settings.dicom_port, timeout=60)
        run_ok(
            "storescu", "-aet", "CT01", "-aec", "ISTHMUS", "127.0.0.1",
            str(settings.dicom_port), *map(str, files),
        )  # fmt: skip
        assert scp.held.wait(60), "the job never reached the third instance"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        scp.release.set()
    try:
        with Node(replace(settings, dicom_port=free_port(), http_port=free_port())) as node:
            job = wait_for(lambda: finished(node, study), what="the resumed job")
    finally:
        scp.stop()
    assert job.status == "completed", job
    assert job.counts["done"] == 6
    assert job.attempts == 2
    assert set(scp.received) == {sop_uid_of(f) for f in files}


def test_a_c_move_whose_association_drops_completes_as_a_job(dcmtk: None, tmp_path: Path) -> None:
    scp = RefusingSCP(hold_at=2)
    files = study_files(tmp_path, "MOVE", 5)
    study = study_of(files)
    settings = node_settings(tmp_path, Peer("PACS2", "127.0.0.1", scp.port), [])
    try:
        with Node(settings) as node:
            send(node, "CT01", files)
            ae = AE(ae_title="MOVESCU")
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title="ISTHMUS")
            assert assoc.is_established
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = study
            responses = assoc.send_c_move(
                query, "PACS2", StudyRootQueryRetrieveInformationModelMove
            )
            status, _identifier = next(responses)
            assert status.Status == 0xFF00  # the first sub-operation is done
            assert scp.held.wait(30)
            assoc.abort()  # the requestor goes away in the middle of the move
            scp.release.set()
            job = wait_for(
                lambda: [j for j in node.archive.jobs.search(kind="move") if j.status in FINAL],
                what="the move job",
            )[0]
    finally:
        scp.stop()
    assert job.status == "completed", job
    assert job.label == "MOVESCU" and job.subject == study
    assert set(scp.received) == {sop_uid_of(f) for f in files}
