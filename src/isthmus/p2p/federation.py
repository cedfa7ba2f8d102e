"""Discovery through the relay's NATS (docs/p2p.md, "Discovery"): who is online, and
the studies shared to the federation.

- **Presence.**  Every site puts, every HEARTBEAT seconds, the key ``<site>`` of the KV
  bucket ``p2p-presence`` (entries expire after PRESENCE_TTL seconds):
  ``{"site", "ts", "signature"}``, the Ed25519 signature of the site's relay key over
  ``"isthmus-p2p-presence" LF site LF ts`` (`SiteIdentity.sign`; the bytes begin in
  lower case, a bridge request's with an HTTP method, so neither passes for the
  other).  A site is online when its entry is there, signed by the keys the directory
  (pinned) gives for it, and younger than PRESENCE_TTL.
- **Listings.**  For each active share published to the federation and each other
  trusted site, the key ``<recipient>.<sharer>.<link_id>`` of the bucket ``p2p-shares``
  holds a relay envelope (relay/crypto.py: HPKE-sealed to the recipient, signed by the
  sharer; clear header ``{"kind": "p2p-share", "link": LINK_ID}``) whose body is the
  listing: study, description, patient name, date, instances, bytes, expiry, and the
  whole link with its secret.  The bridge, NATS and whoever reads the bucket see site
  names, link ids and sizes only.  The sharer deletes the entries of a share revoked or
  expired (and a reader ignores an expired listing).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from isthmus.archive.matching import Query
from isthmus.p2p.signalling import link_url
from isthmus.relay.crypto import EnvelopeError
from isthmus.relay.signing import verify_signature

if TYPE_CHECKING:
    from isthmus.archive import Archive, Share
    from isthmus.relay.site import RelaySite

log = logging.getLogger(__name__)
PRESENCE = "p2p-presence"
LISTINGS = "p2p-shares"
HEARTBEAT = 10.0  # seconds between a site's presence puts (and listing checks)
PRESENCE_TTL = 30.0  # seconds a presence entry lives (three heartbeats)
KIND = "p2p-share"
PRESENCE_CONTEXT = "isthmus-p2p-presence"


def presence_message(site: str, ts: str) -> bytes:
    return f"{PRESENCE_CONTEXT}\n{site}\n{ts}".encode()


def study_summary(archive: Archive, study_uid: str) -> dict[str, Any]:
    """What a peer's list shows of a study: description, patient, date, instances."""
    rows = archive.instances(study_uid)
    found = archive.find(
        Query(
            level="STUDY",
            keys={0x0020000D: study_uid, 0x00081030: "", 0x00100010: "", 0x00080020: ""},
        )
    ).matches

    def value(tag: str) -> str:
        item = found[0].get(tag, {}).get("Value", [""]) if found else [""]
        first = item[0] if item else ""
        return str(first.get("Alphabetic", "")) if isinstance(first, dict) else str(first)

    return {
        "study": study_uid,
        "description": value("00081030"),
        "patient_name": value("00100010"),
        "study_date": value("00080020"),
        "instances": len(rows),
        "bytes": sum(r.size for r in rows),
    }


def join(site: RelaySite) -> None:
    """Start p2p sharing over a started relay site: discovery (`FederatedSharing`) and
    signalling through the bridge (p2p/bridge_signal.py); they stop with the site.
    The node's assembly (isthmus.server) calls it: the relay door knows nothing of p2p."""
    from isthmus.p2p.bridge_signal import BridgeSignalling
    from isthmus.relay.exports import _reachable

    settings = site.settings
    scheme = "https" if settings.tls_cert else "http"
    base = settings.public_url.rstrip("/") or (
        f"{scheme}://{_reachable(settings.host)}:{settings.http_port}"
    )
    site.signalling = BridgeSignalling(site).start()
    site.parts.append(site.signalling)
    site.sharing = FederatedSharing(site, base).start()
    site.parts.append(site.sharing)


