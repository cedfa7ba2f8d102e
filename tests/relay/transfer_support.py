"""Two sites, A (the originator and source) and B (the destination), for transfer tests:
their identities, hand-filled directories, NATS links, a bucket prefix and an index."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmwrite
from pydicom.dataset import Dataset

from isthmus.archive import Archive
from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory import Directory, SiteEntry
from isthmus.relay.link import Link
from isthmus.relay.objects_s3 import S3Objects
from isthmus.relay.transfer import (
    Announcement,
    Limits,
    Progress,
    ProgressListener,
    TransferReceiver,
    TransferSender,
    progress_subject,
)
from isthmus.testing.generate import StudySpec, study


@dataclass
class Instance:
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    data: bytes


def ct_series(count: int = 30, size: int = 512) -> list[Instance]:
    """A CT series of `count` instances of size x size pixels, as Part 10 bytes."""
    spec = StudySpec(
        patient_name="QUOKKA^ZEDEKIAH",
        patient_id="PID-QX-7731",
        instances_per_series=count,
        rows=size,
        columns=size,
    )
    out = []
    for ds in study(spec):
        out.append(
            Instance(ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID, part10(ds))
        )
    return out


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


class Collector:
    """A `deliver` that keeps what it is given and answers `status`."""

    def __init__(self, status: int = 0x0000) -> None:
        self.status = status
        self.delivered: list[tuple[Announcement, bytes]] = []
        self.lock = threading.Lock()
        self.reached = threading.Event()
        self.stop_after: int | None = None

    def __call__(self, announcement: Announcement, data: bytes) -> int:
        with self.lock:
            self.delivered.append((announcement, data))
            if self.stop_after is not None and len(self.delivered) >= self.stop_after:
                self.reached.set()
        return self.status

    def uids(self) -> list[str]:
        return [a.sop_instance_uid for a, _ in self.delivered]


@dataclass
class Federation:
    """Sites A and B on one NATS server and one bucket prefix; B keeps an index."""

    nats_url: str
    blob_url: str
    tmp: Path
    a: SiteIdentity = field(default_factory=lambda: SiteIdentity.create("A"))
    b: SiteIdentity = field(default_factory=lambda: SiteIdentity.create("B"))
    links: list[Link] = field(default_factory=list)
    receivers: list[TransferReceiver] = field(default_factory=list)
    archive: Archive | None = None

    def __post_init__(self) -> None:
        self.dir_a, self.dir_b = self.directory("A"), self.directory("B")
        self.objects = S3Objects(self.blob_url)
        self.link_a = self.link("A")
        self.link_b = self.link("B")

    def directory(self, own: str) -> Directory:
        directory = Directory(own)
        for site in (self.a, self.b):
            directory.update(SiteEntry(site.name, site.keys))
        return directory

    def link(self, name: str) -> Link:
        link = Link(self.nats_url, name=f"site-{name}").connect()
        self.links.append(link)
        return link

    def state(self, index_url: str | None = None):
        if self.archive is None:
            url = index_url or f"sqlite:///{self.tmp / 'b.sqlite'}"
            self.archive = Archive(url, f"file://{self.tmp / 'blobs'}")
        return self.archive.relay_transfers

    def sender(self, subject: str, timeout: float = 10.0, **kwargs: Any) -> TransferSender:
        return TransferSender(
            self.link_a,
            self.a,
            self.dir_a,
            self.objects,
            destination_site="B",
            destination_aet="STORESCP",
            origin={"site": "A", "subject": subject},
            timeout=timeout,
            **kwargs,
        )

    def receiver(
        self, deliver: Collector, limits: Limits | None = None, link: Link | None = None
    ) -> TransferReceiver:
        receiver = TransferReceiver(
            link or self.link_b,
            self.b,
            self.dir_b,
            self.objects,
            state=self.state(),
            deliver=deliver,
            limits=limits or Limits(ack_wait=5.0, manifest_wait=10.0, poll=0.5),
        )
        self.receivers.append(receiver)
        return receiver.start()

    def listener(self) -> ProgressListener:
        return ProgressListener(
            self.link_a, self.a, self.dir_a, progress_subject("A"), from_site="B"
        )

    def close(self) -> None:
        for receiver in self.receivers:
            receiver.stop()
        for link in self.links:
            link.close()
        if self.archive is not None:
            self.archive.close()


def send_all(sender: TransferSender, instances: list[Instance], status: int = 0) -> None:
    for item in instances:
        sender.add(item.sop_class_uid, item.sop_instance_uid, item.transfer_syntax, item.data)
    sender.finish(status)


def final_report(
    listener: ProgressListener, idle_timeout: float = 60.0
) -> tuple[Progress, list[Progress]]:
    reports = list(listener.reports(idle_timeout))
    return reports[-1], reports[:-1]


def wait_until(predicate, timeout: float = 30.0) -> None:
    """Poll `predicate` (bounded); AssertionError when it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@contextmanager
def federation(nats_url: str, blob_url: str, tmp: Path) -> Iterator[Federation]:
    fed = Federation(nats_url, blob_url, tmp)
    try:
        yield fed
    finally:
        fed.close()
