"""Two relay sites in one test process: a real NATS, each site's DICOM port (an
`AssociationRouter`) with its `RelayRouter`, site B's devices (DCMTK `dcmqrscp` and
`storescp`), and a NATS spy that records every message on the server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from isthmus.dicom.ul import pdu
from isthmus.node.router import AssociationRouter
from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory import SERVICES, Directory, Export, SiteEntry
from isthmus.relay.link import Link
from isthmus.relay.router import RelayRouter
from isthmus.testing.nats import TemporaryNATS


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


def start_relays(a: Site, b: Site, exports: dict[str, tuple[str, int]], **options: Any) -> None:
    """Site A and site B knowing each other, B exporting `exports` (AE title → address),
    each with its association relay started (`options`: RelayRouter's own)."""
    for site in (a, b):
        site.directory.update(entry(a))
        site.directory.update(entry(b, *(export("B", aet) for aet in exports)))
    for site, own in ((a, {}), (b, exports)):
        site.relay = RelayRouter(
            link=site.link,
            identity=site.identity,
            directory=site.directory,
            exports=own,
            node=site.port,
            calling_aet=f"RELAY{site.name}",
            **options,
        )
        site.relay.start()


def entry(site: Site, *exports: Export, revoked: bool = False) -> SiteEntry:
    return SiteEntry(site.name, site.identity.keys, revoked=revoked, exports=exports)


def export(
    site: str, aet: str, services: tuple[str, ...] = SERVICES, sites: tuple[str, ...] = ("*",)
) -> Export:
    return Export(aet, site, frozenset(services), frozenset(sites))
