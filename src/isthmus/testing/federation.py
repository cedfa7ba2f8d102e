"""A federation on one machine: a real NATS server, a real S3 server (SeaweedFS), the
relay bridge and three sites, each an `isthmus serve --relay` with its own DCMTK devices
(`dcmqrscp` as the site's PACS, `storescp` as a workstation's store), all on 127.0.0.1.

Site X has: PACS `PACSX` (dcmqrscp, exported to the federation), a store `STOREX`
(storescp; exported, so other sites can send to it, and a known peer of its node), and
its node `ISTHMUSX` on its own DICOM port: the workstation of site X calls the node's
port with the called AE title of a remote device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from isthmus.testing import processes
from isthmus.testing.dcmtk import QRSCP, StoreSCP, dcmtk_env, tool
from isthmus.testing.latency import LatencyProxy
from isthmus.testing.nats import TemporaryNATS
from isthmus.testing.net import free_port, wait_for_port
from isthmus.testing.seaweedfs import TemporarySeaweedFS

STARTUP = 60.0  # seconds a process may take to come up
WORKSTATION = "WSA"  # the AE title of every site's workstation (DCMTK's tools)
BRIDGE_PREFIX = "relay"  # the bridge's objects: s3://isthmus/relay/…


class Site:
    """One site: its PACS, its store, and its Isthmus node in the federation."""

    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        self.folder = folder / name
        self.folder.mkdir(parents=True)
        self.store = StoreSCP(self.folder / "store", aet=f"STORE{name}")
        self.pacs = QRSCP(self.folder / "pacs", [f"PACS{name}"])
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.aet = f"ISTHMUS{name}"
        self.enrolment = self.folder / "enrolment.json"
        self.log = self.folder / "isthmus.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # More C-MOVE destinations of the PACS (AE title → port on 127.0.0.1).
        self.extra_destinations: dict[str, int] = {}
        # TOML settings of the site's node (`--config`), e.g. relay_export_rules.
        self.config = ""
        # Whether the node exports its own archive (`--export ISTHMUSX`) to the federation.
        self.export_archive = True
        # The port the node reaches its PACS on, when not the PACS's own: a LatencyProxy's,
        # which slows the node's C-GETs (a transfer is then long enough to interrupt).
        self.pacs_port_for_node: int | None = None
        self._env: dict[str, str] = {}

    def start_devices(self) -> None:
        self.store.start()
        self.pacs.destinations = {self.store.aet: self.store.port, **self.extra_destinations}
        self.pacs.start()

    def launch(self, env: dict[str, str]) -> None:
        self._env = env
        command = [
            sys.executable,
            "-m",
            "isthmus",
            "serve",
            "--data",
            str(self.folder / "data"),
            "--aet",
            self.aet,
            "--dicom-port",
            str(self.dicom_port),
            "--http-port",
            str(self.http_port),
            "--relay",
            str(self.enrolment),
            "--export",
            f"{self.pacs.aet}@127.0.0.1:{self.pacs_port_for_node or self.pacs.port}",
            "--export",
            f"{self.store.aet}@127.0.0.1:{self.store.port}",
            *(["--export", self.aet] if self.export_archive else []),
            "--peer",
            f"{self.store.aet}@127.0.0.1:{self.store.port}",
        ]
        if self.config:
            config = self.folder / "isthmus.toml"
            config.write_text(self.config)
            command += ["--config", str(config)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self) -> None:
        for port in (self.dicom_port, self.http_port):
            try:
                wait_for_port(port, timeout=STARTUP)
            except TimeoutError:
                raise AssertionError(f"site {self.name} did not start:\n{self.tail()}") from None

    def dcmtk(
        self,
        name: str,
        called: str,
        *args: str,
        files: Sequence[Path] = (),
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """DCMTK's `name` run by the site's workstation (AE title WORKSTATION), calling
        `called` on the site's node (`files` after the address: storescu's); its
        outcome, exit status not checked."""
        return subprocess.run(
            self.dcmtk_command(name, called, *args) + [str(f) for f in files],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dcmtk_env(),
        )

    def dcmtk_command(self, name: str, called: str, *args: str) -> list[str]:
        """The command line of `dcmtk` (for a tool run in the background)."""
        return [
            tool(name),
            "-aet",
            WORKSTATION,
            "-aec",
            called,
            *args,
            "127.0.0.1",
            str(self.dicom_port),
        ]

    def relay_status(self) -> dict[str, Any]:
        reply = httpx.get(f"http://127.0.0.1:{self.http_port}/api/admin/relay", timeout=10)
        reply.raise_for_status()
        status: dict[str, Any] = reply.json()
        return status

    def kill(self) -> None:
        processes.kill(self.proc)

    def restart(self) -> None:
        """Start the node again (after `kill` or `stop`), with the same data folder:
        keys, enrolment and the index with its record of transfers."""
        self.kill()
        self.launch(self._env)
        self.wait_ready()

    def stop(self) -> None:
        processes.stop(self.proc)
        self.proc = None

    def tail(self, lines: int = 60) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
            if self.log.exists()
            else ""
        )


class Federation:
    """NATS, the bridge (on the given S3 server) and sites `names`, started in order.

    With `wan` (seconds), every site reaches the cloud services (NATS, the bridge, the
    object store) through a `LatencyProxy` delaying each way by that much: two sites
    are then 2 × `wan` apart each way, through the cloud as over a direct link."""

    def __init__(
        self,
        folder: Path,
        s3: TemporarySeaweedFS,
        names: tuple[str, ...] = ("A", "B", "C"),
        wan: float = 0.0,
    ) -> None:
        self.folder = folder
        self.s3 = s3
        self.wan = wan
        self.proxies: dict[str, LatencyProxy] = {}
        self.nats = TemporaryNATS()
        self.bridge_port = free_port()
        self.bridge_data = folder / "bridge"
        self.bridge_log = folder / "bridge.log"
        self.bridge: subprocess.Popen[bytes] | None = None
        self.sites = {name: Site(folder, name) for name in names}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ISTHMUS_")}
        self.env.update(s3.env)

    def start(self) -> Federation:
        self.nats.start()
        if self.wan:
            self._start_proxies()
        self.start_bridge()
        for site in self.sites.values():
            self.isthmus(
                "bridge",
                "add-site",
                site.name,
                "--data",
                str(self.bridge_data),
                "--out",
                str(site.enrolment),
            )
            site.start_devices()
            site.launch(self.env)
        for site in self.sites.values():
            site.wait_ready()
        self.wait_for_directory()
        return self

    def _start_proxies(self) -> None:
        targets = {"nats": self.nats.port, "s3": self.s3.port, "bridge": self.bridge_port}
        for name, port in targets.items():
            self.proxies[name] = LatencyProxy(("127.0.0.1", port), self.wan).start()
        # The bridge signs object URLs for the address the sites use (SigV4 signs the host).
        self.env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{self.proxies['s3'].port}"

    def start_bridge(self) -> None:
        public = []  # the bridge tells the sites the proxies' addresses, not its own
        if self.proxies:
            public = [
                "--public-url",
                f"http://127.0.0.1:{self.proxies['bridge'].port}",
                "--public-nats",
                f"nats://127.0.0.1:{self.proxies['nats'].port}",
            ]
        with open(self.bridge_log, "ab") as out:
            self.bridge = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "isthmus",
                    "bridge",
                    "serve",
                    "--data",
                    str(self.bridge_data),
                    "--http-port",
                    str(self.bridge_port),
                    "--nats",
                    self.nats.url,
                    "--blob-url",
                    self.s3.url(BRIDGE_PREFIX),
                    *public,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        try:
            wait_for_port(self.bridge_port, timeout=STARTUP)
        except TimeoutError:
            raise AssertionError(
                f"the bridge did not start:\n{self.bridge_log.read_text()}"
            ) from None

    def revoke(self, name: str) -> None:
        """Cut site `name` off with `isthmus bridge revoke-site` (docs/relay.md)."""
        self.isthmus("bridge", "revoke-site", name, "--data", str(self.bridge_data))

    def bucket(self) -> dict[str, bytes]:
        """Every object under the bridge's prefix of the bucket, raw (path → bytes)."""
        import obstore
        from obstore.exceptions import NotFoundError
        from obstore.store import S3Store

        from isthmus.testing.seaweedfs import ACCESS_KEY, BUCKET, SECRET_KEY

        store = S3Store(
            BUCKET,
            endpoint=self.s3.endpoint,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            region="us-east-1",
            client_options={"allow_http": True},
        )
        found = {}
        for batch in obstore.list(store, prefix=BRIDGE_PREFIX):
            for meta in batch:
                try:
                    found[meta["path"]] = bytes(obstore.get(store, meta["path"]).bytes())
                except NotFoundError:  # deleted since it was listed (a finished transfer)
                    continue
        return found

    def stream(self, name: str = "RELAY_TRANSFERS") -> list[tuple[str, bytes]]:
        """Every message the JetStream stream `name` holds, raw (subject, headers + data)."""
        import asyncio

        import nats

        async def read() -> list[tuple[str, bytes]]:
            nc = await nats.connect(self.nats.url, connect_timeout=5, max_reconnect_attempts=1)
            try:
                js = nc.jetstream()
                info = await js.stream_info(name)
                out: list[tuple[str, bytes]] = []
                for seq in range(info.state.first_seq, info.state.last_seq + 1):
                    try:
                        m = await js.get_msg(name, seq)
                    except nats.js.errors.NotFoundError:
                        continue  # deleted
                    headers = "".join(f"{k}: {v}\n" for k, v in (m.headers or {}).items())
                    out.append((str(m.subject), headers.encode() + (m.data or b"")))
                return out
            finally:
                await nc.close()

        return asyncio.run(asyncio.wait_for(read(), 60))

    def consumer(self, site: str) -> tuple[int, int]:
        """(messages not yet delivered, delivered but not acknowledged) of site `site`'s
        durable consumer of RELAY_TRANSFERS: (0, 0) once it handled everything."""
        import asyncio

        import nats

        async def read() -> tuple[int, int]:
            nc = await nats.connect(self.nats.url, connect_timeout=5, max_reconnect_attempts=1)
            try:
                info = await nc.jetstream().consumer_info("RELAY_TRANSFERS", f"site-{site}")
                return int(info.num_pending or 0), int(info.num_ack_pending or 0)
            finally:
                await nc.close()

        return asyncio.run(asyncio.wait_for(read(), 30))

    def isthmus(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "isthmus", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def wait_for_directory(self, timeout: float = STARTUP) -> None:
        """Until every site imports every export of the other sites offered to it (all
        of them, without `relay_export_rules` narrowing them to some sites)."""
        deadline = time.monotonic() + timeout
        while True:
            missing: dict[str, object] = {}
            try:
                status = {name: site.relay_status() for name, site in self.sites.items()}
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                status, missing["status"] = {}, str(exc)
            for name, mine in status.items():
                want = {
                    e["aet"]
                    for other, theirs in status.items()
                    if other != name
                    for e in theirs.get("exports", [])
                    if "*" in e["sites"] or name in e["sites"]
                }
                seen = {i["aet"] for i in mine.get("imports", [])}
                if want - seen:
                    missing[name] = sorted(want - seen)
            if status and not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"directory incomplete: {missing}")
            time.sleep(0.2)

    def close(self) -> None:
        for site in self.sites.values():
            site.stop()
            site.pacs.stop()
            site.store.stop()
        if self.bridge is not None:
            self.bridge.terminate()
            try:
                self.bridge.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.bridge.kill()
                self.bridge.wait(timeout=10)
        self.nats.close()
        for proxy in self.proxies.values():
            proxy.close()
