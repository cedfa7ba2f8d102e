"""A throw-away relay bridge for tests and benchmarks: `BridgeServer` in a thread, its
database in a temporary folder, on a free loopback port, over a running NATS and S3.

`enrolment_file(name)` adds a site and writes the file `isthmus serve --relay FILE`
reads, as `isthmus bridge add-site` does.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from isthmus.relay.bridge import BridgeServer, BridgeSettings
from isthmus.relay.signing import public_bytes
from isthmus.testing.net import free_port


class TemporaryBridge:
    """The bridge on 127.0.0.1:`port`, for NATS at `nats_url` and objects at `blob_url`
    (``s3://bucket/prefix``; endpoint and credentials from the AWS variables)."""

    def __init__(self, nats_url: str, blob_url: str, poll: float = 0.2) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="isthmus-bridge-"))
        self.nats_url = nats_url
        self.settings = BridgeSettings(
            index_url=f"sqlite:///{self.dir / 'bridge.db'}",
            nats_url=nats_url,
            blob_url=blob_url,
            public_nats=nats_url,
            http_port=free_port(),
            poll=poll,
            reconcile=1.0,
        )
        self.server: BridgeServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    def start(self) -> TemporaryBridge:
        self.server = BridgeServer(self.settings).start()
        return self

    def enrolment_file(self, site: str, folder: Path | None = None) -> Path:
        """Add `site` and write its enrolment file (in `folder`, else the bridge's)."""
        assert self.server is not None, "start() the bridge first"
        bridge = self.server.bridge
        secret = bridge.state.add_site(site)
        path = (folder or self.dir) / f"{site}.enrol.json"
        doc = {"bridge": self.url, "nats": self.nats_url, "site": site, "secret": secret}
        doc["bridge_key"] = public_bytes(bridge.directory_key).hex()
        path.write_text(json.dumps(doc))
        path.chmod(0o600)
        return path

    @property
    def directory_key(self) -> bytes:
        """The bridge's public key that signs directory entries (DirectoryWatcher's)."""
        assert self.server is not None
        return public_bytes(self.server.bridge.directory_key)

    def revoke(self, site: str) -> None:
        """As `isthmus bridge revoke-site`: the bridge publishes it within `poll` s."""
        assert self.server is not None
        self.server.bridge.state.revoke(site)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TemporaryBridge:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
