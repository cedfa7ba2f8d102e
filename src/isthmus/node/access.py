"""Known peers and access control by AE title.

The peer list (config file and ``--peer``) is also the access-control list: a
service whose rule is "known" is open only to calling AE titles in it (and, with
``check_peer_host``, only from the peer's host).  C-MOVE destinations must always
be known: a peer from the list, or an AE registered at run time by another door
(e.g. a browser through the DICOM-over-WebSocket gateway).  Every door asks the
same object: the DIMSE door per service, the WebSocket gateway and the relay when
they register AEs as destinations.  A refusal is answered with the door's own
"not authorized" (DIMSE: isthmus.dicom.status.NOT_AUTHORIZED, PS3.7 Annex C).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable

from isthmus.config import Peer, Settings
from isthmus.node.tls import PeerIdentity, certificate_matches

log = logging.getLogger(__name__)


class AccessControl:
    """Decides who may use which DICOM service, and where C-MOVE may send."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = settings.access_policy()
        self._dynamic: dict[str, Callable[[], Peer | None]] = {}
        self._resolvers: list[Callable[[str], Peer | None]] = []
        self._lock = threading.Lock()

    def allowed(self, service: str, calling_aet: str, address: str | None) -> bool:
        """May `calling_aet` at `address` use `service` ("echo", "store", "find", "move", "get")?"""
        rule = self.policy.get(service, "known")
        if rule == "any":
            return True
        peer = self.settings.peer(calling_aet.strip())
        if peer is None:
            log.warning("refused %s from unknown calling AE %r", service, calling_aet)
            return False
        if self.settings.check_peer_host and address and not _same_host(peer.host, address):
            log.warning(
                "refused %s from %r: address %s is not %s", service, calling_aet, address, peer.host
            )
            return False
        return True

    def admit(
        self, calling_aet: str, secure: bool, peer_identity: PeerIdentity | None
    ) -> str | None:
        """Why an association from `calling_aet` may not even be accepted, or None.

        A known peer with `tls` must call over TLS; one with a `certificate` must present
        that client certificate, verified by the TLS port (PS3.15 Annex B: over TLS a
        peer is authenticated by its certificate).  Others are judged per service by `allowed`.
        """
        peer = self.settings.peer(calling_aet.strip())
        if peer is None:
            return None
        if (peer.tls or peer.certificate) and not secure:
            return f"{peer.aet} must call over TLS"
        if peer.certificate:
            if peer_identity is None:
                return f"{peer.aet} must present a client certificate"
            if not certificate_matches(peer.certificate, peer_identity):
                return f"{peer.aet} presented {peer_identity}, not {peer.certificate}"
        return None

    def destination(self, aet: str) -> Peer | None:
        """Where a C-MOVE to `aet` goes, or None if `aet` is not a known destination."""
        aet = aet.strip()
        with self._lock:
            dynamic = self._dynamic.get(aet)
        if dynamic is not None:
            peer = dynamic()
            if peer is not None:
                return peer
        configured = self.settings.peer(aet)
        if configured is not None:
            return configured
        for resolve in self._resolvers:
            peer = resolve(aet)
            if peer is not None:
                return peer
        return None

    def register_destination(self, aet: str, resolve: Callable[[], Peer | None]) -> None:
        """Make `aet` a known move destination while registered (used by other doors)."""
        with self._lock:
            self._dynamic[aet] = resolve

    def unregister_destination(self, aet: str) -> None:
        with self._lock:
            self._dynamic.pop(aet, None)

    def add_resolver(self, resolve: Callable[[str], Peer | None]) -> None:
        """Ask `resolve(aet)` for destinations neither registered here nor configured
        (AE titles another process of a shared archive holds, docs/scaling.md)."""
        self._resolvers.append(resolve)


def _same_host(host: str, address: str) -> bool:
    try:
        wanted = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return address in wanted
    return any(_ip_equal(addr, w) for w in wanted)


def _ip_equal(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, other: str) -> bool:
    try:
        o = ipaddress.ip_address(other)
    except ValueError:
        return False
    if addr.is_loopback and o.is_loopback:
        return True
    return addr == o
