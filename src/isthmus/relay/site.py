"""A site's membership of the federation, started by `isthmus serve --relay FILE`.

It assembles the relay door from its parts (docs/relay.md, "Modules"): the site's keys
and its enrolment with the bridge (relay/enrolment.py), the NATS link, the directory
kept current from the bridge's KV bucket with pinned keys, the exports this site
publishes, the router that carries associations, and the transfers of C-MOVE/C-GET.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from isthmus.archive import Archive
from isthmus.config import Peer, Settings
from isthmus.node.access import AccessControl
from isthmus.node.router import AssociationRouter
from isthmus.relay.delivery import Deliveries
from isthmus.relay.directory import Directory, KnownKeys
from isthmus.relay.enrolment import (
    DirectoryWatcher,
    PresignedObjects,
    enrol_site,
    enrolled,
)
from isthmus.relay.exports import export_addresses, site_exports
from isthmus.relay.link import Link
from isthmus.relay.moves import MoveSource, TransferMoves
from isthmus.relay.router import RelayRouter
from isthmus.relay.transfer import TransferReceiver

log = logging.getLogger(__name__)


class RelaySite:
    """This node as a site of a federation; `start()` once the DICOM port listens."""

    def __init__(
        self,
        settings: Settings,
        archive: Archive,
        node: AssociationRouter,
        access: AccessControl | None = None,
    ) -> None:
        self.settings = settings
        self.archive = archive
        self.node = node
        self.access = access
        self.identity, self.bridge = enrol_site(Path(settings.data), Path(settings.relay))
        self.record = enrolled(Path(settings.data)) or {}
        self.name = self.identity.name
        known = KnownKeys(Path(settings.data) / "relay" / "known_sites.json")
        self.directory = Directory(self.name, known)
        self.objects = PresignedObjects(self.bridge)
        self.exports = export_addresses(settings, int(node.server_address[1]))
        self.deliveries = Deliveries(self.local_device, settings.aet)
        self.link: Link | None = None
        self.parts: list[Any] = []  # what close() stops, in reverse order

    def local_device(self, aet: str) -> Peer | None:
        """A device of this site by AE title: an export, or a known peer."""
        if aet in self.exports:
            host, port = self.exports[aet]
            return Peer(aet, host, port)
        return self.settings.peer(aet)

    def start(self) -> None:
        settings, timeout = self.settings, self.settings.relay_timeout
        self.link = link = Link(self.record.get("nats", ""), name=f"isthmus-{self.name}").connect()
        key = self.record.get("bridge_key")
        watcher = DirectoryWatcher(link, self.directory, bytes.fromhex(key) if key else None)
        watcher.start()
        self.parts.append(watcher)
        self.bridge.publish_exports(site_exports(settings, self.name))
        args = (link, self.identity, self.directory)
        receiver = TransferReceiver(
            *args,
            self.objects,
            state=self.archive.relay_transfers,
            deliver=self.deliveries,
            ended=self.deliveries.end,
        )
        source = MoveSource(*args, self.objects, self.exports, self.archive, timeout=timeout)
        router = RelayRouter(
            link=link,
            identity=self.identity,
            directory=self.directory,
            exports=self.exports,
            node=self.node,
            calling_aet=settings.aet,
            timeout=timeout,
            activity=self.archive.activity,
            moves=TransferMoves(*args, self.local_device, timeout=timeout),
            allowed=self.access.allowed if self.access is not None else None,
        )
        for part in (receiver, source, router):
            part.start()
            self.parts.append(part)
        log.info(
            "relay: site %s (fingerprint %s) joined through %s",
            self.name,
            self.identity.keys.fingerprint,
            self.record.get("bridge"),
        )

    def status(self) -> dict[str, Any]:
        """Sites, exported and imported AE titles with fingerprints (docs/relay.md, "Status")."""
        pinned = self.directory.known.pinned() if self.directory.known else {}
        changed = dict(self.directory.known.changed) if self.directory.known else {}
        return {
            "site": self.name,
            "fingerprint": self.identity.keys.fingerprint,
            "bridge": self.record.get("bridge"),
            "connected": bool(self.link and self.link.connected),
            "exports": [e.to_json() for e in site_exports(self.settings, self.name)],
            "imports": [dict(e.to_json(), site=e.site) for e in self.directory.imports()],
            "sites": [
                {
                    "site": s.name,
                    "fingerprint": s.keys.fingerprint,
                    "pinned": pinned.get(s.name) == s.keys.fingerprint,
                    "refused_fingerprint": changed.get(s.name),
                    "revoked": s.revoked,
                }
                for s in self.directory.sites()
            ],
        }

    def accept(self, site: str, fingerprint: str) -> None:
        """Trust `site`'s new keys: only the fingerprint it now presents, and only after an
        administrator compared it with the one site `site` shows (docs/relay.md)."""
        known = self.directory.known
        offered = known.changed.get(site) if known else None
        if known is None or offered is None:
            raise ValueError(f"site {site!r} presents no new keys to accept")
        if fingerprint != offered:
            raise ValueError(f"site {site!r} presents {offered}, not {fingerprint}")
        known.accept(site, fingerprint)
        self.directory.touch(site)

    def close(self) -> None:
        for part in reversed(self.parts):
            try:
                part.stop() if hasattr(part, "stop") else part.close()
            except Exception:  # stopping: report and go on with the others
                log.warning("relay: stopping %s failed", type(part).__name__, exc_info=True)
        self.parts = []
        self.deliveries.close()
        if self.link is not None:
            self.link.close()
