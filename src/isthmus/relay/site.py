"""A site's membership of the federation, started by `isthmus serve --relay FILE`.

It assembles the relay door from its parts (docs/relay.md, "Modules"): the site's keys
and its enrolment with the bridge (relay/enrolment.py), the NATS link, the directory
kept current from the bridge's KV bucket with pinned keys, the exports this site
publishes, the router that carries associations, and the transfers of C-MOVE/C-GET.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from isthmus.archive import Archive, RelayTransfer
from isthmus.config import Peer, Settings
from isthmus.node.access import AccessControl
from isthmus.node.router import AssociationRouter
from isthmus.node.tls import client_context
from isthmus.relay.delivery import PROCESSING_FAILURE, Deliveries
from isthmus.relay.directory import Directory, KnownKeys
from isthmus.relay.enrolment import (
    DirectoryWatcher,
    PresignedObjects,
    enrol_site,
    enrolled,
)
from isthmus.relay.exports import _reachable, export_addresses, site_exports
from isthmus.relay.link import Link
from isthmus.relay.moves import MoveSource, TransferMoves
from isthmus.relay.router import RelayRouter
from isthmus.relay.transfer import TransferReceiver

log = logging.getLogger(__name__)

RECENT_TRANSFERS = 20  # finished transfers the status shows, besides those in flight


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
        self.deliveries = Deliveries(
            self.delivery_device,
            settings.aet,
            archive.activity,
            tls=lambda: client_context(settings),
        )
        self.link: Link | None = None
        self.parts: list[Any] = []  # what close() stops, in reverse order
        # p2p over the federation (p2p/federation.py, p2p/bridge_signal.py), set by
        # isthmus.p2p.federation.join once the site has started.
        self.sharing: Any = None
        self.signalling: Any = None
        # Progress subjects of the p2p relay fallbacks this site asked for: only their
        # transfers may deliver into this node's archive when it is not exported.
        self._invited: set[str] = set()

    def local_device(self, aet: str) -> Peer | None:
        """A device of this site by AE title: an export, or a known peer."""
        if aet in self.exports:
            host, port = self.exports[aet]
            return Peer(aet, host, port)
        return self.settings.peer(aet)

    def delivery_device(self, aet: str) -> Peer | None:
        """Where a transfer to `aet` is delivered: a device of the site, or this node's
        own archive on its DICOM port (the p2p relay fallback, p2p/fallback.py)."""
        found = self.local_device(aet)
        if found is None and aet == self.settings.aet:
            host, port = _reachable(self.settings.host), int(self.node.server_address[1])
            return Peer(aet, host, port)
        return found

    def invite(self, subject: str) -> None:
        """Let the transfer whose origin is `subject` deliver into this node's archive."""
        self._invited.add(subject)

    def _deliver(self, announcement: Any, data: bytes) -> int:
        """Deliver, refusing a transfer into the archive that this node neither exports
        nor asked for (a p2p fallback names its origin subject beforehand)."""
        aet = announcement.destination_aet
        if aet == self.settings.aet and aet not in self.exports:
            if str((announcement.origin or {}).get("subject")) not in self._invited:
                log.warning("relay: transfer %s into the archive refused", announcement.transfer_id)
                return PROCESSING_FAILURE
        return self.deliveries(announcement, data)

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
            deliver=self._deliver,
            on_end=self.deliveries.ended,
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
        """Sites, exported and imported AE titles with fingerprints, and the transfers
        in flight and recently finished (docs/relay.md, "Status")."""
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
            "transfers": [
                transfer_status(t, self.name)
                for t in self.archive.relay_transfers.recent(RECENT_TRANSFERS)
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


def transfer_status(transfer: RelayTransfer, site: str) -> dict[str, Any]:
    """One transfer for the status page: its parties, which way it goes from `site`
    ("sending" or "receiving"), its counts and when it started and last moved."""
    expected = transfer.manifest_count
    return {
        "id": transfer.transfer_id,
        "direction": "sending" if transfer.source == site else "receiving",
        "source": transfer.source,
        "destination": transfer.destination,
        "destination_aet": transfer.destination_aet,
        "status": transfer.status,
        "dicom_status": transfer.dicom_status,
        "reason": transfer.reason,
        "delivered": transfer.completed + transfer.warning,
        "warning": transfer.warning,
        "failed": transfer.failed + transfer.failed_at_source,  # the source's too
        "expected": expected if expected is not None else transfer.expected,
        "remaining": transfer.remaining,
        "started": _iso(transfer.created_at),
        "updated": _iso(transfer.updated_at),
        "finished": _iso(transfer.finished_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
