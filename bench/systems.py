"""The two archives under comparison, each started as a user would start it.

Both get the same peers: the calling AE `BENCHSCU` (findscu, movescu, storescu) and
the C-MOVE destination `BENCHSCP` (a DCMTK storescp on `move_port`).
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

from bench.procs import Server
from isthmus.testing import orthanc
from isthmus.testing.net import free_port

CALLING_AET = "BENCHSCU"
MOVE_AET = "BENCHSCP"
ORTHANC_BIN = orthanc.ORTHANC_BIN
DICOMWEB_PLUGIN = orthanc.DICOMWEB_PLUGIN


def http_json(url: str, timeout: float = 30.0) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as rsp:
        return json.loads(rsp.read())


class IsthmusServer(Server):
    """`isthmus serve` in a subprocess, on a fresh data folder (SQLite + files)."""

    name = "isthmus"
    aet = "ISTHMUS"

    def __init__(
        self, workdir: Path, move_port: int, durable: bool = True, workers: int = 1
    ) -> None:
        super().__init__(workdir)
        self.dicom_port, self.http_port = free_port(), free_port()
        self.move_port = move_port
        self.durable = durable
        self.workers = workers

    def env(self) -> dict[str, str]:
        """`durable=False` (no fsync, SQLite synchronous=NORMAL) only to measure what
        durability costs; every headline figure is with the default, durable.
        `workers`: `isthmus serve --workers N` (the server's CPU is then the sum of
        the supervisor's and its workers', procs.cpu_seconds)."""
        env = {k: v for k, v in super().env().items() if k != "ISTHMUS_WORKERS"}
        if not self.durable:
            env["ISTHMUS_DURABLE"] = "false"
        if self.workers != 1:
            env["ISTHMUS_WORKERS"] = str(self.workers)
        return env

    def command(self) -> list[str]:
        exe = Path(sys.executable).with_name("isthmus")
        base = [str(exe)] if exe.exists() else [sys.executable, "-m", "isthmus"]
        return base + [
            "serve",
            "--data",
            str(self.workdir / "data"),
            "--aet",
            self.aet,
            "--dicom-port",
            str(self.dicom_port),
            "--http-port",
            str(self.http_port),
            "--peer",
            f"{MOVE_AET}@127.0.0.1:{self.move_port}",
            "--peer",
            f"{CALLING_AET}@127.0.0.1:104",
            "--log-level",
            "warning",
        ]

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def count(self) -> int:
        counts = http_json(f"http://127.0.0.1:{self.http_port}/health")["counts"]  # type: ignore[index]
        for key in ("image", "instances", "instance"):  # the health page names the level
            if key in counts:
                return int(counts[key])
        raise KeyError(f"no instance count in the health page: {counts}")


class OrthancServer(Server):
    """Orthanc from Debian's package with its default SQLite index and the DICOMweb plugin.

    Only what the benchmark needs differs from /etc/orthanc/orthanc.json's defaults:
    folders, ports, AE title, no remote access and no authentication (loopback in a
    private namespace), the DICOMweb plugin, and the two peers.  Everything else
    (MaximumPduLength 16384, SyncStorageArea true, StorageAccessOnFind "Always",
    StoreMD5ForAttachments true, DicomThreadsCount 4) is Debian's default.
    """

    name = "orthanc"
    aet = "ORTHANC"

    def __init__(self, workdir: Path, move_port: int) -> None:
        super().__init__(workdir)
        self.dicom_port, self.http_port = free_port(), free_port()
        self.move_port = move_port
        self.config = workdir / "orthanc.json"

    def command(self) -> list[str]:
        storage = self.workdir / "storage"
        modalities = {
            "benchscu": [CALLING_AET, "127.0.0.1", 104],
            "benchscp": [MOVE_AET, "127.0.0.1", self.move_port],
        }
        settings = orthanc.config(storage, self.dicom_port, self.http_port, self.aet, modalities)
        self.config.write_text(json.dumps({**settings, "Name": "bench"}, indent=1))
        return [str(ORTHANC_BIN), str(self.config)]

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def count(self) -> int:
        stats = http_json(f"http://127.0.0.1:{self.http_port}/statistics")
        return int(stats["CountInstances"])  # type: ignore[index]


SYSTEMS = {"isthmus": IsthmusServer, "orthanc": OrthancServer}
