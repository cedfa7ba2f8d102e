"""Fetch a shared study into this node's archive: signalling over the sharing node's
HTTP, then the receiver on the data channel (docs/p2p.md)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from isthmus.archive import Archive
from isthmus.p2p.channel import Peer
from isthmus.p2p.ice import IceConfig
from isthmus.p2p.receiver import Progress, Receiver, TransferFailed
from isthmus.p2p.signalling import answer_proof, offer_proof, parse_link, verify

SIGNALLING_TIMEOUT = 30.0


async def signal(link: str, peer: Peer) -> None:
    """Offer to the sharing node, prove the secret, check its proof, apply its answer."""
    base, link_id, secret = parse_link(link)
    offer = await peer.offer()
    body = {"sdp": offer, "proof": offer_proof(secret, link_id, offer)}
    try:
        async with httpx.AsyncClient(timeout=SIGNALLING_TIMEOUT) as client:
            reply = await client.post(f"{base}/api/p2p/{link_id}/offer", json=body)
    except httpx.HTTPError as exc:
        raise TransferFailed(f"cannot reach the sharing node {base}: {exc}") from None
    if reply.status_code != 200:
        try:
            message = reply.json().get("message", reply.text)
        except ValueError:
            message = reply.text
        raise TransferFailed(f"the sharing node refused: {message} (HTTP {reply.status_code})")
    doc = reply.json()
    answer = doc.get("sdp")
    if not isinstance(answer, str) or not verify(
        answer_proof(secret, link_id, offer, answer), doc.get("proof")
    ):
        raise TransferFailed("the answer does not prove knowledge of the link's secret: refused")
    await peer.accept(answer)


async def fetch(
    archive: Archive,
    link: str,
    on_progress: Callable[[Progress], None] | None = None,
    timeout: float = 30.0,
    ice: IceConfig | None = None,
) -> Progress:
    """Pull the linked study into `archive`; the final progress (`complete` when every
    instance is stored and verified).  TransferFailed says why it could not.  `ice`: the
    node's STUN/TURN servers and policy (p2p/ice.py); none: host candidates only."""
    ice = ice or IceConfig()
    peer = Peer(ice.servers, ice.relay_only)
    try:
        await signal(link, peer)
        channel = await peer.channel()
        return await Receiver(archive, timeout=timeout, on_progress=on_progress).run(channel)
    finally:
        await peer.close()
