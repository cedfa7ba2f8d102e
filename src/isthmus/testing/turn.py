"""A throw-away TURN server (coturn's `turnserver`, Debian package `coturn`) on 127.0.0.1.

Its own config file, log and database in a temporary folder; no daemon, no CLI, no TLS or
DTLS listener, loopback peers allowed (both WebRTC ends run on this machine).  It takes
either the "TURN REST API" shared secret (`use-auth-secret`, `static-auth-secret`; see
isthmus.p2p.ice) or, with `static_user=True`, one long-term user (`lt-cred-mech`): coturn
ignores static users once a shared secret is configured.  `stop()`
kills it; `allocations()` counts the relay allocations its log reports.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from isthmus.testing import processes
from isthmus.testing.net import free_port

USER, PASSWORD = "isthmus", "turn-test-password"
REALM = "isthmus.test"


def turnserver_binary() -> str | None:
    """The `turnserver` program (coturn), if installed (scripts/system-deps.sh)."""
    return shutil.which("turnserver") or (
        "/usr/bin/turnserver" if Path("/usr/bin/turnserver").exists() else None
    )


class TemporaryTURN:
    """coturn on 127.0.0.1:`port` (UDP and TCP); `url` for ICE server lists."""

    def __init__(self, secret: str = "turn-test-secret", static_user: bool = False) -> None:
        binary = turnserver_binary()
        if binary is None:
            raise RuntimeError("turnserver not found (apt-get install coturn: system-deps.sh)")
        self.binary = binary
        self.secret = secret
        self.static_user = static_user
        self.dir = Path(tempfile.mkdtemp(prefix="isthmus-turn-"))
        self.port = free_port()
        self.log = self.dir / "turnserver.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def _config(self) -> Path:
        low = 49152 + (self.port * 7) % 10000  # a relay port range of its own
        lines = [
            "listening-ip=127.0.0.1",
            "relay-ip=127.0.0.1",
            f"listening-port={self.port}",
            f"min-port={low}",
            f"max-port={low + 200}",
            "allow-loopback-peers",
            "no-tls",
            "no-dtls",
            "no-cli",
            "no-multicast-peers",
            "fingerprint",
            "lt-cred-mech",
            *(
                [f"user={USER}:{PASSWORD}"]
                if self.static_user
                else ["use-auth-secret", f"static-auth-secret={self.secret}"]
            ),
            f"realm={REALM}",
            f"userdb={self.dir / 'turndb.sqlite'}",
            f"pidfile={self.dir / 'turnserver.pid'}",
            f"log-file={self.log}",
            "simple-log",
            "verbose",
        ]
        config = self.dir / "turnserver.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self, timeout: float = 20.0) -> TemporaryTURN:
        """Start it and wait (bounded) until its log says it listens."""
        config = self._config()
        with open(self.dir / "stdout.log", "ab") as out:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"turnserver exited:\n{self.log_text()[-2000:]}")
            if f"127.0.0.1:{self.port}" in self.log_text():
                time.sleep(0.2)  # the listener threads start right after the log line
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"turnserver did not start in {timeout} s:\n{self.log_text()[-2000:]}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def allocations(self) -> int:
        """How many relay allocations coturn made (its log's "ALLOCATE processed, success")."""
        return sum(
            1 for line in self.log_text().splitlines() if "ALLOCATE processed, success" in line
        )

    def stop(self) -> None:
        processes.kill(self._process)
        self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TemporaryTURN:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
