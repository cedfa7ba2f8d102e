"""A transfer's objects through URLs the bridge pre-signs (relay/objects.py's protocol).

A router holds no storage credentials: for each object it asks the bridge for a URL
(relay/bridge_urls.py), valid a few minutes, and PUTs or GETs the object there with
plain HTTP.  URLs are cached until shortly before they expire, and `presign` fetches
many in one bridge call (a transfer's source can ask for the next hundred at once).

Failures are retried with exponential backoff and jitter, for at most `retry_time`
seconds in all (issue 11: "retried with backoff within a bounded time"): connection
errors, timeouts, 5xx answers and 403 (an expired URL: a new one is asked for).  Then
the call raises `ObjectsUnavailable`; a GET of an absent object raises `MissingObject`
at once.  A PUT that returns was answered 200 by the object store: the object is
durable (S3 semantics).  A refusal by the bridge (not a party of the transfer, a
revoked site) is not retried.

The objects themselves go through urllib3, not httpx (which asks the bridge): a
transfer makes one request per instance at each end, and urllib3 spends about half a
millisecond less CPU on each (the relay is CPU-bound on one machine, docs/performance.md).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from isthmus.relay.bridge_client import BridgeClient, BridgeRefused, BridgeUnavailable
from isthmus.relay.objects import MissingObject, ObjectsUnavailable

RETRY_TIME = 30.0
IDLE = 30.0  # seconds of silence from the object store that fail one attempt
CONNECTIONS = 16  # kept open per object store host: the transfers' threads at once
URL_MARGIN = 60.0  # a cached URL is used until this long before it expires
URL_LIFETIME = 300.0  # what the bridge grants (bridge_urls.LIFETIME)
T = TypeVar("T")


class _Retry(Exception):
    """One attempt failed in a way another attempt may fix."""


class PresignedObjects:
    """`TransferObjects` over the bridge's pre-signed URLs (thread-safe)."""

    def __init__(self, client: BridgeClient, *, retry_time: float = RETRY_TIME) -> None:
        self.client = client
        self.retry_time = retry_time
        self._http = urllib3.PoolManager(maxsize=CONNECTIONS, retries=False)
        self._lock = threading.Lock()
        self._urls: dict[tuple[str, str, str], tuple[str, float]] = {}

    def close(self) -> None:
        self._http.clear()

    def presign(self, transfer: str, names: list[str], method: str) -> None:
        """Fetch URLs for many objects in one bridge call (they are then cached)."""
        urls = self.client.urls(transfer, names, method)
        now = time.monotonic()
        until = now + URL_LIFETIME - URL_MARGIN
        with self._lock:
            for key in [k for k, (_url, valid) in self._urls.items() if valid < now]:
                del self._urls[key]  # expired: the cache holds the last few minutes' only
            for name, url in urls.items():
                self._urls[(method, transfer, name)] = (url, until)

    def put(self, transfer: str, name: str, data: bytes) -> None:
        def attempt(deadline: float) -> None:
            response = self._send("PUT", transfer, name, data, deadline)
            if response.status not in (200, 201, 204):
                self._fail("PUT", transfer, name, response)

        self._retrying(f"PUT {transfer}/{name}", attempt)

    def get(self, transfer: str, name: str) -> bytes:
        def attempt(deadline: float) -> bytes:
            response = self._send("GET", transfer, name, None, deadline)
            if response.status == 404:
                raise MissingObject(f"object {transfer}/{name} is not in the object store")
            if response.status != 200:
                self._fail("GET", transfer, name, response)
            return response.data

        return self._retrying(f"GET {transfer}/{name}", attempt)

    def delete_transfer(self, transfer: str) -> None:
        """The bridge lists and removes the transfer's objects (we cannot list)."""

        def attempt(_deadline: float) -> None:
            try:
                self.client.delete_transfer(transfer)
            except BridgeUnavailable as exc:
                raise _Retry(str(exc)) from None
            except BridgeRefused as exc:
                raise ObjectsUnavailable(str(exc)) from None

        self._retrying(f"DELETE {transfer}", attempt)
        with self._lock:
            for key in [k for k in self._urls if k[1] == transfer]:
                del self._urls[key]

    # ----------------------------------------------------------------- inside
    def _url(self, method: str, transfer: str, name: str) -> str:
        with self._lock:
            cached = self._urls.get((method, transfer, name))
        if cached is None or cached[1] < time.monotonic():
            try:
                self.presign(transfer, [name], method)
            except BridgeUnavailable as exc:
                raise _Retry(str(exc)) from None
            except BridgeRefused as exc:
                raise ObjectsUnavailable(str(exc)) from None
            with self._lock:
                cached = self._urls[(method, transfer, name)]
        return cached[0]

    def _send(
        self, method: str, transfer: str, name: str, data: bytes | None, deadline: float
    ) -> urllib3.BaseHTTPResponse:
        """One request, its whole answer read; the read timeout is per read (a silence,
        not the whole transfer), capped by what is left of the retry budget."""
        url = self._url(method, transfer, name)
        left = min(IDLE, max(1.0, deadline - time.monotonic()))
        timeout = urllib3.Timeout(connect=min(5.0, left), read=left)
        try:
            return self._http.request(method, url, body=data, timeout=timeout, redirect=False)
        except Urllib3Error as exc:
            raise _Retry(f"object store not reached: {exc}") from None

    def _fail(
        self, method: str, transfer: str, name: str, response: urllib3.BaseHTTPResponse
    ) -> None:
        """A non-success answer: retry a 403 (expired URL) or a 5xx, refuse the rest."""
        status = response.status
        if status == 403 or status >= 500 or status == 429:
            with self._lock:
                self._urls.pop((method, transfer, name), None)
            raise _Retry(f"object store answered {status}")
        raise ObjectsUnavailable(f"object store answered {status} to {method} {transfer}/{name}")

    def _retrying(self, what: str, attempt: Callable[[float], T]) -> T:
        deadline = time.monotonic() + self.retry_time
        delay = 0.1
        while True:
            try:
                return attempt(deadline)
            except _Retry as exc:
                if time.monotonic() + delay > deadline:
                    raise ObjectsUnavailable(
                        f"{what} failed for {self.retry_time:g} s: {exc}"
                    ) from None
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 5.0)
