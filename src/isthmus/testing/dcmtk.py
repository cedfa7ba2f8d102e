"""DCMTK's command-line tools as real DICOM peers, for tests and benchmarks.

The virtual environment also holds pynetdicom's example apps under the same names
(``storescu``, ``findscu``…), so tools are looked up as native executables only.

DCMTK's ``storescp`` cannot be told which address to bind (it listens on every
interface; docs/performance.md, "Method").  `StoreSCP` therefore runs it, as root, in a private network
namespace with only loopback (``unshare -n``), and forwards a free port on
127.0.0.1 of this namespace to it; without root it falls back to running it
directly on a free port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from isthmus.testing.net import free_port
from isthmus.testing.netns import Forwarder, can_isolate

TOOLS = ("echoscu", "storescu", "findscu", "movescu", "getscu", "storescp", "dcmsend")
_SEARCH = ("/usr/bin", "/usr/local/bin", "/bin")


class DCMTKMissing(RuntimeError):
    """A DCMTK tool is not installed (``scripts/system-deps.sh`` installs them)."""


def tool(name: str) -> str:
    """Path of DCMTK's `name` (a native executable, not a Python script of that name)."""
    dirs = os.environ.get("PATH", "").split(os.pathsep) + list(_SEARCH)
    for folder in dict.fromkeys(dirs):
        path = Path(folder, name)
        try:
            with open(path, "rb") as fh:
                if fh.read(4) == b"\x7fELF" and os.access(path, os.X_OK):
                    return str(path)
        except OSError:
            continue
    raise DCMTKMissing(f"DCMTK tool {name!r} not found")


def missing_tools() -> list[str]:
    out = []
    for name in TOOLS:
        try:
            tool(name)
        except DCMTKMissing:
            out.append(name)
    return out


def dcmtk_env() -> dict[str, str]:
    """Environment for DCMTK tools and Orthanc (which uses DCMTK's network code).

    DCMTK 3.6.7 leaves Nagle's algorithm on unless TCP_NODELAY is set to a non-zero
    value in the environment (dcmnet/libsrc/dul.cc and dulfsm.cc; DCMTK's
    docs/envvars.txt); with it on, 271 CT images take 15 s on loopback instead of
    under 1 s, and each small C-GET waits 80 ms (docs/performance.md, "Method").
    """
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


def run(
    name: str, *args: str, timeout: float = 120, cwd: str | os.PathLike[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool to completion; output captured as text, exit status not checked."""
    return subprocess.run(
        [tool(name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=dcmtk_env(),
    )


class StoreSCP:
    """DCMTK ``storescp`` writing what it receives, byte for byte, into `folder`.

    Reachable at 127.0.0.1:`port` as AE `aet`.  Use as a context manager.
    """

    def __init__(
        self, folder: Path, aet: str = "STORESCP", extra: Sequence[str] = (), port: int = 0
    ) -> None:
        """`port`: where to be reachable (0: a free one), e.g. a port a peer is
        configured with before the server comes up."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.aet = aet
        self.extra = list(extra)
        self.port = port
        self.isolated = can_isolate()
        self._proc: subprocess.Popen[bytes] | None = None
        self._forwarder: Forwarder | None = None

    def start(self) -> StoreSCP:
        inner = 11112 if self.isolated else (self.port or free_port())
        command = [
            tool("storescp"),
            "--aetitle",
            self.aet,
            "--output-directory",
            str(self.folder),
            "--bit-preserving",
            "--promiscuous",
            *self.extra,
            str(inner),
        ]
        if self.isolated:
            script = 'ip link set lo up && exec "$@"'
            command = ["unshare", "--net", "sh", "-c", script, "storescp", *command]
        self._proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dcmtk_env()
        )
        try:
            if self.isolated:
                self._forwarder = Forwarder(f"/proc/{self._proc.pid}/ns/net", inner, self.port)
                self._forwarder.wait_ready(self._proc, "storescp")
                self.port = self._forwarder.port
            else:
                self.port = inner
                _wait_listening(inner, self._proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            if self._proc.stderr is not None:
                self._proc.stderr.close()
            self._proc = None

    def received(self) -> list[Path]:
        """Files written so far."""
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def __enter__(self) -> StoreSCP:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"storescp exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"storescp does not listen on port {port}")


class QRSCP:
    """DCMTK's `dcmqrscp`, a PACS: AE titles `aets` (a database each), the C-MOVE
    destinations `destinations` (AE title → port on 127.0.0.1, set until `start()`), and
    `strict` AE titles that accept only a calling AE title nobody uses (so they reject).

    dcmqrscp cannot choose its address: it listens on every interface of the machine's
    network namespace, on a free port, for the length of a test."""

    def __init__(
        self,
        folder: Path,
        aets: Sequence[str],
        destinations: dict[str, int] | None = None,
        strict: Sequence[str] = (),
    ) -> None:
        self.folder = Path(folder)
        self.aets = list(aets)
        self.destinations = dict(destinations or {})
        self.strict = tuple(strict)
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def aet(self) -> str:
        return self.aets[0]

    def _config(self) -> Path:
        lines = [f"NetworkTCPPort = {self.port}", "MaxPDUSize = 16384", "MaxAssociations = 16"]
        lines += ["HostTable BEGIN", "nobody = (NOBODY, 127.0.0.1, 9)"]
        lines += [f"{aet} = ({aet}, 127.0.0.1, {port})" for aet, port in self.destinations.items()]
        lines += ["HostTable END", "VendorTable BEGIN", "VendorTable END", "AETable BEGIN"]
        for aet in (*self.aets, *self.strict):
            (self.folder / aet).mkdir(parents=True, exist_ok=True)
            peers = "nobody" if aet in self.strict else "ANY"
            lines.append(f"{aet} {self.folder / aet} RW (200, 1024mb) {peers}")
        lines.append("AETable END")
        config = self.folder / "dcmqrscp.cfg"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> QRSCP:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "dcmqrscp.log", "ab")  # noqa: SIM115 - the child keeps it
        self._proc = subprocess.Popen(
            [tool("dcmqrscp"), "-c", str(self._config()), str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dcmtk_env(),
        )
        log.close()
        try:
            _wait_listening(self.port, self._proc)
        except BaseException:
            self.stop()
            raise
        return self

    def load(self, files: Sequence[Path], aet: str | None = None) -> None:
        """Store `files` straight into the PACS (AE `aet`, default the first) with storescu."""
        done = run(
            "storescu", "-aec", aet or self.aet, "127.0.0.1", str(self.port), *map(str, files)
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None
