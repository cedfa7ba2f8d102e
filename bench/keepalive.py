"""The client that times small DICOMweb requests: one keep-alive HTTP/1.1 connection.

Built on the standard library's `http.client`, which urllib3 and requests (and so
`dicomweb-client`) build on.  It replaced httpx for the per-request figures: httpx
parses responses in pure Python (h11, then its own models), which added about
0.5-1 ms to every request of every server measured, as much as Isthmus's whole
answer to a small query (docs/performance.md, "The measuring client").
"""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Callable
from typing import Protocol

import httpx


class Client(Protocol):
    """What the benchmarks time a request with."""

    def get(self, url: str, accept: str) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


class KeepAlive:
    """GET requests over one connection to one server, reopened if the server closed it."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._netloc = ""

    def get(self, url: str, accept: str) -> tuple[int, bytes]:
        """(status, body) of GET `url`; the whole body is read before returning."""
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):
            conn = self._connection(parts)
            try:
                conn.request("GET", target, headers={"Accept": accept})
                rsp = conn.getresponse()
                body = rsp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
                continue
            if rsp.will_close:
                self.close()
            return rsp.status, body
        raise AssertionError("unreachable")

    def _connection(self, parts: urllib.parse.SplitResult) -> http.client.HTTPConnection:
        if self._conn is None or parts.netloc != self._netloc:
            self.close()
            if parts.scheme != "http" or parts.hostname is None:
                raise ValueError(f"{parts.geturl()}: only http:// URLs are measured")
            self._conn = http.client.HTTPConnection(
                parts.hostname, parts.port or 80, timeout=self.timeout
            )
            self._netloc = parts.netloc
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ThroughHttpx:
    """The same interface over httpx, the client these figures were first taken with
    (`python -m bench.http_door --client httpx`: to compare the two)."""

    def __init__(self, timeout: float = 60.0) -> None:
        self._client = httpx.Client(timeout=timeout)

    def get(self, url: str, accept: str) -> tuple[int, bytes]:
        rsp = self._client.get(url, headers={"Accept": accept})
        return rsp.status_code, rsp.content

    def close(self) -> None:
        self._client.close()


CLIENTS: dict[str, Callable[[float], Client]] = {
    "keepalive": KeepAlive,
    "httpx": ThroughHttpx,
}
