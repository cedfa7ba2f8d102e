"""GDCM's ``gdcmscu`` (Debian's libgdcm-tools) as a real DICOM SCU, for tests.

Its C-MOVE storage SCP (``--port-scp``) cannot be told which address to bind: GDCM
listens on every interface.  As root, `run` therefore runs a C-MOVE's gdcmscu in a
private network namespace with only loopback (``unshare -n``, as `dcmtk.StoreSCP` does):
there 127.0.0.1:`PEER_INSIDE` leads to the peer's port on this namespace's loopback, and
the SCP's port on this namespace's loopback leads to `SCP_INSIDE` there.  Without root it
runs gdcmscu directly.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence

from isthmus.testing.dcmtk import _CLONE_NEWNET, _Forwarder, _pump, _stop_listening, can_isolate

PEER_INSIDE, SCP_INSIDE = 11112, 11113  # ports inside the namespace


def tool() -> str | None:
    """Path of gdcmscu, None when it is not installed."""
    return shutil.which("gdcmscu")


def run(
    args: Sequence[str], port: int, scp_port: int | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``gdcmscu ARGS 127.0.0.1 PORT`` (plus ``--port-scp`` when `scp_port` is given: where
    the peer reaches its C-MOVE SCP on 127.0.0.1); its exit status and output."""
    gdcmscu = tool()
    if gdcmscu is None:
        raise FileNotFoundError("gdcmscu is not installed (scripts/system-deps.sh)")
    if scp_port is None or not can_isolate():
        scp = ["--port-scp", str(scp_port)] if scp_port is not None else []
        command = [gdcmscu, *args, *scp, "127.0.0.1", str(port)]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    script = 'ip link set lo up && read go && exec "$@"'
    inner = [gdcmscu, *args, "--port-scp", str(SCP_INSIDE), "127.0.0.1", str(PEER_INSIDE)]
    command = ["unshare", "--net", "sh", "-c", script, "gdcmscu", *inner]
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    forwarders: list[_Outbound | _Forwarder] = []
    try:
        netns = _namespace_of(proc.pid, timeout)
        forwarders.append(_Outbound(netns, PEER_INSIDE, port, timeout))
        forwarders.append(_Forwarder(netns, SCP_INSIDE, scp_port))
        out, err = proc.communicate("go\n", timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    finally:
        for forwarder in forwarders:
            forwarder.close()
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _namespace_of(pid: int, timeout: float) -> str:
    """/proc/PID/ns/net once `pid` has left our network namespace (unshare(2) done)."""
    ours = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = f"/proc/{pid}/ns/net"
        if os.readlink(path) != ours:
            return path
        time.sleep(0.01)
    raise TimeoutError("gdcmscu did not get a network namespace of its own")


class _Outbound:
    """Accept on 127.0.0.1:`inner` inside the namespace `netns`; connect each connection
    to 127.0.0.1:`port` here (a socket stays in the namespace it was made in)."""

    def __init__(self, netns: str, inner: int, port: int, timeout: float) -> None:
        self.port = port
        self._listener = _listen_inside(netns, inner, timeout)
        self._closed = False
        threading.Thread(target=self._accept, name="gdcmscu-outbound", daemon=True).start()

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
            threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()

    def close(self) -> None:
        self._closed = True
        _stop_listening(self._listener)


def _listen_inside(netns: str, port: int, timeout: float) -> socket.socket:
    """A socket listening on 127.0.0.1:`port` in `netns`, once its loopback is up."""
    result: dict[str, socket.socket | BaseException] = {}

    def inside() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(netns, os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            deadline = time.monotonic() + timeout
            while True:
                listener = socket.socket()
                try:
                    listener.bind(("127.0.0.1", port))
                    break
                except OSError:  # loopback not up yet
                    listener.close()
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            listener.listen(16)
            result["sock"] = listener
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=inside, daemon=True)  # setns(2) changes this thread only
    thread.start()
    thread.join(timeout + 5)
    error, sock = result.get("error"), result.get("sock")
    if isinstance(error, BaseException):
        raise error
    if not isinstance(sock, socket.socket):
        raise TimeoutError("no listener inside the namespace")
    return sock
