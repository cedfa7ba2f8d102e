"""The fetching side of a transfer: pull one study into the archive, verified.

The receiver drives: it reads the manifest, asks the archive which instances it already
holds, and requests only the chunks of the others, a window at a time, first images
first.  Each instance is checked against its manifest size and SHA-256 before
`Archive.store` (the same ingest as STOW-RS and C-STORE); one that does not match is
requested again (at most RETRIES times).  Silence beyond `timeout` re-requests what is
outstanding; a transfer stopped half way loses only the instances not yet stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from isthmus.archive import Archive
from isthmus.p2p.channel import Channel
from isthmus.p2p.protocol import (
    CHUNK_SIZE,
    VERSION,
    Entry,
    ProtocolError,
    control,
    parse_chunk,
    parse_control,
)

log = logging.getLogger(__name__)
# Chunks requested and not yet received (≤ 8 MiB in flight).  It must stay well under
# aiolibdatachannel's receive queue (1024 messages, oldest dropped when full).
WINDOW = 32
RETRIES = 3
STORES = 4  # instances stored at once


class TransferFailed(Exception):
    pass


@dataclass
class Progress:
    study_uid: str = ""
    instances: int = 0  # in the manifest
    already: int = 0  # held before this transfer (not requested)
    stored: int = 0  # stored by this transfer
    bytes_total: int = 0
    bytes_received: int = 0
    refetched: int = 0  # instances requested again after a failed verification
    complete: bool = False
    failed: list[str] = field(default_factory=list)  # SOP Instance UIDs the archive refused


@dataclass
class _Pending:
    entry: Entry
    parts: dict[int, bytes] = field(default_factory=dict)
    attempts: int = 1


class Receiver:
    def __init__(
        self,
        archive: Archive,
        timeout: float = 30.0,
        on_progress: Callable[[Progress], None] | None = None,
        window: int = WINDOW,
    ) -> None:
        self.archive = archive
        self.timeout = timeout
        self.on_progress = on_progress
        self.window = window
        # Verified instances being stored while the next ones arrive (Archive.store is
        # thread-safe: every door stores concurrently).
        self._slots = asyncio.Semaphore(STORES)
        self._stores: set[asyncio.Task[None]] = set()
        self.progress = Progress()

    async def run(self, channel: Channel) -> Progress:
        entries = await self._manifest(channel)
        held = await asyncio.to_thread(self._held, [e.sop_instance_uid for e in entries])
        todo = [_Pending(e) for e in entries if e.sop_instance_uid not in held]
        p = self.progress
        p.instances, p.already = len(entries), len(entries) - len(todo)
        p.bytes_total = sum(e.size for e in entries)
        self._tell()
        try:
            await self._fetch(channel, todo)
        finally:  # what was verified is stored (durably) before "done" or a failure
            await asyncio.gather(*self._stores)
        p.complete = not p.failed
        await channel.send(control("done", stored=p.stored, already=p.already))
        try:
            await channel.recv(5)  # "bye"; its absence changes nothing: all is stored
        except Exception:
            pass
        self._tell()
        return p

    async def _manifest(self, channel: Channel) -> list[Entry]:
        entries: list[Entry] = []
        total = None
        while total is None or len(entries) < total:
            doc = self._control(await channel.recv(self.timeout))
            if doc["type"] != "manifest":
                raise ProtocolError(f"expected the manifest, got {doc['type']!r}")
            if doc.get("version") != VERSION or doc.get("chunk_size") != CHUNK_SIZE:
                raise ProtocolError(
                    f"unsupported protocol version {doc.get('version')} / chunk size"
                )
            total = int(doc["total"])
            self.progress.study_uid = str(doc["study"])
            entries += [Entry.from_json(item) for item in doc["instances"]]
        if [e.position for e in entries] != list(range(total)):
            raise ProtocolError("manifest positions are not 0…n-1")
        return entries

    def _control(self, message: bytes | str) -> dict[str, Any]:
        if isinstance(message, bytes):
            raise ProtocolError("a chunk before the manifest")
        doc = parse_control(message)
        if doc["type"] == "error":
            raise TransferFailed(f"the sharing node stopped: {doc.get('reason')}")
        return doc

    def _held(self, uids: list[str]) -> set[str]:
        return {r.sop_instance_uid for r in self.archive.instances(sop_uid=uids)} if uids else set()

    async def _fetch(self, channel: Channel, todo: list[_Pending]) -> None:
        wanted = [(t.entry.position, n) for t in todo for n in range(t.entry.chunks)]
        pending = {t.entry.position: t for t in todo}
        outstanding: set[tuple[int, int]] = set()
        silent = 0
        while pending:
            free = self.window - len(outstanding)
            if free > 0 and wanted:
                batch, wanted = wanted[:free], wanted[free:]
                outstanding |= set(batch)
                await channel.send(control("request", chunks=[list(b) for b in batch]))
            try:
                message = await channel.recv(self.timeout)
            except TimeoutError:
                silent += 1
                if silent > RETRIES:
                    raise TransferFailed(f"no chunk for {self.timeout * silent:g} s") from None
                wanted, outstanding = sorted(outstanding) + wanted, set()
                continue
            silent = 0
            if isinstance(message, str):
                self._control(message)
                continue
            position, number, data = parse_chunk(message)
            if (position, number) not in outstanding:
                continue  # a duplicate after a re-request
            outstanding.discard((position, number))
            item = pending[position]
            item.parts[number] = data
            self.progress.bytes_received += len(data)
            if len(item.parts) == item.entry.chunks:
                if await self._complete(item):
                    del pending[position]
                else:
                    wanted = [(position, n) for n in range(item.entry.chunks)] + wanted

    async def _complete(self, item: _Pending) -> bool:
        """Verify and store one instance; False if it must be fetched again."""
        entry = item.entry
        data = b"".join(item.parts[n] for n in range(entry.chunks))
        item.parts.clear()
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            if item.attempts > RETRIES:
                raise TransferFailed(
                    f"instance {entry.sop_instance_uid} failed verification {item.attempts} times"
                )
            item.attempts += 1
            self.progress.refetched += 1
            log.warning(
                "p2p: instance %s failed verification; fetching it again", entry.sop_instance_uid
            )
            return False
        await self._slots.acquire()  # at most STORES instances wait for the disk
        task = asyncio.create_task(self._store(entry, data))
        self._stores.add(task)
        task.add_done_callback(self._stores.discard)
        return True

    async def _store(self, entry: Entry, data: bytes) -> None:
        try:
            # The instance the manifest entry names, of the manifest's study: a sharing
            # node cannot slip an instance into another study the fetching node holds.
            result = await asyncio.to_thread(
                self.archive.store,
                data,
                expected=(None, entry.sop_instance_uid),
                expected_study=self.progress.study_uid,
            )
        finally:
            self._slots.release()
        if result.ok:
            self.progress.stored += 1
        else:
            self.progress.failed.append(entry.sop_instance_uid)
            log.warning("p2p: the archive refused %s: %s", entry.sop_instance_uid, result.reason)
        self._tell()

    def _tell(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)
