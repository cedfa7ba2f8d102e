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
from isthmus.config import Settings
from isthmus.node.router import AssociationRouter
from isthmus.relay.directory import Directory, KnownKeys
from isthmus.relay.enrolment import DirectoryWatcher, EnrolmentFile, PresignedObjects, enrol_site
from isthmus.relay.exports import export_addresses, site_exports
from isthmus.relay.link import Link
from isthmus.relay.router import RelayRouter

log = logging.getLogger(__name__)


class RelaySite:
    """This node as a site of a federation; `start()` once the DICOM port listens."""

    def __init__(self, settings: Settings, archive: Archive, node: AssociationRouter) -> None:
        self.settings = settings
        self.archive = archive
        self.node = node
        self.folder = Path(settings.data) / "relay"
        self.enrolment = EnrolmentFile.load(Path(settings.relay))
        self.identity, self.bridge = enrol_site(self.folder, Path(settings.relay))
        self.name = self.identity.name
        self.directory = Directory(self.name, KnownKeys(self.folder / "known_sites.json"))
        self.objects = PresignedObjects(self.bridge)
        self.link: Link | None = None
        self.watcher: DirectoryWatcher | None = None
        self.router: RelayRouter | None = None

    def start(self) -> None:
        settings = self.settings
        self.link = Link(self.enrolment.nats, name=f"isthmus-{self.name}").connect()
        self.watcher = DirectoryWatcher(self.link, self.directory)
        self.watcher.start()
        self.bridge.publish_exports(site_exports(settings, self.name))
        self.router = RelayRouter(
            link=self.link,
            identity=self.identity,
            directory=self.directory,
            exports=export_addresses(settings, int(self.node.server_address[1])),
            node=self.node,
            calling_aet=settings.aet,
            timeout=settings.relay_timeout,
        )
        self.router.start()
        log.info(
            "relay: site %s (fingerprint %s) joined through %s",
            self.name,
            self.identity.keys.fingerprint,
            self.enrolment.bridge,
        )

    def status(self) -> dict[str, Any]:
        """Sites, exported and imported AE titles with fingerprints (docs/relay.md, "Status")."""
        pinned = self.directory.known.pinned() if self.directory.known else {}
        changed = dict(self.directory.known.changed) if self.directory.known else {}
        return {
            "site": self.name,
            "fingerprint": self.identity.keys.fingerprint,
            "bridge": self.enrolment.bridge,
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
        for part in (self.router, self.watcher):
            if part is not None:
                part.close()
        if self.link is not None:
            self.link.close()
