"""Signalling and the relay fallback through the bridge's NATS (docs/p2p.md,
"Federated links").

The sharing site answers NATS requests on ``relay.<site>.p2p``; every request and
reply is a relay envelope (relay/crypto.py: signed by its sender, sealed to its
recipient), clear header ``{"kind": …}`` only:

- ``p2p-offer``: body ``{"link_id", "sdp", "proof"}`` → ``p2p-answer``: ``{"sdp",
  "proof"}``, exactly what ``POST /api/p2p/{id}/offer`` answers (p2p/offers.py), or
  ``{"status", "error"}`` (404, 410, 403, 400 as over HTTP).
- ``p2p-relay``: body ``{"link_id", "proof", "destination_aet", "origin"}`` with
  proof = HMAC(SECRET, "isthmus-p2p/1" LF "relay" LF LINK_ID LF SITE LF AET) where
  SITE is the requesting site (the envelope's sender) → ``{"transfer", "study",
  "instances", "sop_instance_uids", "bytes"}``: the sharing site then sends the study
  as a relay transfer (relay/transfer_send.py) to that AE title of the requesting
  site (p2p/fallback.py), or ``{"status", "error"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from isthmus.archive import ShareRefused
from isthmus.p2p.bridge_wire import (
    ANSWER,
    OFFER,
    RELAY,
    TIMEOUT,
    SignallingRefused,
    p2p_subject,
)
from isthmus.p2p.ice import ice_config
from isthmus.p2p.offers import answer, audit, check_offer
from isthmus.p2p.signalling import relay_proof, verify
from isthmus.relay.crypto import EnvelopeError

if TYPE_CHECKING:
    from isthmus.relay.site import RelaySite

log = logging.getLogger(__name__)


class BridgeSignalling:
    """Both sides: `ask` (the fetching site) and the responder (the sharing site)."""

    def __init__(self, site: RelaySite) -> None:
        self.site = site
        self.archive = site.archive
        self.tasks: set[asyncio.Task[Any]] = set()
        self._subscription: Any = None

    # ------------------------------------------------------------ fetching side
    def ask(self, sharer: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """One sealed request to `sharer`'s site and its opened reply (blocking: call it
        from a thread, not from the link's loop).  SignallingRefused says why not."""
        site, link = self.site, self.site.link
        keys = site.directory.keys_of(sharer)
        if keys is None or link is None:
            raise SignallingRefused(404, f"site {sharer} is not a trusted site of the federation")
        sealed = site.identity.seal(sharer, keys, {"kind": kind}, json.dumps(body).encode())
        try:
            reply = link.call(
                link.nc.request(p2p_subject(sharer), sealed, timeout=TIMEOUT), TIMEOUT + 2
            )
            opened = site.identity.open(reply.data, site.directory.keys_of)
            if opened.header.get("from") != sharer:
                raise EnvelopeError(f"reply from {opened.header.get('from')!r}")
            doc = json.loads(opened.body)
        except (EnvelopeError, ValueError) as exc:
            raise SignallingRefused(502, f"site {sharer} answered nothing valid: {exc}") from None
        except Exception as exc:  # no responders, timeout, NATS down
            raise SignallingRefused(
                504, f"site {sharer} did not answer through the bridge: {exc or type(exc).__name__}"
            ) from None
        if "status" in doc:
            raise SignallingRefused(int(doc["status"]), str(doc.get("error", "")))
        return dict(doc)

    # ------------------------------------------------------------ sharing side
    def start(self) -> BridgeSignalling:
        link = self.site.link
        assert link is not None
        self._subscription = link.call(
            link.nc.subscribe(p2p_subject(self.site.name), cb=self._on_request), timeout=10
        )
        return self

    def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None and self.site.link is not None:
            try:
                self.site.link.call(subscription.unsubscribe(), timeout=5)
            except Exception:  # NATS gone: the subscription went with it
                log.debug("p2p: unsubscribe failed", exc_info=True)

    async def _on_request(self, msg: Any) -> None:
        site = self.site
        try:
            opened = site.identity.open(msg.data, site.directory.keys_of)
            doc = json.loads(opened.body)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except (EnvelopeError, ValueError) as exc:
            log.warning("p2p: request through the bridge dropped: %s", exc)
            return
        caller, kind = str(opened.header["from"]), opened.header.get("kind")
        try:
            if kind == OFFER:
                answer = await self._audited(caller, doc, self._offer(doc))
            elif kind == RELAY:
                answer = await self._audited(caller, doc, self._relay(caller, doc))
            else:
                raise ShareRefused(400, f"unknown request {kind!r}")
        except ShareRefused as exc:
            answer = {"status": exc.status, "error": str(exc)}
        except Exception as exc:  # a failure of ours: the caller hears of it
            log.warning("p2p: %s from site %s failed: %s", kind, caller, exc)
            answer = {"status": 500, "error": str(exc) or type(exc).__name__}
        keys = site.directory.keys_of(caller)
        if keys is not None and msg.reply:
            header = {"kind": ANSWER if kind == OFFER else str(kind)}
            sealed = site.identity.seal(caller, keys, header, json.dumps(answer).encode())
            await site.link.nc.publish(msg.reply, sealed)  # type: ignore[union-attr]

    async def _audited(
        self, caller: str, doc: dict[str, Any], work: Awaitable[dict[str, Any]]
    ) -> dict[str, Any]:
        """`work`'s answer, the link's use audited as over HTTP (p2p/offers.py `audit`):
        the requesting site is the user, a refusal is outcome 4 with its reason."""
        link_id = str(doc.get("link_id", ""))
        try:
            done = await work
        except ShareRefused as exc:
            await asyncio.to_thread(
                audit, self.archive, "used", link_id, refused=exc, door="relay", user=caller
            )
            raise
        await asyncio.to_thread(audit, self.archive, "used", link_id, door="relay", user=caller)
        return done

    async def _offer(self, doc: dict[str, Any]) -> dict[str, Any]:
        """As `POST /api/p2p/{id}/offer` (p2p/web.py): check, answer, serve."""
        link_id = str(doc.get("link_id", ""))
        row = await asyncio.to_thread(self.archive.shares.check, link_id)
        sdp = check_offer(row, doc, "the bridge")
        return await answer(self.archive, ice_config(self.site.settings), row, sdp, self.tasks)

    async def _relay(self, caller: str, doc: dict[str, Any]) -> dict[str, Any]:
        """The relay fallback: check the share and the proof, then send the study."""
        from isthmus.p2p.fallback import send_study

        link_id = str(doc.get("link_id", ""))
        aet = str(doc.get("destination_aet", ""))
        origin = doc.get("origin")
        row = await asyncio.to_thread(self.archive.shares.check, link_id)
        if not verify(relay_proof(row.secret, link_id, caller, aet), doc.get("proof")):
            log.warning(
                "p2p: relay request for share %s with a wrong secret from %s", link_id, caller
            )
            raise ShareRefused(403, "the request does not prove knowledge of the link's secret")
        if not aet or not isinstance(origin, dict) or origin.get("site") != caller:
            raise ShareRefused(400, "a relay request names the destination AE and its origin")
        return await asyncio.to_thread(send_study, self.site, row, caller, aet, origin)
