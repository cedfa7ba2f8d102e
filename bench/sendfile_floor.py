"""The floor of a large GET here: the same bytes sent by `sendfile(2)` with no HTTP server.

A thread answers every request on 127.0.0.1 with a fixed header and the files'
contents, one `socket.sendfile` per file (the kernel copies from the page cache to the
socket; no user-space copy, no parsing beyond reading the request's head).  What curl
measures against it is the kernel's and curl's own time for that many bytes: no
server can answer the same bytes faster over this loopback.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from pathlib import Path

from bench import web
from bench.results import Scenario
from isthmus.testing.net import free_port

SYSTEM = "sendfile"


def alternate_with_floor(
    scenario: Scenario,
    urls: dict[str, str],
    accept: str,
    runs: int,
    files: Sequence[Path],
    note: str,
    size_bytes: int | None = None,
) -> None:
    """`web.alternate` over the archives' `urls` and a SendfileServer of `files`, asked
    in turn with them as the system "sendfile"."""
    scenario.measure(SYSTEM, size_bytes=size_bytes, note=note)
    floor = SendfileServer(files)
    try:
        web.alternate(scenario, {**urls, SYSTEM: floor.url}, accept, runs, size_bytes=size_bytes)
    finally:
        floor.close()


class SendfileServer:
    """Serves `files`, concatenated, to every GET at `url` until `close`."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = list(files)
        self.size = sum(f.stat().st_size for f in self.files)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        self._listener = socket.create_server(("127.0.0.1", port))
        self._thread = threading.Thread(target=self._serve, name="sendfile-floor", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            with conn:
                try:
                    self._answer(conn)
                except OSError:
                    pass

    def _answer(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(65536)
            if not chunk:
                return
            head += chunk
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            + f"Content-Length: {self.size}\r\nConnection: close\r\n\r\n".encode()
        )
        for path in self.files:
            with path.open("rb") as fh:
                conn.sendfile(fh)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=10)
