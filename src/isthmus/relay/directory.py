"""The federation's directory as a router sees it: sites, their keys, their exports.

The bridge is the directory's author (enrolment, exports, revocation) and publishes one
entry per site in the NATS key-value bucket `relay-directory` (docs/relay.md,
"Directory"); every router watches that bucket and keeps a `Directory`.  The routing
table is the access-control list (seed 002): a remote AE title is reachable from this
site only if its owner exports it, for that service, to this site.

Keys are pinned on first sight (`KnownKeys`, a file in the site's data folder): a known
site whose keys change is treated as unknown until an administrator accepts the new
fingerprint (`isthmus relay accept SITE`), so a compromised bridge cannot swap keys.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus.relay.crypto import SiteKeys

# The services an export can offer, by the names used in the TOML file and on the wire.
SERVICES = ("echo", "find", "move", "get", "store")
ANY_SITE = "*"


@dataclass(frozen=True)
class Export:
    """A local AE title a site offers to the federation: to which sites, for what."""

    aet: str
    site: str
    services: frozenset[str] = frozenset(SERVICES)
    sites: frozenset[str] = frozenset({ANY_SITE})

    def permits(self, caller_site: str, service: str) -> bool:
        return service in self.services and (ANY_SITE in self.sites or caller_site in self.sites)

    def to_json(self) -> dict[str, Any]:
        return {"aet": self.aet, "services": sorted(self.services), "sites": sorted(self.sites)}

    @classmethod
    def from_json(cls, site: str, doc: dict[str, Any]) -> Export:
        return cls(
            aet=str(doc["aet"]),
            site=site,
            services=frozenset(doc.get("services", SERVICES)),
            sites=frozenset(doc.get("sites", [ANY_SITE])),
        )


@dataclass(frozen=True)
class SiteEntry:
    """One site of the federation, as the bridge publishes it."""

    name: str
    keys: SiteKeys
    revoked: bool = False
    exports: tuple[Export, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.name,
            "keys": self.keys.to_json(),
            "fingerprint": self.keys.fingerprint,
            "revoked": self.revoked,
            "exports": [e.to_json() for e in self.exports],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SiteEntry:
        name = str(doc["site"])
        return cls(
            name=name,
            keys=SiteKeys.from_json(doc["keys"]),
            revoked=bool(doc.get("revoked", False)),
            exports=tuple(Export.from_json(name, e) for e in doc.get("exports", [])),
        )


class Directory:
    """This router's copy of the directory (thread-safe), checked against pinned keys."""

    def __init__(self, own_site: str, known: KnownKeys | None = None) -> None:
        self.own_site = own_site
        self.known = known
        self._lock = threading.Lock()
        self._sites: dict[str, SiteEntry] = {}
        self._listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call `listener(site name)` after every update or removal (revocation included)."""
        self._listeners.append(listener)

    def update(self, entry: SiteEntry) -> None:
        with self._lock:
            self._sites[entry.name] = entry
        self._changed(entry.name)

    def remove(self, name: str) -> None:
        with self._lock:
            self._sites.pop(name, None)
        self._changed(name)

    def touch(self, name: str) -> None:
        """Tell the listeners that what we trust of `name` changed (its keys accepted)."""
        self._changed(name)

    def _changed(self, name: str) -> None:
        for listener in list(self._listeners):
            listener(name)

    def site(self, name: str) -> SiteEntry | None:
        with self._lock:
            return self._sites.get(name)

    def sites(self) -> list[SiteEntry]:
        with self._lock:
            return sorted(self._sites.values(), key=lambda s: s.name)

    def revoked(self, name: str) -> bool:
        """The bridge marked `name` revoked (a site not yet seen is not)."""
        entry = self.site(name)
        return entry is not None and entry.revoked

    def gone(self, *names: str) -> str | None:
        """The first of these sites this router can no longer deal with: this site
        revoked, or another one unknown, revoked or with keys not trusted."""
        for name in names:
            if self.revoked(name) if name == self.own_site else self.keys_of(name) is None:
                return name
        return None

    def keys_of(self, name: str) -> SiteKeys | None:
        """The keys to trust for `name`: None if unknown, revoked or not the pinned ones."""
        entry = self.site(name)
        if entry is None or entry.revoked:
            return None
        if self.known is not None and not self.known.trusts(name, entry.keys):
            return None
        return entry.keys

    def export(self, aet: str) -> Export | None:
        """The export of another site with this AE title (AE titles are unique)."""
        with self._lock:
            for entry in self._sites.values():
                if entry.name == self.own_site or entry.revoked:
                    continue
                for export in entry.exports:
                    if export.aet == aet:
                        return export
        return None

    def imports(self) -> list[Export]:
        """Every remote AE this site may call (for at least one service)."""
        with self._lock:
            entries = list(self._sites.values())
        return sorted(
            (
                e
                for s in entries
                if s.name != self.own_site and not s.revoked
                for e in s.exports
                if ANY_SITE in e.sites or self.own_site in e.sites
            ),
            key=lambda e: e.aet,
        )


class KnownKeys:
    """Pinned fingerprints, one per site, in `relay/known_sites.json` of the data folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pins: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        self.changed: dict[str, str] = {}  # site -> the new, refused fingerprint

    def trusts(self, site: str, keys: SiteKeys) -> bool:
        with self._lock:
            pinned = self._pins.get(site)
            if pinned is None:
                self._pins[site] = keys.fingerprint
                self._save()
                return True
            if pinned == keys.fingerprint:
                return True
            self.changed[site] = keys.fingerprint
            return False

    def accept(self, site: str, fingerprint: str) -> None:
        """An administrator accepts `site`'s new keys (after comparing them out of band)."""
        with self._lock:
            self._pins[site] = fingerprint
            self.changed.pop(site, None)
            self._save()

    def pinned(self) -> dict[str, str]:
        with self._lock:
            return dict(self._pins)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._pins, indent=1, sort_keys=True))
        os.replace(tmp, self.path)
