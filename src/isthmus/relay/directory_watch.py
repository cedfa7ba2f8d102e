"""A router's copy of the directory, kept up to date from the NATS KV bucket.

The bridge publishes one entry per site in `relay-directory` (relay/bridge_publish.py);
`DirectoryWatcher` loads the bucket, then follows it (a nats-py KV watch: JetStream
pushes each change as it is written), feeding `Directory.update` / `Directory.remove`.
A revocation thus reaches every router in the time NATS takes to deliver one message,
and sticks: revocation is for good, so a later entry that would undo it is ignored.
Given the bridge's public key, the watcher ignores entries the bridge did not sign
(anyone else who can write to the bucket cannot invent a site or an export).
If the watch fails (the bucket not created yet, an error) or the connection was
re-established (NATS restarted: nats-py's ordered consumer would notice only after
several missed heartbeats, some 20 s), it is started again and the bucket read afresh.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging

from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from isthmus.relay.bridge_publish import BUCKET
from isthmus.relay.crypto import EnvelopeError
from isthmus.relay.directory import Directory, SiteEntry
from isthmus.relay.link import Link, LinkDown
from isthmus.relay.signing import entry_signed_by

log = logging.getLogger(__name__)

IDLE = 1.0  # seconds between checks that the connection was not re-established


class DirectoryWatcher:
    """Follows the bucket on `link`'s loop; `start` returns once it was read whole."""

    def __init__(self, link: Link, directory: Directory, bridge_key: bytes | None = None) -> None:
        """`bridge_key`: the bridge's public directory key (the enrolment file's
        `bridge_key`); entries it did not sign are then ignored."""
        self.link = link
        self.directory = directory
        self.bridge_key = bridge_key
        self._revoked: set[str] = set()
        self._loaded = asyncio.Event()
        self._task: concurrent.futures.Future[None] | None = None
        self._stopping = False
        self._running: asyncio.Task[None] | None = None

    def start(self, timeout: float = 10.0) -> DirectoryWatcher:
        """Start following; wait (at most `timeout` s) for the first full read.

        Raises LinkDown if the bucket could not be read in time (the watch goes on
        trying in the background; `stop()` ends it)."""
        self._task = self.link.spawn(self._follow())
        self.link.call(self._wait_loaded(), timeout=timeout)
        return self

    async def _wait_loaded(self) -> None:
        await self._loaded.wait()

    def stop(self, timeout: float = 5.0) -> None:
        """End the watch (and its JetStream consumer) before the link is closed."""
        self._stopping = True
        if self._task is not None and not self._task.done():
            try:
                self.link.call(self._cancel(), timeout=timeout)
            except LinkDown:
                self._task.cancel()

    async def _cancel(self) -> None:
        task = self._running
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self) -> None:
        self._running = asyncio.current_task()
        delay = 0.2
        while not self._stopping:
            try:
                kv = await self.link.js.key_value(BUCKET)
                await self._watch(kv)
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except BucketNotFoundError:
                log.debug("directory bucket %s not there yet", BUCKET)
            except Exception as exc:
                log.warning("directory watch interrupted (restarting): %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _watch(self, kv: KeyValue) -> None:
        """Read the bucket (removing sites gone from it), then apply changes as they come.

        The read is complete once the entry last written before the watch began has
        arrived (nats-py's "no more pending" marker can come before entries in flight)."""
        reconnects = self.link.nc.stats["reconnects"]
        last = await last_revision(kv)
        watcher = await kv.watchall()
        seen: set[str] | None = set()
        try:
            while not self._stopping:
                try:
                    entry = await watcher.updates(timeout=IDLE)  # type: ignore[no-untyped-call]
                except NatsTimeout:  # no change lately
                    if self.link.nc.stats["reconnects"] != reconnects:
                        return  # a new server (or the same, restarted): watch afresh
                    continue
                if entry is not None:
                    self._apply(entry.key, entry.operation, entry.value)
                    if seen is not None:
                        seen.add(entry.key)
                if seen is not None and (last == 0 or (entry and entry.revision >= last)):
                    self._drop_unseen(seen)
                    seen = None
                    self._loaded.set()
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

    def _apply(self, key: str, operation: str | None, value: bytes | None) -> None:
        if operation is not None or not value:  # DEL or PURGE
            if key not in self._revoked:  # a revoked site stays known as revoked
                self.directory.remove(key)
            return
        try:
            doc = json.loads(value)
            entry = SiteEntry.from_json(doc)
        except (ValueError, KeyError, TypeError, EnvelopeError) as exc:
            log.warning("directory entry %r ignored: %s", key, exc)
            return
        if entry.name != key:
            log.warning("directory entry %r names site %r: ignored", key, entry.name)
        elif self.bridge_key is not None and not entry_signed_by(doc, self.bridge_key):
            log.warning("directory entry %r not signed by the bridge: ignored", key)
        elif not entry.revoked and key in self._revoked:
            log.warning("directory entry %r would undo its revocation: ignored", key)
        else:
            if entry.revoked:
                self._revoked.add(key)
            self.directory.update(entry)

    def _drop_unseen(self, seen: set[str]) -> None:
        for entry in self.directory.sites():
            if entry.name not in seen and entry.name not in self._revoked:
                self.directory.remove(entry.name)


async def last_revision(kv: KeyValue) -> int:
    """The revision (stream sequence) of the last write to the bucket; 0 if none."""
    status = await kv.status()
    return int(status.stream_info.state.last_seq or 0)
