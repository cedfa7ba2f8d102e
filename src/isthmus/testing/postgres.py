"""A throw-away PostgreSQL server in a temporary folder, on a free loopback port."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from isthmus.testing.net import free_port


def pg_bin() -> Path | None:
    """The folder holding initdb/pg_ctl (PATH or Debian's /usr/lib/postgresql/N/bin)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


class TemporaryPostgres:
    """initdb + pg_ctl start on 127.0.0.1; stop() removes everything.

    PostgreSQL refuses to run as root, so as root the server runs as the
    ``postgres`` system user (created by Debian's package).
    """

    def __init__(self, durable: bool = False) -> None:
        """`durable=False` (tests) turns fsync and synchronous commit off; benchmarks
        that measure writes keep PostgreSQL's durable defaults."""
        self.durable = durable
        found = pg_bin()
        if found is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bin: Path = found
        self.dir = Path(tempfile.mkdtemp(prefix="isthmus-pg-"))
        self.port = free_port()
        self.user = "isthmus"
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir, 0o700)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as, *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
            cwd="/",
        )

    def start(self) -> TemporaryPostgres:
        data = self.dir / "data"
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=200"
        )
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.dir / "data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            )
        except (subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
