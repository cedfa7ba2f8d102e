"""The bridge publishes the directory to the NATS KV bucket `relay-directory`.

The database is the truth (relay/bridge_state.py); the bucket is its published copy,
one key per enrolled site, value `SiteEntry.to_json()` with the bridge's signature
(relay/signing.py; docs/relay.md, "Directory").
`DirectoryPublisher.sync` compares the database with what this process last put and
puts what differs (and deletes keys of sites the database no longer has).  The bridge
calls it after each change it makes and, as a backstop, every POLL seconds: so a
revocation written by `isthmus bridge revoke-site` (another process), or by another
bridge process on the same PostgreSQL, is published within POLL seconds even if that
process could not reach NATS itself, and a bucket lost with a NATS server is filled
again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import nats
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from isthmus.relay.directory import SiteEntry
from isthmus.relay.signing import sign_entry

log = logging.getLogger(__name__)

BUCKET = "relay-directory"
HISTORY = 5  # a few past values per site, for an administrator's inspection
POLL = 1.0
RECONCILE = 10.0
NATS_TIMEOUT = 5.0


def entry_value(entry: SiteEntry, key: Ed25519PrivateKey) -> bytes:
    """The KV value of a site: its `SiteEntry.to_json()` signed by the bridge."""
    doc = sign_entry(key, entry.to_json())
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


async def directory_bucket(nc: Client) -> KeyValue:
    """The bucket, created (file storage) if it does not exist yet."""
    js = nc.jetstream(timeout=NATS_TIMEOUT)
    try:
        return await js.key_value(BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=BUCKET, history=HISTORY)


async def connect(url: str, name: str) -> Client:
    """A NATS connection that reconnects forever (the bridge outlives NATS outages)."""
    return await nats.connect(
        url,
        name=name,
        connect_timeout=NATS_TIMEOUT,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
    )


class DirectoryPublisher:
    """Keeps the bucket equal to `entries()` (the database); one per bridge process."""

    def __init__(
        self, nc: Client, entries: Callable[[], dict[str, SiteEntry]], key: Ed25519PrivateKey
    ) -> None:
        self.nc = nc
        self._entries = entries
        self._key = key
        self._kv: KeyValue | None = None
        self._published: dict[str, bytes] | None = None  # None: compare with the bucket
        self._reconnects = nc.stats["reconnects"]
        self._lock = asyncio.Lock()

    async def sync(self) -> int:
        """Publish what changed since the last sync; returns the number of keys written.

        After a reconnection (NATS restarted, perhaps empty) or a failure, the bucket
        is opened (or created) again and compared whole with the database."""
        async with self._lock:
            if self.nc.stats["reconnects"] != self._reconnects:
                self._reconnects = self.nc.stats["reconnects"]
                self._kv, self._published = None, None
            wanted = {
                name: entry_value(entry, self._key)
                for name, entry in (await asyncio.to_thread(self._entries)).items()
            }
            try:
                return await self._publish(wanted)
            except BaseException:
                self._kv, self._published = None, None  # unknown now: compare next time
                raise

    async def _publish(self, wanted: dict[str, bytes]) -> int:
        if self._kv is None:
            self._kv = await asyncio.wait_for(directory_bucket(self.nc), NATS_TIMEOUT)
        kv = self._kv
        known = self._published if self._published is not None else await self._read(kv)
        written = 0
        for name, value in wanted.items():
            if known.get(name) != value:
                await asyncio.wait_for(kv.put(name, value), NATS_TIMEOUT)
                written += 1
        for name in set(known) - set(wanted):
            await asyncio.wait_for(kv.delete(name), NATS_TIMEOUT)
            written += 1
        self._published = wanted
        return written

    @staticmethod
    async def _read(kv: KeyValue) -> dict[str, bytes]:
        """What the bucket holds now (at start, and after a failure or a reconnection)."""
        out: dict[str, bytes] = {}
        status = await kv.status()
        last = int(status.stream_info.state.last_seq or 0)
        if last == 0:
            return out
        watcher = await kv.watchall()
        try:
            while True:
                entry = await watcher.updates(timeout=NATS_TIMEOUT)  # type: ignore[no-untyped-call]
                if entry is None:
                    continue
                if entry.operation is None and entry.value is not None:
                    out[entry.key] = bytes(entry.value)
                else:
                    out.pop(entry.key, None)
                if entry.revision is not None and entry.revision >= last:
                    return out
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

    async def run(
        self, stop: asyncio.Event, poll: float = POLL, reconcile: float = RECONCILE
    ) -> None:
        """Sync every `poll` seconds until `stop` is set; NATS outages are logged.

        Every `reconcile` seconds the bucket itself is read and compared: a value someone
        else wrote there (an old entry replayed) is overwritten within that time."""
        failing = False
        loop = asyncio.get_running_loop()
        reconciled = loop.time()
        while not stop.is_set():
            if loop.time() - reconciled >= reconcile:
                self._published, reconciled = None, loop.time()
            try:
                await self.sync()
                if failing:
                    log.info("directory published again")
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("cannot publish the directory to NATS (will retry): %s", exc)
                failing = True
            try:
                await asyncio.wait_for(stop.wait(), poll)
            except TimeoutError:
                pass


async def publish_once(
    url: str, entry: SiteEntry, key: Ed25519PrivateKey, timeout: float = NATS_TIMEOUT
) -> None:
    """Put one site's entry in the bucket now (revoke-site; raises if NATS is away)."""
    nc = await asyncio.wait_for(
        nats.connect(
            url,
            name="isthmus-bridge-cli",
            connect_timeout=timeout,
            max_reconnect_attempts=0,
            allow_reconnect=False,
        ),
        timeout + 1,
    )
    try:
        kv = await asyncio.wait_for(directory_bucket(nc), timeout)
        await asyncio.wait_for(kv.put(entry.name, entry_value(entry, key)), timeout)
    finally:
        await nc.close()
