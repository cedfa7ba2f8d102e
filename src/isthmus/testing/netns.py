"""Peers that cannot choose their address, run in a private network namespace.

DCMTK's ``storescp`` and GDCM's C-MOVE SCP listen on every interface.  As root, the
tests run them in a namespace of their own with only loopback (``unshare -n``) and join
it to this one by forwarding ports on 127.0.0.1: `Forwarder` from here into the
namespace, `Outbound` from the namespace back here.  setns(2) moves only the calling
thread, so whatever must be made inside (a connection, a listener) is made by a thread
of its own (`inside`); a socket stays in the namespace it was made in.
"""

from __future__ import annotations

import ctypes
import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def can_isolate() -> bool:
    """True when servers can be run in a private network namespace (root + unshare + ip)."""
    return os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("ip"))


def namespace_of(pid: int, timeout: float) -> str:
    """/proc/PID/ns/net once `pid` has left our network namespace (unshare(2) done)."""
    ours = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = f"/proc/{pid}/ns/net"
        if os.readlink(path) != ours:
            return path
        time.sleep(0.01)
    raise TimeoutError(f"process {pid} did not get a network namespace of its own")


def inside(netns: str, make: Callable[[], T], timeout: float = 30) -> T:
    """`make()` run by a thread that has entered the network namespace `netns`."""
    result: dict[str, object] = {}

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(netns, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            result["value"] = make()
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    error = result.get("error")
    if isinstance(error, BaseException):
        raise error
    if "value" not in result:
        raise TimeoutError("nothing was made inside the namespace in time")
    return result["value"]  # type: ignore[return-value]


class Forwarder:
    """Accept on 127.0.0.1:<`port`, or a free one> here; connect each connection to
    127.0.0.1:`inner` in the network namespace `netns`."""

    def __init__(self, netns: str, inner: int, port: int = 0) -> None:
        self.netns = netns
        self.inner = inner
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="netns-forwarder", daemon=True).start()

    def _connect_inside(self) -> socket.socket:
        sock = inside(
            self.netns, lambda: socket.create_connection(("127.0.0.1", self.inner), timeout=5)
        )
        sock.settimeout(None)
        return sock

    def wait_ready(self, proc: subprocess.Popen[bytes], name: str, timeout: float = 30) -> None:
        """Until the server `proc` (`name` in errors) listens inside its namespace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"{name} exited with status {proc.returncode}: {err}")
            try:
                self._connect_inside().close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{name} does not listen in its namespace")

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _addr = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = self._connect_inside()
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open |= {client, upstream}
        pump(client, upstream)
        with self._lock:
            self._open -= {client, upstream}

    def close(self) -> None:
        self._closed = True
        stop_listening(self._listener)
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Outbound:
    """Accept on 127.0.0.1:`inner` inside the namespace `netns`; connect each connection
    to 127.0.0.1:`port` here."""

    def __init__(self, netns: str, inner: int, port: int, timeout: float) -> None:
        self.port = port
        self._listener = inside(netns, lambda: _listen_when_up(inner, timeout), timeout + 5)
        self._closed = False
        threading.Thread(target=self._accept, name="netns-outbound", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _addr = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()

    def close(self) -> None:
        self._closed = True
        stop_listening(self._listener)


def _listen_when_up(port: int, timeout: float) -> socket.socket:
    """A socket listening on 127.0.0.1:`port`, once loopback is up (the namespace's
    process brings it up after it was made)."""
    deadline = time.monotonic() + timeout
    while True:
        listener = socket.socket()
        try:
            listener.bind(("127.0.0.1", port))
            break
        except OSError:
            listener.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    listener.listen(16)
    return listener


def stop_listening(listener: socket.socket) -> None:
    """Close a listening socket, waking the thread blocked in its accept() first: until
    that returns the port stays bound, and the next listener on it would fail."""
    try:
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()


def pump(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    try:
        while True:
            for key, _ in sel.select(timeout=300):
                data = key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)
    except OSError:
        return
    finally:
        sel.close()
        a.close()
        b.close()
