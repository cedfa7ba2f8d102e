"""The p2p door on the node's HTTP: share links and signalling (docs/p2p.md).

- ``POST /api/shares`` (admin) ``{"study": UID, "expires": "7d"}`` → 201 with the link
  (the only time its secret is shown); ``GET /api/shares`` (admin) lists them without
  secrets; ``DELETE /api/shares/{id}`` (admin) revokes one (a transfer in progress stops).
- ``POST /api/p2p/{id}/offer`` (no account: the link's secret is the credential)
  ``{"sdp", "proof"}`` → ``{"sdp", "proof"}``, the SDP answer; the sender then serves the
  study on the data channel.  404 unknown, 410 expired, revoked or its study deleted,
  403 wrong secret, 429 after too many wrong proofs for that link or from that address
  (p2p/limits.py).
- ``GET /api/p2p/{id}/ice`` (no account: an active link id) → the node's ICE servers for
  a browser recipient, TURN credentials freshly minted (p2p/ice.py).
- ``GET /api/p2p/federation`` (admin): the sites online and the studies other sites of
  the federation shared with this one (p2p/federation.py); ``POST /api/shares`` with
  ``"federation": true`` publishes a share to them.
- ``POST /api/admin/p2p/fetch`` (admin) ``{"link"}`` → 202 ``{"id"}``: this node pulls the
  study; ``GET /api/admin/p2p/fetch/{id}`` its progress (and, once ended, ``seconds``
  from signalling to the last instance stored).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from isthmus.archive import Share, ShareRefused
from isthmus.p2p.ice import ice_config
from isthmus.p2p.limits import OfferLimiter
from isthmus.p2p.offers import audit, spawn
from isthmus.p2p.signalling import link_url, parse_duration
from isthmus.web import siblings
from isthmus.web.admin import _same_origin
from isthmus.web.context import WebContext
from isthmus.web.errors import HTTPError, bad_request, not_found

log = logging.getLogger(__name__)
Handler = Callable[[Request], Awaitable[Response]]


def share_json(row: Share) -> dict[str, Any]:
    return {
        "link_id": row.link_id,
        "study": row.study_instance_uid,
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "state": row.state(),
    }


async def _body(request: Request) -> dict[str, Any]:
    try:
        doc = await request.json()
    except ValueError:
        raise bad_request("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise bad_request("the body is not a JSON object")
    return doc


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


class P2PDoor:
    """The door's state: senders and fetches in progress (tasks kept until they end)."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.tasks: set[asyncio.Task[Any]] = set()
        self.fetches: dict[str, dict[str, Any]] = {}
        settings = ctx.settings
        self.limiter = OfferLimiter(settings.p2p_offer_failures, settings.p2p_offer_refill)

    def admin(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            principal = self.ctx.authenticator.require(
                request.headers.get("authorization"), "admin"
            )
            request.scope.setdefault("state", {})["principal"] = principal
            if request.method in ("POST", "DELETE"):
                _same_origin(self.ctx, request)
            return await handler(request)

        return endpoint

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/shares", self.admin(self.create_share), methods=["POST"]),
            Route("/api/shares", self.admin(self.list_shares), methods=["GET"]),
            Route("/api/shares/{link_id}", self.admin(self.revoke_share), methods=["DELETE"]),
            Route("/api/p2p/{link_id}/offer", self.offer, methods=["POST"]),
            Route("/api/p2p/{link_id}/ice", self.ice, methods=["GET"]),
            Route("/api/p2p/federation", self.admin(self.federation), methods=["GET"]),
            Route("/api/admin/p2p/fetch", self.admin(self.start_fetch), methods=["POST"]),
            Route(
                "/api/admin/p2p/fetch/{fetch_id}", self.admin(self.fetch_status), methods=["GET"]
            ),
        ]

    def _spawn(self, work: Awaitable[Any]) -> None:
        spawn(self.tasks, work)

    async def _audit(
        self, request: Request, action: str, link_id: str, refused: Exception | None = None
    ) -> None:
        """The share-link audit message of this request (p2p/offers.py `audit`): the
        admin who created or revoked the link, an anonymous caller who used it."""
        principal = request.scope.get("state", {}).get("principal")
        await asyncio.to_thread(
            audit,
            self.ctx.archive,
            action,
            link_id,
            refused=refused,
            user=getattr(principal, "name", "anonymous"),
            address=_client(request),
        )

    async def create_share(self, request: Request) -> Response:
        doc = await _body(request)
        study = doc.get("study")
        if not isinstance(study, str) or not study:
            raise bad_request('give the study as {"study": "<Study Instance UID>"}')
        try:
            lifetime = parse_duration(str(doc.get("expires", "7d")))
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        archive = self.ctx.archive
        if not await asyncio.to_thread(archive.instances, study):
            raise not_found(f"no study {study} in this archive")
        federation = doc.get("federation", False) is True
        sharing = self._sharing()
        if federation and sharing is None:
            raise bad_request("this node is not a site of a federation (isthmus serve --relay)")
        row = await asyncio.to_thread(archive.shares.create, study, lifetime, federation)
        base = str(request.base_url).rstrip("/")
        site = sharing.site.name if federation else None
        if federation:
            self._spawn(asyncio.to_thread(sharing.publish_soon))
        await self._audit(request, "created", row.link_id)
        return JSONResponse(
            {**share_json(row), "url": link_url(base, row.link_id, row.secret, site)},
            status_code=201,
        )

    def _sharing(self) -> Any:
        """This site's p2p discovery (p2p/federation.py), or None off a federation."""
        return getattr(self.ctx.relay, "sharing", None)

    async def federation(self, request: Request) -> Response:
        """The sites online and the studies peers shared to this site."""
        sharing = self._sharing()
        if sharing is None:
            return JSONResponse({"online": [], "shares": []})
        try:
            found = await asyncio.to_thread(sharing.status)
        except Exception as exc:  # NATS down: say so
            raise HTTPError(503, f"the federation cannot be read: {exc}") from None
        return JSONResponse(found, headers={"Cache-Control": "no-store"})

    async def list_shares(self, request: Request) -> Response:
        rows = await asyncio.to_thread(
            self.ctx.archive.shares.list, request.query_params.get("study")
        )
        return JSONResponse(
            {"shares": [share_json(r) for r in rows]}, headers={"Cache-Control": "no-store"}
        )

    async def revoke_share(self, request: Request) -> Response:
        link_id = request.path_params["link_id"]
        if not await asyncio.to_thread(self.ctx.archive.shares.revoke, link_id):
            raise not_found(f"no share link {link_id} on this node")
        await self._audit(request, "revoked", link_id)
        sharing = self._sharing()
        if sharing is not None:  # withdraw its listings from the peers
            self._spawn(asyncio.to_thread(sharing.publish_soon))
        return JSONResponse({"revoked": link_id})

    async def offer(self, request: Request) -> Response:
        """Signalling: check the share and the offer's proof, answer with ours."""
        from isthmus.p2p.offers import answer, check_offer

        link_id = request.path_params["link_id"]
        client = request.client.host if request.client else "?"
        wait = self.limiter.retry_after(link_id, client)
        if wait:
            limited = HTTPError(
                429,
                "too many offers with a wrong proof for this link or from this address; "
                f"retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
            await self._audit(request, "used", link_id, limited)
            raise limited
        shares = self.ctx.archive.shares
        try:
            row = await asyncio.to_thread(shares.check, link_id)
            sdp = check_offer(row, await _body(request), client)
            ice = ice_config(self.ctx.settings)
            reply = await answer(self.ctx.archive, ice, row, sdp, self.tasks)
        except ShareRefused as exc:
            if exc.status == 403:
                self.limiter.failed(link_id, client)
            await self._audit(request, "used", link_id, exc)
            raise HTTPError(exc.status, str(exc)) from None
        await self._audit(request, "used", link_id)
        return JSONResponse(reply)

    async def _active(self, link_id: str) -> Share:
        """The share, if it exists and is active; else 404/410 with the reason."""
        try:
            return await asyncio.to_thread(self.ctx.archive.shares.check, link_id)
        except ShareRefused as exc:
            raise HTTPError(exc.status, str(exc)) from None

    async def ice(self, request: Request) -> Response:
        """ICE servers for a browser recipient of an active link (RTCIceServer list)."""
        link_id = request.path_params["link_id"]
        await self._active(link_id)
        doc = ice_config(self.ctx.settings).as_json()
        return JSONResponse(doc, headers={"Cache-Control": "no-store"})

    async def start_fetch(self, request: Request) -> Response:
        from isthmus.p2p.fetch import fetch
        from isthmus.p2p.receiver import Progress
        from isthmus.p2p.signalling import parse_link

        link = (await _body(request)).get("link")
        try:
            parse_link(str(link))
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        fetch_id = siblings.new_id(self.ctx.worker, 8)  # names its worker (web/siblings.py)
        state: dict[str, Any] = {
            "id": fetch_id,
            "status": "connecting",
            "progress": dataclasses.asdict(Progress()),
        }
        self.fetches[fetch_id] = state

        def tell(progress: Progress) -> None:
            state["status"] = "transferring"
            state["progress"] = dataclasses.asdict(progress)

        async def run() -> None:
            started = time.monotonic()
            try:
                final = await fetch(
                    self.ctx.archive,
                    str(link),
                    on_progress=tell,
                    ice=ice_config(self.ctx.settings),
                    site=self.ctx.relay,
                    on_path=state.update,
                )
                tell(final)
                state["seconds"] = round(time.monotonic() - started, 3)
                state["status"] = "complete" if final.complete else "failed"
                if not final.complete:
                    state["reason"] = f"the archive refused {len(final.failed)} instance(s)"
            except Exception as exc:  # every failure is reported to the CLI polling
                state["status"], state["reason"] = "failed", str(exc) or type(exc).__name__
                log.warning("p2p: fetch %s failed: %s", fetch_id, state["reason"])

        self._spawn(run())
        return JSONResponse({"id": fetch_id}, status_code=202)

    async def fetch_status(self, request: Request) -> Response:
        fetch_id = request.path_params["fetch_id"]
        state = self.fetches.get(fetch_id)
        if state is None:
            holder = siblings.holder_of(
                fetch_id, self.ctx.worker, self.ctx.siblings, request.headers
            )
            if holder is not None:  # a fetch another worker runs: its answer
                try:
                    rsp = await siblings.ask(request, holder)
                except httpx.HTTPError:
                    raise not_found(
                        "no such fetch on this node (its worker is not answering)"
                    ) from None
                return Response(
                    rsp.content, rsp.status_code, media_type=rsp.headers.get("content-type")
                )
            raise not_found("no such fetch on this node")
        return JSONResponse(state, headers={"Cache-Control": "no-store"})


def routes(ctx: WebContext) -> list[BaseRoute]:
    return P2PDoor(ctx).routes()
