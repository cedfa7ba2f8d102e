"""The sharing side of a transfer: serve one study's instances from the archive.

It reads through the archive's API only (`Archive.instances`, `Archive.read_instance`),
announces the manifest, then sends exactly the chunks the receiver asks for, in the order
asked (docs/p2p.md).  It never decides what the receiver lacks: an interrupted transfer
resumes because a receiver asks again only for what it has not stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from isthmus.archive import Archive, InstanceRow
from isthmus.p2p.channel import Channel, ChannelClosed
from isthmus.p2p.protocol import (
    CHUNK_SIZE,
    Entry,
    ProtocolError,
    chunk_frame,
    control,
    first_images_first,
    manifest_messages,
    parse_control,
)

log = logging.getLogger(__name__)
IDLE = 120.0  # seconds without a message from the receiver before the sender gives up
# A test hook: (position, chunk number, data) → the data actually sent.
Tamper = Callable[[int, int, bytes], bytes]


class StudyNotFound(Exception):
    pass


@dataclass
class SendReport:
    study_uid: str
    instances: int = 0
    chunks_sent: int = 0
    bytes_sent: int = 0
    requested: set[int] = field(default_factory=set)  # positions asked for
    complete: bool = False  # the receiver said "done"
    reason: str | None = None


def build_manifest(archive: Archive, study_uid: str) -> tuple[list[Entry], list[InstanceRow]]:
    """Manifest entries (hashing every stored file) and their rows, first images first."""
    rows = archive.instances(study_uid)
    if not rows:
        raise StudyNotFound(f"no study {study_uid} in this archive")
    order = first_images_first([(r.series_instance_uid, r.sop_instance_uid) for r in rows])
    entries, ordered = [], []
    for position, i in enumerate(order):
        row = rows[i]
        digest, size = hashlib.sha256(), 0
        with archive.open_instance(row) as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
                size += len(block)
        entries.append(
            Entry(position, row.sop_instance_uid, row.series_instance_uid, size, digest.hexdigest())
        )
        ordered.append(row)
    return entries, ordered


class Sender:
    """Serve `study_uid` on one channel; `allowed` is asked at most every `check_every`
    seconds, between requests (a revoked share stops the transfer)."""

    def __init__(
        self,
        archive: Archive,
        study_uid: str,
        allowed: Callable[[], bool] | None = None,
        tamper: Tamper | None = None,
        check_every: float = 2.0,
    ) -> None:
        self.archive = archive
        self.study_uid = study_uid
        self.allowed = allowed
        self.tamper = tamper
        self.check_every = check_every
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    async def serve(self, channel: Channel) -> SendReport:
        report = SendReport(self.study_uid)
        try:
            entries, rows = await asyncio.to_thread(build_manifest, self.archive, self.study_uid)
            report.instances = len(entries)
            for message in manifest_messages(self.study_uid, entries):
                await channel.send(message)
            await self._answer(channel, entries, rows, report)
        except (ChannelClosed, TimeoutError, ProtocolError, StudyNotFound, OSError) as exc:
            report.reason = report.reason or str(exc) or type(exc).__name__
            if isinstance(exc, ProtocolError | StudyNotFound):
                await _try_send(channel, control("error", reason=str(exc)))
        # A transfer that ended short is worth a warning: the receiver was left without
        # the study, and the reason is only known here.
        log.log(
            logging.INFO if report.complete else logging.WARNING,
            "p2p: served study %s: %d chunks, %d bytes, complete=%s%s",
            self.study_uid,
            report.chunks_sent,
            report.bytes_sent,
            report.complete,
            f" ({report.reason})" if report.reason else "",
        )
        return report

    async def _answer(
        self, channel: Channel, entries: list[Entry], rows: list[InstanceRow], report: SendReport
    ) -> None:
        checked = time.monotonic()
        while True:
            message = await channel.recv(IDLE)
            if isinstance(message, bytes):
                raise ProtocolError("the receiver sent a binary frame")
            doc = parse_control(message)
            if doc["type"] == "done":
                report.complete = True
                await _try_send(channel, control("bye"))
                return
            if doc["type"] == "error":
                report.reason = f"the receiver stopped: {doc.get('reason')}"
                return
            if doc["type"] != "request":
                raise ProtocolError(f"unexpected message {doc['type']!r}")
            if self.allowed is not None and time.monotonic() - checked >= self.check_every:
                checked = time.monotonic()
                if not await asyncio.to_thread(self.allowed):
                    report.reason = "the share was revoked"
                    await _try_send(channel, control("error", reason="the share link was revoked"))
                    return
            for position, number in _pairs(doc, entries):
                data = await self._chunk(rows[position], position, number)
                if self.tamper is not None:
                    data = self.tamper(position, number, data)
                await channel.send(chunk_frame(position, number, data))
                report.requested.add(position)
                report.chunks_sent += 1
                report.bytes_sent += len(data)

    async def _chunk(self, row: InstanceRow, position: int, number: int) -> bytes:
        data = self._cache.get(position)
        if data is None:
            data = await asyncio.to_thread(self.archive.read_instance, row)
            self._cache[position] = data
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
        return data[number * CHUNK_SIZE : (number + 1) * CHUNK_SIZE]


def _pairs(doc: dict[str, object], entries: list[Entry]) -> list[tuple[int, int]]:
    chunks = doc.get("chunks")
    if not isinstance(chunks, list):
        raise ProtocolError("a request without chunks")
    pairs = []
    for item in chunks:
        if not (
            isinstance(item, list) and len(item) == 2 and all(isinstance(v, int) for v in item)
        ):
            raise ProtocolError("a request names chunks as [position, number]")
        position, number = item
        if not (0 <= position < len(entries) and 0 <= number < entries[position].chunks):
            raise ProtocolError(f"no chunk {number} of instance {position}")
        pairs.append((position, number))
    return pairs


async def _try_send(channel: Channel, message: str) -> None:
    try:
        await channel.send(message)
    except ChannelClosed:
        pass
