"""The servers measured at scale: Isthmus on a loaded index, Orthanc with either index."""

from __future__ import annotations

import json
from pathlib import Path

from bench.systems import DICOMWEB_PLUGIN, IsthmusServer, OrthancServer

POSTGRES_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so")


class LoadedIsthmus(IsthmusServer):
    """`isthmus serve` on an index filled in-process (bench/scale/load.py): no start-up
    check, which would remove the loaded rows (they have no blobs)."""

    def __init__(self, workdir: Path, move_port: int, index_url: str) -> None:
        super().__init__(workdir, move_port)
        self.index_url = index_url

    def env(self) -> dict[str, str]:
        env = super().env()
        env["ISTHMUS_CHECK_ON_START"] = "false"
        env["ISTHMUS_INDEX_URL"] = self.index_url
        return env


class OrthancPostgres(OrthancServer):
    """Orthanc with Debian's PostgreSQL index plugin (storage stays on files)."""

    def __init__(self, workdir: Path, move_port: int, host: str, port: int, user: str, db: str):
        super().__init__(workdir, move_port)
        self.pg = {"host": host, "port": port, "user": user, "db": db}

    def command(self) -> list[str]:
        cmd = super().command()
        config = json.loads(self.config.read_text())
        config["Plugins"] = [str(DICOMWEB_PLUGIN), str(POSTGRES_PLUGIN)]
        config["PostgreSQL"] = {
            "EnableIndex": True,
            "EnableStorage": False,
            "Host": self.pg["host"],
            "Port": self.pg["port"],
            "Database": self.pg["db"],
            "Username": self.pg["user"],
            "Password": "",
            "Lock": False,
        }
        self.config.write_text(json.dumps(config, indent=1))
        return cmd


def orthanc_index_bytes(server: OrthancServer) -> int:
    """Size of Orthanc's SQLite index (index file and its WAL/journal)."""
    storage = server.workdir / "storage"
    return sum(p.stat().st_size for p in storage.glob("index*") if p.is_file())
