"""The node's ICE servers (STUN, TURN) for p2p sharing, from the `[p2p]` settings.

Both ends use them: the sharing node when it answers an offer, the fetching node when it
offers, and browser recipients get them from ``GET /api/p2p/{id}/ice`` (an RTCIceServer
list, W3C WebRTC §4.2.1).  TURN credentials are either static (`turn_username` and
`turn_credential`, coturn's `lt-cred-mech` users) or minted for each connection from a
shared `turn_secret` the TURN server also knows, the "TURN REST API" coturn implements
(`use-auth-secret` + `static-auth-secret`; draft-uberti-behave-turn-rest-00 §2.2):

    username   = "<unix expiry time>:<name>"
    credential = base64(HMAC-SHA1(turn_secret, username))

so a credential handed to a browser stops working after `turn_ttl` seconds and the secret
never leaves the node.  `relay_only` forces iceTransportPolicy "relay" (RFC 8445 §5.1.1:
only relayed candidates, so the peers never learn each other's addresses and the only
path is the TURN server).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


class Settings(Protocol):
    """The `p2p_*` part of isthmus.config.Settings (a Protocol: config checks them here,
    so this module cannot import config)."""

    @property
    def p2p_ice_servers(self) -> Sequence[str]: ...
    @property
    def p2p_turn_username(self) -> str: ...
    @property
    def p2p_turn_credential(self) -> str: ...
    @property
    def p2p_turn_secret(self) -> str: ...
    @property
    def p2p_turn_ttl(self) -> float: ...
    @property
    def p2p_relay_only(self) -> bool: ...
    @property
    def relay(self) -> str: ...


@dataclass(frozen=True)
class IceServer:
    """One RTCIceServer: URLs sharing one set of credentials (none for STUN)."""

    urls: tuple[str, ...]
    username: str = ""
    credential: str = ""

    def as_json(self) -> dict[str, Any]:
        """The RTCIceServer dictionary a browser's RTCPeerConnection takes."""
        doc: dict[str, Any] = {"urls": list(self.urls)}
        if self.username or self.credential:
            doc["username"], doc["credential"] = self.username, self.credential
        return doc


@dataclass(frozen=True)
class IceConfig:
    """What a peer connection of this node uses: the servers and the transport policy."""

    servers: tuple[IceServer, ...] = ()
    relay_only: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "ice_servers": [s.as_json() for s in self.servers],
            "relay_only": self.relay_only,
        }


def check_url(url: str) -> str:
    """An ICE server URL (RFC 7064 stun:/stuns:, RFC 7065 turn:/turns:) without embedded
    credentials; the error names the setting."""
    text = url.strip()
    if not text.startswith(SCHEMES) or len(text.split(":", 1)[1]) == 0:
        raise ValueError(f"p2p ice_servers: {url!r} is not a stun:, stuns:, turn: or turns: URL")
    if "@" in text:
        raise ValueError(
            f"p2p ice_servers: {url!r} embeds credentials; give turn_username and "
            "turn_credential (or turn_secret) instead"
        )
    return text


def turn_rest_credentials(secret: str, ttl: float, name: str = "isthmus") -> tuple[str, str]:
    """A username valid until now + `ttl` seconds and its HMAC-SHA1 credential (the TURN
    REST API scheme coturn's `use-auth-secret` checks)."""
    expiry = int(time.time() + ttl)
    username = f"{expiry}:{name}" if name else str(expiry)
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_config(settings: Settings, name: str = "isthmus") -> IceConfig:
    """The node's ICE configuration, with freshly minted TURN credentials when a
    `turn_secret` is set (call it for each connection, not once)."""
    urls = tuple(check_url(u) for u in settings.p2p_ice_servers)
    stun = tuple(u for u in urls if u.startswith(("stun:", "stuns:")))
    turn = tuple(u for u in urls if u.startswith(("turn:", "turns:")))
    servers: list[IceServer] = [IceServer(stun)] if stun else []
    if turn:
        if settings.p2p_turn_secret:
            user, credential = turn_rest_credentials(
                settings.p2p_turn_secret, settings.p2p_turn_ttl, name
            )
        else:
            user, credential = settings.p2p_turn_username, settings.p2p_turn_credential
        servers.append(IceServer(turn, user, credential))
    return IceConfig(tuple(servers), settings.p2p_relay_only)


def check_settings(settings: Settings) -> None:
    """Settings that go together: TURN needs credentials; relay-only needs TURN, or a
    federation (`relay`), where the relay's object-store path is the fallback: relay-only
    without TURN there means "never a direct WebRTC path, always the relay"."""
    urls = [check_url(u) for u in settings.p2p_ice_servers]
    has_turn = any(u.startswith(("turn:", "turns:")) for u in urls)
    static = settings.p2p_turn_username or settings.p2p_turn_credential
    if static and settings.p2p_turn_secret:
        raise ValueError("p2p: give turn_username/turn_credential or turn_secret, not both")
    if has_turn and not (static or settings.p2p_turn_secret):
        raise ValueError("p2p: a turn: server needs turn_username/turn_credential or turn_secret")
    if settings.p2p_relay_only and not has_turn and not settings.relay:
        raise ValueError(
            "p2p: relay_only needs a turn: server in ice_servers (or a federation: --relay)"
        )
    if settings.p2p_turn_ttl <= 0:
        raise ValueError("p2p: turn_ttl must be positive")
