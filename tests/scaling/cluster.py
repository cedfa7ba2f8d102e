"""Two `isthmus serve` processes on one PostgreSQL index and one blob store, behind
HAProxy configured by examples/scaling/haproxy.cfg (the file docs/scaling.md shows)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from isthmus.testing import processes
from isthmus.testing.net import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
HAPROXY_CONFIG = REPO / "examples" / "scaling" / "haproxy.cfg"
ISTHMUS_CONFIG = REPO / "examples" / "scaling" / "isthmus.toml"
HAPROXY = "/usr/sbin/haproxy"


class Process:
    """`python -m isthmus serve --config examples/scaling/isthmus.toml` as a child."""

    def __init__(self, name: str, folder: Path, index_url: str, blob_url: str) -> None:
        self.name = name
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.folder = folder
        self.log = folder / f"{name}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ISTHMUS_")}
        self.env.update(
            ISTHMUS_INDEX_URL=index_url,
            ISTHMUS_BLOB_URL=blob_url,  # the file's /srv/isthmus/blobs, here in tmp
            ISTHMUS_DATA=str(folder / name),
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> Process:
        command = [
            sys.executable,
            "-m",
            "isthmus",
            "serve",
            "--config",
            str(ISTHMUS_CONFIG),
            "--dicom-port",
            str(self.dicom_port),
            "--http-port",
            str(self.http_port),
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        return self

    def wait_ready(self) -> None:
        for port in (self.dicom_port, self.http_port):
            try:
                wait_for_port(port, timeout=60)
            except TimeoutError:
                raise AssertionError(f"{self.name} did not start: {self.log.read_text()}") from None

    def kill(self) -> None:
        processes.kill(self.proc)

    def stop(self) -> None:
        processes.stop(self.proc)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


class Balancer:
    """HAProxy with the example configuration, addresses from the environment."""

    def __init__(self, folder: Path, processes: list[Process]) -> None:
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.socket = folder / "haproxy.sock"
        self.env = dict(
            os.environ,
            LB_HOST="127.0.0.1",
            LB_DICOM_PORT=str(self.dicom_port),
            LB_HTTP_PORT=str(self.http_port),
            LB_STATS_SOCKET=str(self.socket),
        )
        for number, process in enumerate(processes, start=1):
            self.env[f"ISTHMUS_{number}"] = "127.0.0.1"
            self.env[f"DICOM_{number}"] = str(process.dicom_port)
            self.env[f"HTTP_{number}"] = str(process.http_port)
        self.log = folder / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Balancer:
        if not Path(HAPROXY).exists():
            raise AssertionError("HAProxy missing (run scripts/system-deps.sh)")
        check = subprocess.run(
            [HAPROXY, "-c", "-f", str(HAPROXY_CONFIG)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        with open(self.log, "ab") as out:
            # -db: stay in the foreground, no daemon
            self.proc = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(HAPROXY_CONFIG)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.dicom_port, timeout=30)
        wait_for_port(self.http_port, timeout=30)
        return self

    def stats(self) -> dict[tuple[str, str], dict[str, str]]:
        """`show stat` of the runtime API: (backend, server) → counters (stot: sessions)."""
        import socket

        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self.socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {(r["pxname"], r["svname"]): r for r in rows}

    def wait_up(self, backend: str, server: str, up: bool = True, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.stats().get((backend, server), {}).get("status", "")
            if status.startswith("UP") == up:
                return
            time.sleep(0.2)
        raise AssertionError(f"{backend}/{server} is not {'UP' if up else 'DOWN'}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
