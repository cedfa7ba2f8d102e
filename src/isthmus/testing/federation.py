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
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from isthmus.testing.dcmtk import StoreSCP, tool
from isthmus.testing.latency import LatencyProxy
from isthmus.testing.nats import TemporaryNATS
from isthmus.testing.net import free_port, wait_for_port
from isthmus.testing.seaweedfs import TemporarySeaweedFS

STARTUP = 60.0  # seconds a process may take to come up


class QRSCP:
    """DCMTK's `dcmqrscp` as a site's PACS: AE `aet`, its own database folder, and the
    move destinations `destinations` (AE title → port on 127.0.0.1)."""

    def __init__(self, folder: Path, aet: str, destinations: dict[str, int] | None = None) -> None:
        self.folder = folder
        self.aet = aet
        self.port = free_port()
        self.destinations = destinations or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> QRSCP:
        (self.folder / "db").mkdir(parents=True, exist_ok=True)
        hosts = "\n".join(
            f"{aet} = ({aet}, 127.0.0.1, {port})" for aet, port in self.destinations.items()
        )
        config = self.folder / "dcmqrscp.cfg"
        config.write_text(
            f"NetworkTCPPort = {self.port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
            f"HostTable BEGIN\n{hosts}\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
            f"AETable BEGIN\n{self.aet} {self.folder / 'db'} RW (200, 1024mb) ANY\nAETable END\n"
        )
        log = open(self.folder / "dcmqrscp.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [tool("dcmqrscp"), "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_port(self.port, timeout=STARTUP)
        return self

    def load(self, files: list[Path]) -> None:
        """Store `files` into the PACS with DCMTK's storescu."""
        done = subprocess.run(
            [tool("storescu"), "-aec", self.aet, "127.0.0.1", str(self.port), *map(str, files)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


class Site:
    """One site: its PACS, its store, and its Isthmus node in the federation."""

    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        self.folder = folder / name
        self.folder.mkdir(parents=True)
        self.store = StoreSCP(self.folder / "store", aet=f"STORE{name}")
        self.pacs = QRSCP(self.folder / "pacs", f"PACS{name}")
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.aet = f"ISTHMUS{name}"
        self.enrolment = self.folder / "enrolment.json"
        self.log = self.folder / "isthmus.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # More C-MOVE destinations of the PACS (AE title → port on 127.0.0.1).
        self.extra_destinations: dict[str, int] = {}

    def start_devices(self) -> None:
        self.store.start()
        self.pacs.destinations = {self.store.aet: self.store.port, **self.extra_destinations}
        self.pacs.start()

    def launch(self, env: dict[str, str]) -> None:
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
            f"{self.pacs.aet}@127.0.0.1:{self.pacs.port}",
            "--export",
            f"{self.store.aet}@127.0.0.1:{self.store.port}",
            "--export",
            self.aet,
            "--peer",
            f"{self.store.aet}@127.0.0.1:{self.store.port}",
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self) -> None:
        for port in (self.dicom_port, self.http_port):
            try:
                wait_for_port(port, timeout=STARTUP)
            except TimeoutError:
                raise AssertionError(f"site {self.name} did not start:\n{self.tail()}") from None

    def relay_status(self) -> dict[str, Any]:
        reply = httpx.get(f"http://127.0.0.1:{self.http_port}/api/admin/relay", timeout=10)
        reply.raise_for_status()
        status: dict[str, Any] = reply.json()
        return status

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
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
        # DCMTK leaves Nagle's algorithm on without TCP_NODELAY=1 (bench/procs.py): the
        # devices started here, storescp included, inherit it.
        os.environ.setdefault("TCP_NODELAY", "1")
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
            if self.wan:
                self._through_proxies(site.enrolment)
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

    def _through_proxies(self, enrolment: Path) -> None:
        """Point a site's enrolment file at the proxies instead of the services."""
        doc = json.loads(enrolment.read_text())
        doc["nats"] = f"nats://127.0.0.1:{self.proxies['nats'].port}"
        doc["bridge"] = f"http://127.0.0.1:{self.proxies['bridge'].port}"
        enrolment.write_text(json.dumps(doc))

    def _public_nats(self) -> list[str]:
        """The NATS URL the bridge tells enrolling sites: the WAN proxy's, with one."""
        proxy = self.proxies.get("nats")
        return ["--public-nats", f"nats://127.0.0.1:{proxy.port}"] if proxy else []

    def start_bridge(self) -> None:
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
                    self.s3.url("relay"),
                    *self._public_nats(),
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
        """Until every site imports every other site's exports."""
        deadline = time.monotonic() + timeout
        want = {f"{kind}{name}" for name in self.sites for kind in ("PACS", "STORE", "ISTHMUS")}
        while True:
            missing: dict[str, object] = {}
            for site in self.sites.values():
                try:
                    seen = {i["aet"] for i in site.relay_status()["imports"]}
                except (httpx.HTTPError, KeyError, json.JSONDecodeError) as exc:
                    seen = set()
                    missing[site.name] = str(exc)
                own = {f"{kind}{site.name}" for kind in ("PACS", "STORE", "ISTHMUS")}
                if want - own - seen:
                    missing[site.name] = sorted(want - own - seen)
            if not missing:
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
