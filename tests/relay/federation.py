"""Two relay sites in one test process: a real NATS, each site's DICOM port (an
`AssociationRouter`) with its `RelayRouter`, site B's devices (DCMTK `dcmqrscp` and
`storescp`), and a NATS spy that records every message on the server."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus.dicom.ul import pdu
from isthmus.node.router import AssociationRouter
from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory import SERVICES, Directory, Export, SiteEntry
from isthmus.relay.link import Link
from isthmus.relay.router import RelayRouter
from isthmus.testing import dcmtk
from isthmus.testing.nats import TemporaryNATS
from isthmus.testing.net import free_port, wait_for_port


def _refuse(sock: socket.socket, _address: Any, _rq: pdu.AAssociateRQ) -> None:
    """The own-AE handler of the test ports: they serve relay routes only."""
    sock.sendall(pdu.associate_rj(1, 1, 7))
    sock.close()


@dataclass
class Site:
    name: str
    identity: SiteIdentity
    directory: Directory
    link: Link
    port: AssociationRouter
    relay: RelayRouter | None = None
    thread: threading.Thread | None = None

    @property
    def dicom_port(self) -> int:
        return int(self.port.server_address[1])

    def close(self) -> None:
        if self.relay is not None:
            self.relay.close()
        self.port.shutdown()
        self.port.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.link.close()


def start_site(name: str, nats_url: str) -> Site:
    port = AssociationRouter(("127.0.0.1", 0), _refuse)
    thread = threading.Thread(
        target=port.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    link = Link(nats_url, name=f"site-{name}").connect()
    identity = SiteIdentity.create(name)
    return Site(name, identity, Directory(name), link, port, thread=thread)


@dataclass
class Spy:
    """Every message NATS carries while it listens (`>`), subject and payload."""

    link: Link
    seen: list[tuple[str, bytes]] = field(default_factory=list)
    _sub: Any = None

    def start(self, subject: str = ">") -> Spy:
        async def record(m: Any) -> None:
            self.seen.append((m.subject, bytes(m.data)))

        self._sub = self.link.call(self.link.nc.subscribe(subject, cb=record))
        self.link.call(self.link.nc.flush())
        return self

    def stop(self) -> list[tuple[str, bytes]]:
        self.link.call(self.link.nc.flush())
        time.sleep(0.2)  # what is in flight reaches the spy (no assertion on time)
        self.link.call(self._sub.unsubscribe())
        return self.seen


@contextmanager
def spying(nats: TemporaryNATS, subject: str = ">") -> Iterator[Spy]:
    link = Link(nats.url, name="spy").connect()
    spy = Spy(link).start(subject)
    try:
        yield spy
    finally:
        link.close()


class QRSCP:
    """DCMTK's `dcmqrscp` as site B's PACS: AE titles `aets`, move destinations `hosts`;
    the `strict` AE titles accept only a calling AE title nobody uses (so they reject)."""

    def __init__(
        self, folder: Path, aets: list[str], hosts: dict[str, int], strict: tuple[str, ...] = ()
    ) -> None:
        self.folder = folder
        self.port = free_port()
        lines = [f"NetworkTCPPort = {self.port}", "MaxPDUSize = 16384", "MaxAssociations = 16"]
        lines += ["HostTable BEGIN", "nobody = (NOBODY, 127.0.0.1, 9)"]
        lines += [f"{aet} = ({aet}, 127.0.0.1, {port})" for aet, port in hosts.items()]
        lines += ["HostTable END", "VendorTable BEGIN", "VendorTable END", "AETable BEGIN"]
        for aet in (*aets, *strict):
            (folder / aet).mkdir(parents=True, exist_ok=True)
            peers = "nobody" if aet in strict else "ANY"
            lines.append(f"{aet} {folder / aet} RW (200, 1024mb) {peers}")
        lines.append("AETable END")
        self.config = folder / "dcmqrscp.cfg"
        self.config.write_text("\n".join(lines) + "\n")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> QRSCP:
        self._proc = subprocess.Popen(
            [dcmtk.tool("dcmqrscp"), "-c", str(self.config), str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def load(self, aet: str, files: list[Path]) -> None:
        """Store `files` straight into the PACS (not through the relay)."""
        done = dcmtk.run("storescu", "-aec", aet, "127.0.0.1", str(self.port), *map(str, files))
        assert done.returncode == 0, done.stdout + done.stderr

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None


def entry(site: Site, *exports: Export, revoked: bool = False) -> SiteEntry:
    return SiteEntry(site.name, site.identity.keys, revoked=revoked, exports=exports)


def export(
    site: str, aet: str, services: tuple[str, ...] = SERVICES, sites: tuple[str, ...] = ("*",)
) -> Export:
    return Export(aet, site, frozenset(services), frozenset(sites))
