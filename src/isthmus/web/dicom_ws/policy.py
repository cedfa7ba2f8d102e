"""Who may use the DICOM-over-WebSocket gateway for what (docs/security.md).

- Identity: the same credentials as the HTTP API (web/auth.py) with the `dicom-ws`
  permission; browsers pass the token as a WebSocket subprotocol.
- Origin: a browser's `Origin` must be this server itself, `public_url`, or one of
  `cors_origins`; a client that sends no Origin is not a browser and is judged by
  its credentials alone.
- Peers a browser may reach and AE titles it may register or call as:
  `dicom_ws_peers` and `dicom_ws_aets`.  Unset, developer mode (loopback, no
  credentials configured) allows every configured peer plus this archive, and any
  AE title; otherwise nothing.  A browser can never take the archive's own AE
  title, nor a configured peer's unless `dicom_ws_aets` names it: that would let it
  receive the peer's C-MOVE traffic or use the peer's access rights.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from isthmus.config import ConfigError, Peer, Settings, check_aet

ANY = "*"


@dataclass(frozen=True)
class Refusal(Exception):
    """A request the gateway refuses before the WebSocket opens: HTTP status and why."""

    status: int
    message: str


class GatewayPolicy:
    """The configured rules, applied to peers, AE titles and origins."""

    def __init__(self, settings: Settings, developer_mode: bool) -> None:
        self.settings = settings
        self.developer_mode = developer_mode
        default = (ANY,) if developer_mode else ()
        self.peers = tuple(settings.dicom_ws_peers) or default
        self.aets = tuple(settings.dicom_ws_aets) or default
        self._reserved = {settings.aet} | {p.aet for p in settings.peers}

    def reachable(self) -> list[str]:
        """AE titles of the peers a browser may open an association to."""
        known = [self.settings.aet] + [p.aet for p in self.settings.peers]
        if ANY in self.peers:
            return known
        return [aet for aet in known if aet in self.peers]

    def peer(self, aet: str, archive_address: tuple[str, int] | None) -> Peer:
        """Where an association to `aet` goes, or Refusal 403/404."""
        if aet not in self.reachable():
            if aet == self.settings.aet or self.settings.peer(aet) is not None:
                raise Refusal(
                    403, f"peer {aet!r} is not among the peers a browser may reach (dicom_ws_peers)"
                )
            raise Refusal(404, f"no known peer has AE title {aet!r}")
        if aet == self.settings.aet:
            if archive_address is None:
                raise Refusal(503, "the archive's DICOM port is not running")
            return Peer(aet, *archive_address)
        peer = self.settings.peer(aet)
        assert peer is not None
        return peer

    def may_use_aet(self, aet: str) -> str:
        """`aet` checked as a title a browser registers or calls as; Refusal 400/403 otherwise."""
        try:
            aet = check_aet(aet)
        except ConfigError as exc:
            raise Refusal(400, str(exc)) from None
        if aet in self.aets:
            return aet
        if aet in self._reserved:
            raise Refusal(403, f"AE title {aet!r} belongs to this archive or a configured peer")
        if ANY not in self.aets:
            raise Refusal(
                403, f"AE title {aet!r} is not among those a browser may use (dicom_ws_aets)"
            )
        return aet

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Same-origin, `public_url` or a `cors_origins` entry (PS: RFC 6455 10.2)."""
        if origin is None:
            return True
        allowed = set(self.settings.cors_origins)
        if ANY in allowed or origin in allowed:
            return True
        netloc = urlsplit(origin).netloc.lower()
        if host and netloc == host.lower():
            return True
        public = self.settings.public_url
        return bool(public) and urlsplit(public).netloc.lower() == netloc
