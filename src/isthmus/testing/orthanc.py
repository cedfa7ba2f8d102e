"""Orthanc (Debian's package) as a real peer: its JSON configuration, a throw-away
server on loopback, and a small client of its REST API.

The benchmarks (bench/systems.py) and the interop tests (tests/dimse/test_orthanc_peer.py,
tests/web/test_orthanc_dicomweb.py) start it with the same configuration: Debian's
defaults but for folders, ports, AE title, no remote access and no authentication
(loopback only), the DICOMweb plugin, and the peers each caller names.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from isthmus.testing.dcmtk import dcmtk_env
from isthmus.testing.net import free_port, wait_for_port
from isthmus.testing.processes import stop

ORTHANC_BIN = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def installed() -> bool:
    """Orthanc is there (scripts/system-deps.sh installs it, and its DICOMweb plugin)."""
    return ORTHANC_BIN.is_file()


def config(
    storage: Path,
    dicom_port: int,
    http_port: int,
    aet: str = "ORTHANC",
    modalities: Mapping[str, Any] | None = None,
    dicomweb_servers: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Orthanc's configuration: `modalities` is its DicomModalities (name → [AET, host,
    port] or an object), `dicomweb_servers` the DICOMweb plugin's Servers (name → [URL]);
    `extra` top-level options on top (e.g. DicomScuTimeout)."""
    dicomweb: dict[str, Any] = {
        "Enable": True,
        "Root": "/dicom-web/",
        "EnableWado": True,
        "WadoRoot": "/wado",
        "Host": "127.0.0.1",
        "Ssl": False,
    }
    if dicomweb_servers:
        dicomweb["Servers"] = dict(dicomweb_servers)
    return {
        "Name": "isthmus-peer",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": dicomweb,
        "DicomModalities": dict(modalities or {}),
        **extra,
    }


class OrthancError(RuntimeError):
    """Orthanc answered a REST call with an HTTP error; the message holds its answer."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"Orthanc answered {status}: {body[:2000]}")
        self.status = status
        self.body = body


class TemporaryOrthanc:
    """Orthanc on 127.0.0.1 (free DICOM and HTTP ports) in a temporary folder, removed
    by `close()`.  Use as a context manager; `get`/`post` call its REST API."""

    def __init__(
        self,
        aet: str = "ORTHANC",
        modalities: Mapping[str, Any] | None = None,
        dicomweb_servers: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
        **extra: Any,
    ) -> None:
        """`timeout`: seconds each REST call, and Orthanc's own DICOM and HTTP client
        calls (DicomScuTimeout, HttpTimeout), may take."""
        self.aet = aet
        self.dir = Path(tempfile.mkdtemp(prefix="isthmus-orthanc-"))
        self.dicom_port, self.http_port = free_port(), free_port()
        self.timeout = timeout
        settings = {"DicomScuTimeout": int(timeout), "HttpTimeout": int(timeout), **extra}
        self.config = config(
            self.dir / "storage",
            self.dicom_port,
            self.http_port,
            aet,
            modalities,
            dicomweb_servers,
            **settings,
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log(self) -> str:
        try:
            return (self.dir / "orthanc.log").read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 60.0) -> TemporaryOrthanc:
        if not DICOMWEB_PLUGIN.is_file():
            raise RuntimeError(f"{DICOMWEB_PLUGIN} is missing (package orthanc-dicomweb)")
        path = self.dir / "orthanc.json"
        path.write_text(json.dumps(self.config, indent=1))
        log = open(self.dir / "orthanc.log", "ab")  # noqa: SIM115 - the child keeps it
        self._proc = subprocess.Popen(
            [str(ORTHANC_BIN), "--verbose", str(path)],
            cwd=self.dir,
            env=dcmtk_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        try:
            wait_for_port(self.dicom_port, timeout=timeout)
            wait_for_port(self.http_port, timeout=timeout)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """The HTTP port opens before the REST API answers (plugins still loading)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.get("/system")
                return
            except (OSError, OrthancError):
                if self._proc is None or self._proc.poll() is not None:
                    raise RuntimeError(f"Orthanc exited at start:\n{self.log[-3000:]}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        stop(self._proc, grace=15)
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TemporaryOrthanc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Call the REST API with `body` (bytes: a DICOM file, text: plain text, else
        JSON); returns the decoded JSON answer (or the raw bytes when it is not JSON);
        raises OrthancError on an HTTP error."""
        data = None
        headers = {}
        if isinstance(body, bytes):
            data, headers["Content-Type"] = body, "application/dicom"
        elif isinstance(body, str):  # e.g. /tools/lookup takes the UID as plain text
            data, headers["Content-Type"] = body.encode(), "text/plain"
        elif body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as rsp:
                content = rsp.read()
                kind = rsp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raise OrthancError(exc.code, exc.read().decode(errors="replace")) from None
        if kind.startswith("application/json"):
            return json.loads(content) if content else None
        return content

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, {} if body is None else body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def upload(self, data: bytes) -> dict[str, Any]:
        """Store a Part 10 file through the REST API (POST /instances); its answer."""
        answer: dict[str, Any] = self.request("POST", "/instances", data)
        return answer

    def clear(self) -> None:
        """Delete every patient (and so everything) Orthanc holds."""
        for patient in self.get("/patients"):
            self.delete(f"/patients/{patient}")