class FederatedSharing:
    """This site's presence, its listings, and the peers' (on the relay's NATS link)."""

    def __init__(self, site: RelaySite, base_url: str) -> None:
        self.site = site
        self.archive = site.archive
        self.base_url = base_url  # the node's own HTTP, for the links it lists
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._published: set[str] = set()  # listing keys this site put
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ buckets
    def _kv(self, bucket: str, ttl: float | None = None) -> KeyValue:
        link = self.site.link
        assert link is not None

        async def open_or_create() -> KeyValue:
            try:
                return await link.js.key_value(bucket)
            except BucketNotFoundError:
                return await link.js.create_key_value(KeyValueConfig(bucket=bucket, ttl=ttl))

        return link.call(open_or_create(), timeout=15)

    def _call(self, coroutine: Any, timeout: float = 10) -> Any:
        assert self.site.link is not None
        return self.site.link.call(coroutine, timeout=timeout)

    # ------------------------------------------------------------------ running
    def start(self) -> FederatedSharing:
        self._thread = threading.Thread(target=self._run, name="p2p-federation", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.heartbeat()
                self.publish()
            except Exception as exc:  # NATS down: try again at the next beat
                log.warning("p2p: federation heartbeat failed: %s", exc)
            self._stop.wait(HEARTBEAT)

    def heartbeat(self) -> None:
        identity = self.site.identity
        ts = f"{time.time():.3f}"
        signature = identity.sign(presence_message(identity.name, ts)).hex()
        doc = {"site": identity.name, "ts": ts, "signature": signature}
        kv = self._kv(PRESENCE, ttl=PRESENCE_TTL)
        self._call(kv.put(identity.name, json.dumps(doc).encode()))

    # ------------------------------------------------------------------ listings
    def publish_soon(self) -> None:
        """`publish`, for a share just made or revoked: a failure (NATS down) is logged
        and the next heartbeat tries again."""
        try:
            self.publish()
        except Exception as exc:
            log.warning("p2p: listings not published yet: %s", exc)

    def publish(self) -> None:
        """Put the listings of every active federated share for every trusted peer
        that lacks one; delete those of shares revoked or expired."""
        with self._lock:
            own = self.site.name
            kv = self._kv(LISTINGS)
            keys = set(self._live(kv, self._keys(LISTINGS, f"*.{own}.*")))
            shares = self.archive.shares.federated()
            active = {s.link_id: s for s in shares if s.state() == "active"}
            peers = [
                s.name
                for s in self.site.directory.sites()
                if s.name != own and self.site.directory.keys_of(s.name) is not None
            ]
            wanted = {f"{p}.{own}.{link}": (p, active[link]) for link in active for p in peers}
            for key in keys - set(wanted):
                self._call(kv.purge(key))
            summaries: dict[str, dict[str, Any]] = {}
            for key, (peer, share) in wanted.items():
                if key in keys:
                    continue
                if share.study_instance_uid not in summaries:
                    summaries[share.study_instance_uid] = study_summary(
                        self.archive, share.study_instance_uid
                    )
                body = self.listing(share, summaries[share.study_instance_uid])
                peer_keys = self.site.directory.keys_of(peer)
                if peer_keys is None:
                    continue
                sealed = self.site.identity.seal(
                    peer, peer_keys, {"kind": KIND, "link": share.link_id}, body
                )
                self._call(kv.put(key, sealed))

    def listing(self, share: Share, summary: dict[str, Any]) -> bytes:
        doc = {
            **summary,
            "link_id": share.link_id,
            "site": self.site.name,
            "expires_at": share.expires_at.isoformat(),
            "link": link_url(self.base_url, share.link_id, share.secret, self.site.name),
        }
        return json.dumps(doc, sort_keys=True).encode()

    def _keys(self, bucket: str, pattern: str) -> list[str]:
        """The keys of `bucket` matching `pattern` that hold a value, from the stream's
        subjects (no consumer: a KV watch per listing would create one each time)."""
        assert self.site.link is not None
        prefix = f"$KV.{bucket}."
        info = self._call(
            self.site.link.js.stream_info(f"KV_{bucket}", subjects_filter=prefix + pattern)
        )
        subjects = info.state.subjects or {}
        return sorted(subject[len(prefix) :] for subject in subjects)

    def _live(self, kv: KeyValue, keys: list[str]) -> list[str]:
        """Those of `keys` not deleted or purged (their last message is a value)."""
        out = []
        for key in keys:
            try:
                self._call(kv.get(key))
                out.append(key)
            except KeyNotFoundError:
                continue
        return out

    def shared_with_us(self) -> list[dict[str, Any]]:
        """The peers' listings addressed to this site, opened and checked (the link
        and its secret included: the admin API shows them to this node's admins)."""
        own = self.site.name
        kv = self._kv(LISTINGS)
        out = []
        now = datetime.now(UTC)
        online = self.online()
        for key in self._keys(LISTINGS, f"{own}.*.*"):
            try:
                entry = self._call(kv.get(key))
            except KeyNotFoundError:
                continue
            sharer = key.split(".")[1]
            try:
                opened = self.site.identity.open(
                    bytes(entry.value or b""), self.site.directory.keys_of, max_age=None
                )
                doc = json.loads(opened.body)
                if opened.header.get("from") != sharer or opened.header.get("kind") != KIND:
                    raise EnvelopeError(f"listing {key} not from {sharer}")
                if datetime.fromisoformat(doc["expires_at"]) <= now:
                    continue
            except (EnvelopeError, ValueError, KeyError) as exc:
                log.warning("p2p: listing %s refused: %s", key, exc)
                continue
            doc["online"] = sharer in online
            out.append(doc)
        return out

    def online(self) -> list[str]:
        """The sites whose presence entry is fresh and signed by their pinned keys."""
        kv = self._kv(PRESENCE, ttl=PRESENCE_TTL)
        found = []
        for name in self._keys(PRESENCE, "*"):
            try:
                doc = json.loads(self._call(kv.get(name)).value or b"{}")
                keys = self.site.directory.keys_of(name)
                ts = str(doc["ts"])
                if keys is None or doc.get("site") != name:
                    continue
                if not verify_signature(keys, presence_message(name, ts), str(doc["signature"])):
                    continue
                if time.time() - float(ts) <= PRESENCE_TTL:
                    found.append(name)
            except (KeyNotFoundError, KeyError, ValueError):
                continue
        return sorted(found)

    def status(self) -> dict[str, Any]:
        """`GET /api/p2p/federation`: the sites online and the studies shared to us."""
        return {
            "site": self.site.name,
            "online": self.online(),
            "shares": self.shared_with_us(),
        }
