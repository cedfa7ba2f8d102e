"""A running bridge for the relay tests: real NATS, real S3 (SeaweedFS), uvicorn in a thread."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from isthmus.relay.bridge import BridgeServer
from isthmus.relay.bridge_client import BridgeClient
from isthmus.relay.crypto import SiteIdentity
from isthmus.testing.bridge import TemporaryBridge
from isthmus.testing.nats import TemporaryNATS
from isthmus.testing.seaweedfs import TemporarySeaweedFS

WAIT = 10.0  # seconds any test waits for something to propagate, at most


@dataclass
class RunningBridge:
    temporary: TemporaryBridge
    nats: TemporaryNATS

    @property
    def server(self) -> BridgeServer:
        assert self.temporary.server is not None
        return self.temporary.server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def add_site(self, name: str) -> str:
        return self.server.bridge.state.add_site(name)

    def enrolled_client(self, name: str) -> BridgeClient:
        """A new site `name`, enrolled with fresh keys."""
        client = BridgeClient(self.url, SiteIdentity.create(name))
        client.enrol(self.add_site(name))
        return client


@pytest.fixture(scope="module", name="nats_server")
def nats_server_fixture() -> Iterator[TemporaryNATS]:
    server = TemporaryNATS().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(name="bridge")
def bridge_fixture(
    nats_server: TemporaryNATS, seaweedfs: TemporarySeaweedFS
) -> Iterator[RunningBridge]:
    """A bridge of its own (database, bucket prefix, KV bucket emptied) per test."""
    _empty_directory(nats_server.url)
    with TemporaryBridge(nats_server.url, seaweedfs.url()) as temporary:
        yield RunningBridge(temporary, nats_server)


def _empty_directory(url: str) -> None:
    import asyncio

    import nats

    async def purge() -> None:
        nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            try:
                await nc.jetstream().delete_key_value("relay-directory")
            except Exception:  # noqa: BLE001 - not there yet
                pass
        finally:
            await nc.close()

    asyncio.run(purge())


def eventually(check: Callable[[], object], timeout: float = WAIT) -> object:
    """Poll `check` until it returns something true (bounded; no timing asserted)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(0.05)


def kv_entry(url: str, site: str) -> dict[str, object] | None:
    """The site's value in the `relay-directory` bucket now (None if absent)."""
    import asyncio
    import json

    import nats

    async def read() -> dict[str, object] | None:
        nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            try:
                kv = await nc.jetstream().key_value("relay-directory")
                entry = await kv.get(site)
            except Exception:  # noqa: BLE001 - no such bucket or key
                return None
            return json.loads(entry.value) if entry.value else None
        finally:
            await nc.close()

    return asyncio.run(read())
