"""Loopback helpers for tests and benchmarks: free ports, waiting for a listener."""

from __future__ import annotations

import random
import socket
import threading
import time

# Ports are chosen below the kernel's ephemeral range (the ports of outgoing
# connections, and of bind(0)), so that no connection takes one between the choice and
# the server's bind, and never twice in one process: two servers of a test once got
# the same port from bind(0), one after the other had let it go, and HTTP requests
# reached a DICOM port.
_LOWEST = 10_000
_handed_out: set[int] = set()
_lock = threading.Lock()


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the ephemeral
    range, and not handed out before by this process."""
    top = _ephemeral_start()
    with _lock:
        for _ in range(1000):
            if top > _LOWEST + 1000:
                port = random.randrange(_LOWEST, top)
            else:  # an unusual range: the kernel's choice, still never twice
                port = _kernel_port()
            if port in _handed_out or not _bindable(port):
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1")


def _kernel_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")
