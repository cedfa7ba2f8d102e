"""A site's relay router: remote AE titles on the site's DICOM port, and the far side's agent.

A workstation at site A calls an AE title exported by site B on A's own Isthmus DICOM
port, exactly as if it were local (seed 002).  `RelayRouter` keeps a route in the
node's `AssociationRouter` for every remote AE title the directory lets this site call
(`Directory.imports`), in step with the directory (a revoked site's routes go, and its
associations are aborted); the route's handler is the caller's side (caller.py).  It
also answers other sites' `relay.<own site>.open` requests for this site's exports
(agent.py).  Both sides relay whole DIMSE messages, sealed end to end (session.py,
wire.py; docs/relay.md, "Association relay").
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from isthmus.archive import Activity
from isthmus.archive.activity import MINOR_FAILURE, SUCCESS
from isthmus.node.router import AssociationRouter
from isthmus.relay.agent import AgentSide
from isthmus.relay.caller import CallerSide, MoveElsewhere
from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory import Directory
from isthmus.relay.door import Allowed
from isthmus.relay.link import Link
from isthmus.relay.session import Session

log = logging.getLogger(__name__)


class RelayRouter:
    """The relay door of one site (`start()` it once the link is connected)."""

    def __init__(
        self,
        *,
        link: Link,
        identity: SiteIdentity,
        directory: Directory,
        exports: dict[str, tuple[str, int]],
        node: AssociationRouter,
        calling_aet: str,
        timeout: float = 30.0,
        idle: float = 300.0,
        activity: Activity | None = None,
        moves: MoveElsewhere | None = None,
        allowed: Allowed | None = None,
        max_associations: int = 64,
    ) -> None:
        """`exports`: this site's exported AE titles and where each device listens;
        `calling_aet`: the AE title this router calls as when it speaks for itself
        (transfers; a relayed association keeps its caller's); `timeout`: the bound of
        every wait for the other router, NATS or a device's answer; `idle`: how long a
        DICOM peer may say nothing in an association; `activity`: where associations
        are told (audit trail, the admin page's contacts); `moves`: the transfer work
        that carries out a C-MOVE to a destination outside the far site; `allowed`:
        this node's own access rules, `allowed(service, calling AE, address)`
        (node.access.AccessControl.allowed), applied to local callers of remote AEs;
        `max_associations`: how many associations one other site may hold here at once
        (more are refused, transient: a compromised site cannot exhaust the devices)."""
        self.link = link
        self.identity = identity
        self.directory = directory
        self.exports = dict(exports)
        self.node = node
        self.calling_aet = calling_aet
        self.timeout = timeout
        self.idle = idle
        self.activity = activity if activity is not None else Activity()
        self.moves = moves
        self.allowed = allowed
        self.max_associations = max_associations
        self.interval = max(0.2, min(timeout / 3, 10.0))  # heartbeat period
        self.caller = CallerSide(self)
        self.agent = AgentSide(self)
        self._routed: set[str] = set()
        self._sessions: set[Session] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._subscription: Any = None
        self._heartbeat: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        own = self.identity.name
        self._subscription = self.link.call(
            self.link.nc.subscribe(f"relay.{own}.open", cb=self.agent.on_open),
            timeout=self.timeout,
        )
        # The server knows the subscription when start() returns: other sites' open
        # requests from now on find it (a SUB not yet flushed gives them no responders).
        self.link.call(
            self.link.nc.flush(timeout=math.ceil(self.timeout)), timeout=self.timeout + 2
        )
        self.directory.on_change(self._changed)
        self.sync_routes()
        self._heartbeat = self.spawn_thread(self._beat, name=f"relay-heartbeat-{own}")
        log.info("relay router of site %s: routes %s", own, sorted(self._routed) or "none")

    def close(self) -> None:
        """Stop answering, remove the routes, abort the associations in progress."""
        self._stop.set()
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                self.link.call(subscription.unsubscribe(), timeout=5)
            except Exception:  # NATS gone: the subscription is gone with it
                log.debug("relay: unsubscribe failed", exc_info=True)
        with self._lock:
            routed, self._routed = set(self._routed), set()
            sessions = list(self._sessions)
        for aet in routed:
            self.node.remove_route(aet)
        for session in sessions:
            session.abort()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=self.interval + 5)

    def spawn_thread(self, target: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        return thread

    # -- routes: the directory's imports ---------------------------------------
    def _changed(self, site: str) -> None:
        if self._stop.is_set():
            return
        self.sync_routes()
        if self.directory.keys_of(site) is None:  # revoked, removed or keys changed
            with self._lock:
                cut = [s for s in self._sessions if s.peer_site == site]
            for session in cut:
                log.warning("relay %s: site %s revoked: A-ABORT", session.label, site)
                session.abort(tell=False)

    def sync_routes(self) -> None:
        """A route for every remote AE title this site may call, and no other."""
        wanted = {e.aet for e in self.directory.imports() if e.aet not in self.exports}
        with self._lock:
            added, removed = wanted - self._routed, self._routed - wanted
            self._routed = wanted
        for aet in sorted(added):
            self.node.add_route(aet, self.caller)
        for aet in sorted(removed):
            self.node.remove_route(aet)
        if added or removed:
            log.info("relay routes: +%s -%s", sorted(added), sorted(removed))

    def routes(self) -> list[str]:
        with self._lock:
            return sorted(self._routed)

    # -- associations -----------------------------------------------------------
    def opened(
        self,
        session: Session,
        calling_aet: str,
        called_aet: str,
        address: str,
        called_address: str | None = None,
    ) -> None:
        """A relayed association began: audit it, announce it, watch its heartbeat.
        `address` is the caller's (its IP address, or "A (relay)" at the far site);
        `called_address` the called AE's when it is at another site ("B (relay)")."""
        key = f"relay-{session.aid or id(session)}"
        payload = {
            "id": key,
            "direction": "relay",
            "calling_aet": calling_aet,
            "called_aet": called_aet,
            "address": address,
            "site": session.peer_site,
        }
        self.audit_association(
            True, calling_aet, called_aet, address, None, session.peer_site, called_address
        )
        self.activity.events.publish("association.opened", payload, local=True)

        def ended(_session: Session) -> None:
            with self._lock:
                self._sessions.discard(session)
            self.activity.events.publish("association.closed", payload, local=True)

        session.on_end = ended
        with self._lock:
            self._sessions.add(session)
        if self._stop.is_set():
            session.abort()

    def audit_association(
        self,
        accepted: bool,
        calling_aet: str,
        called_aet: str,
        address: str,
        reason: str | None,
        site: str = "",
        called_address: str | None = None,
    ) -> None:
        """The audit trail's Association event (PS3.15 A.5), door "relay": both sites
        log it, each naming the other (the caller's site as the called AE's network
        access point "B (relay)", the far site as the requestor's, "A (relay)")."""
        self.activity.audit(
            "association",
            outcome=SUCCESS if accepted else MINOR_FAILURE,
            description=reason,
            door="relay",
            user=calling_aet,
            address=address,
            local=called_aet,
            peer=site,
            detail={"called_address": called_address} if called_address else None,
        )

    def sessions(self, site: str | None = None) -> int:
        """Relayed associations in progress (with `site` only, when given)."""
        with self._lock:
            return sum(1 for s in self._sessions if site is None or s.peer_site == site)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                sessions = list(self._sessions)
            for session in sessions:
                try:
                    session.tick(self.interval)
                except Exception:  # one association's trouble must not stop the others'
                    log.exception("relay %s: heartbeat failed", session.label)
