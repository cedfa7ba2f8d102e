"""Fetch a shared study into this node's archive (docs/p2p.md): signalling over the
sharing node's HTTP or, for a federated link the fetching node cannot reach, through
the bridge (p2p/bridge_signal.py); then the receiver on the data channel.  When no
WebRTC path opens within ICE_TIMEOUT seconds, a federated fetch falls back to the relay
(p2p/fallback.py), and says so through `on_path`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from isthmus.archive import Archive
from isthmus.p2p.channel import Channel, ChannelClosed, Peer
from isthmus.p2p.ice import IceConfig
from isthmus.p2p.receiver import Progress, Receiver, TransferFailed
from isthmus.p2p.signalling import answer_proof, link_site, offer_proof, parse_link, verify

SIGNALLING_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0  # seconds to reach the sharing node's HTTP before the bridge is tried
ICE_TIMEOUT = 15.0  # seconds for a WebRTC path to open before the relay fallback
PathListener = Callable[[dict[str, str]], None]


class Unreachable(TransferFailed):
    """The sharing node's HTTP cannot be reached (another network, a firewall)."""


def _check_answer(secret: str, link_id: str, offer: str, doc: dict[str, Any]) -> str:
    answer = doc.get("sdp")
    if not isinstance(answer, str) or not verify(
        answer_proof(secret, link_id, offer, answer), doc.get("proof")
    ):
        raise TransferFailed("the answer does not prove knowledge of the link's secret: refused")
    return answer


async def signal(link: str, peer: Peer) -> None:
    """Offer to the sharing node, prove the secret, check its proof, apply its answer."""
    base, link_id, secret = parse_link(link)
    offer = await peer.offer()
    body = {"sdp": offer, "proof": offer_proof(secret, link_id, offer)}
    timeout = httpx.Timeout(SIGNALLING_TIMEOUT, connect=CONNECT_TIMEOUT)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            reply = await client.post(f"{base}/api/p2p/{link_id}/offer", json=body)
    except httpx.HTTPError as exc:
        raise Unreachable(f"cannot reach the sharing node {base}: {exc}") from None
    if reply.status_code != 200:
        try:
            message = reply.json().get("message", reply.text)
        except ValueError:
            message = reply.text
        raise TransferFailed(f"the sharing node refused: {message} (HTTP {reply.status_code})")
    await peer.accept(_check_answer(secret, link_id, offer, reply.json()))


async def signal_bridge(signalling: Any, sharer: str, link: str, peer: Peer) -> None:
    """The same offer and proofs, carried by NATS to site `sharer` (p2p/bridge_signal.py)."""
    from isthmus.p2p.bridge_wire import OFFER, SignallingRefused

    _base, link_id, secret = parse_link(link)
    offer = peer.local_sdp or await peer.offer()
    body = {"link_id": link_id, "sdp": offer, "proof": offer_proof(secret, link_id, offer)}
    try:
        doc = await asyncio.to_thread(signalling.ask, sharer, OFFER, body)
    except SignallingRefused as exc:
        raise TransferFailed(f"site {sharer} refused: {exc} ({exc.status})") from None
    await peer.accept(_check_answer(secret, link_id, offer, doc))


async def fetch(
    archive: Archive,
    link: str,
    on_progress: Callable[[Progress], None] | None = None,
    timeout: float = 30.0,
    *,
    ice: IceConfig | None = None,
    site: Any = None,
    on_path: PathListener | None = None,
) -> Progress:
    """Pull the linked study into `archive`; the final progress (`complete` when every
    instance is stored and verified).  TransferFailed says why it could not.

    `ice`: the node's STUN/TURN servers and policy (p2p/ice.py); none: host candidates
    only.  `site` (relay/site.py `RelaySite`): this node's membership of a federation,
    for a federated link (``…?site=S#…``): bridge signalling and the relay fallback.
    `on_path` hears which path is taken and why: ``{"signalling": "http"|"bridge",
    "path": "webrtc"|"relay", "why"}``."""
    _base, link_id, secret = parse_link(link)
    sharer = link_site(link)
    signalling = getattr(site, "signalling", None) if sharer else None
    path: dict[str, str] = {}

    def tell(**changes: str) -> None:
        path.update(changes)
        if on_path is not None:
            on_path(dict(path))

    ice = ice or IceConfig()
    peer = Peer(ice.servers, ice.relay_only)
    try:
        try:
            channel = await _open(link, peer, signalling, sharer or "", tell)
        except ChannelClosed as exc:  # no WebRTC path (or, relay-only, no TURN allocation)
            if signalling is None:
                raise
            tell(path="relay", why=f"no WebRTC path: {exc}")
            await peer.close()
            from isthmus.p2p.fallback import fetch_via_relay

            return await asyncio.to_thread(
                fetch_via_relay, signalling, sharer or "", link_id, secret, on_progress
            )
        return await Receiver(archive, timeout=timeout, on_progress=on_progress).run(channel)
    finally:
        await peer.close()


async def _open(
    link: str, peer: Peer, signalling: Any, sharer: str, tell: Callable[..., None]
) -> Channel:
    """Signal over the sharing node's HTTP, else (federated link) through the bridge;
    the open data channel, or ChannelClosed when no WebRTC path opens."""
    try:
        await signal(link, peer)
        tell(signalling="http", path="webrtc")
    except Unreachable as exc:
        if signalling is None:
            raise
        await signal_bridge(signalling, sharer, link, peer)
        tell(signalling="bridge", path="webrtc", why=str(exc))
    return await peer.channel(timeout=ICE_TIMEOUT if signalling else 20.0)
