"""The sharing side's answer to an offer, whichever path carried it (docs/p2p.md).

The node's HTTP (`POST /api/p2p/{id}/offer`, p2p/web.py) and the bridge (NATS request
on `relay.<site>.p2p`, p2p/bridge_signal.py) both call `check_offer`: the share must
be active and the offer's proof must be the HMAC of docs/p2p.md "Signalling", so the
bridge answers exactly as the node's HTTP does.  `serve` then runs the sender on the
data channel, stopping when the share is revoked.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from isthmus.archive import Archive, Share, ShareRefused, Shares
from isthmus.archive.activity import MINOR_FAILURE, SUCCESS
from isthmus.p2p.ice import IceConfig
from isthmus.p2p.signalling import answer_proof, offer_proof, verify

log = logging.getLogger(__name__)
WRONG_SECRET = "the offer does not prove knowledge of the link's secret (wrong or truncated link?)"


def check_offer(row: Share, doc: object, who: object = None) -> str:
    """The offer SDP of a valid offer for the active share `row` (from `Shares.check`,
    which refuses an unknown, expired or revoked link with 404/410); ShareRefused 400
    for a body that is not an offer, 403 for a wrong proof."""
    sdp = doc.get("sdp") if isinstance(doc, dict) else None
    if not isinstance(sdp, str):
        raise ShareRefused(400, 'give the SDP offer as {"sdp": ..., "proof": ...}')
    try:
        expected = offer_proof(row.secret, row.link_id, sdp)
    except ValueError as exc:
        raise ShareRefused(400, str(exc)) from None
    if not verify(expected, doc.get("proof") if isinstance(doc, dict) else None):
        log.warning("p2p: offer for share %s with a wrong secret from %s", row.link_id, who)
        raise ShareRefused(403, WRONG_SECRET)
    return sdp


def audit(
    archive: Archive,
    action: str,
    link_id: str,
    *,
    refused: Exception | None = None,
    door: str = "p2p",
    user: str = "anonymous",
    address: str | None = None,
) -> None:
    """Publish ``audit.share-link`` (docs/operations.md; PS3.15 A.5.3.6 DICOM Instances
    Accessed): `action` "created" (C), "used" (R) or "revoked" (D), a use `refused`
    with outcome 4 and its reason.  The archive participant is the link's path
    (``/share/LINK_ID``), and the study is the link's (the trail adds its patient): a
    refused use names the study of a link that exists (revoked, expired, wrong proof),
    none for an unknown link id.  A blocking call (it reads the index)."""
    found = archive.shares.get(link_id)
    archive.activity.audit(
        "share-link",
        outcome=MINOR_FAILURE if refused is not None else SUCCESS,
        description=str(refused) if refused is not None else None,
        door=door,
        user=user,
        address=address,
        local=f"/share/{link_id}",
        studies=[{"uid": found.study_instance_uid}] if found is not None else [],
        detail={"action": action, "link": link_id},
    )


def still_active(shares: Shares, link_id: str) -> bool:
    found = shares.get(link_id)
    return found is not None and found.state() == "active"


async def serve(peer: Any, archive: Archive, row: Share) -> None:
    """Serve the study on the peer's data channel until the receiver is done."""
    from isthmus.p2p.channel import ChannelClosed
    from isthmus.p2p.sender import Sender

    def allowed() -> bool:
        return still_active(archive.shares, row.link_id)

    try:
        channel = await peer.channel()
        await Sender(archive, row.study_instance_uid, allowed=allowed).serve(channel)
    except ChannelClosed as exc:
        log.warning("p2p: share %s: %s", row.link_id, exc)
    finally:
        await peer.close()


async def answer(
    archive: Archive, ice: IceConfig, row: Share, sdp: str, tasks: set[asyncio.Task[Any]]
) -> dict[str, str]:
    """Answer a checked offer with the node's ICE servers and serve the study on the
    channel in the background (kept in `tasks`); the reply ``{"sdp", "proof"}``.
    ShareRefused 410 when the link's study is no longer in the archive (deleted since
    the link was made: asked after the proof, so only a holder of the secret learns
    it), 503 without a WebRTC library, 400 for an offer it cannot answer."""
    from isthmus.p2p.channel import P2PUnavailable, Peer

    if not await asyncio.to_thread(archive.instances, row.study_instance_uid):
        raise ShareRefused(410, f"the study of share link {row.link_id} is no longer on this node")
    try:
        peer = Peer(ice.servers, ice.relay_only)
    except P2PUnavailable as exc:
        raise ShareRefused(503, str(exc)) from None
    try:
        sdp_answer = await peer.answer(sdp)
    except Exception as exc:
        await peer.close()
        raise ShareRefused(400, f"cannot answer this offer: {exc}") from None
    spawn(tasks, serve(peer, archive, row))
    return {"sdp": sdp_answer, "proof": answer_proof(row.secret, row.link_id, sdp, sdp_answer)}


def spawn(tasks: set[asyncio.Task[Any]], work: Any) -> None:
    """Run `work` in the background, kept in `tasks` until it ends."""
    task = asyncio.ensure_future(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
