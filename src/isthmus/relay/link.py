"""The router's connection to NATS, on an event loop of its own.

The DICOM side of a node is threaded (one thread per association, node.router); nats-py
is asyncio.  `Link` runs one event loop in a daemon thread, owns the NATS connection
(reconnecting forever, as nats-py does) and lets any thread run a coroutine there with
`call` (wait for the result, bounded) or `spawn` (fire and forget).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

log = logging.getLogger(__name__)
T = TypeVar("T")


class LinkDown(ConnectionError):
    """NATS cannot be reached (or did not answer in time)."""


class Link:
    """One NATS connection on a private event loop; `connect()` before use."""

    def __init__(self, url: str, *, name: str, token: str | None = None) -> None:
        self.url = url
        self.name = name
        self.token = token
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"nats-{name}", daemon=True)
        self._thread.start()
        self._nc: Client | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def connect(self, timeout: float = 10.0) -> Link:
        self.call(self._connect(timeout), timeout=timeout + 5)
        return self

    async def _connect(self, timeout: float) -> None:
        options: dict[str, Any] = {
            "name": self.name,
            "connect_timeout": min(timeout, 5.0),
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "allow_reconnect": True,
        }
        if self.token:
            options["token"] = self.token
        self._nc = await nats.connect(self.url, **options)

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise LinkDown("not connected to NATS")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream()

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `coro` on the link's loop and wait for it, at most `timeout` seconds."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done():  # the coroutine's own timeout (nats-py's), not ours
                raise
            future.cancel()
            raise LinkDown(f"NATS did not answer within {timeout:g} s") from None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        if self._nc is not None:
            try:
                self.call(self._nc.drain(), timeout=5)
            except Exception:  # closing: whatever state the connection is in
                log.debug("NATS drain failed", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
