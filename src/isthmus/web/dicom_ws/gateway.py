"""The DICOM-over-WebSocket gateway: endpoints, registered AE titles, limits.

    GET /dicom-ws/associate?peer=AET   outbound: the browser is association-requestor
    GET /dicom-ws/listen?aet=AET       registers AET on the DICOM port (routes, C-MOVE)
    GET /dicom-ws/accept?id=ID         inbound: the browser accepts one announced caller
                                       (passed on to the worker holding it: sibling.py)
    GET /dicom-ws/peers                what this client may reach and register (JSON)

Everything runs on the web server's event loop; the association router hands an
inbound connection over from its own thread (`RouteHandler`), and the gateway
takes the socket into the loop.  The protocol is docs/dicom-websocket.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from isthmus.config import Peer
from isthmus.dicom.ul import pdu
from isthmus.dicom.ul.errors import UNEXPECTED_PDU, UNRECOGNIZED_PDU, PDUError
from isthmus.dicom.ul.transport import read_pdu_async
from isthmus.node.sockets import set_nodelay
from isthmus.web import siblings
from isthmus.web.auth import websocket_authorization
from isthmus.web.dicom_ws import sibling
from isthmus.web.dicom_ws.pipe import (
    CLOSE_BAD_PDU_FROM_BROWSER,
    CLOSE_BAD_PDU_FROM_PEER,
    CLOSE_CALLER_GONE,
    CLOSE_NORMAL,
    CLOSE_PEER_UNREACHABLE,
    STREAM_LIMIT,
    Relay,
)
from isthmus.web.dicom_ws.policy import GatewayPolicy, Refusal
from isthmus.web.dicom_ws.shared import SharedRegistrations
from isthmus.web.dicom_ws.validation import AssociationState
from isthmus.web.errors import HTTPError

if TYPE_CHECKING:
    from isthmus.web.context import WebContext

log = logging.getLogger(__name__)

SUBPROTOCOL = "dicom-ws"
TOKEN_PROTOCOL_PREFIX = "isthmus-token."
# A-ASSOCIATE-RJ (PS3.8 Table 9-21): result, source, reason
RJ_CALLED_AE = (1, 1, 7)
RJ_CALLING_AE = (1, 1, 3)
RJ_NO_BROWSER = (2, 1, 1)  # transient: the browser did not take the association
RJ_LIMIT = (2, 3, 2)  # transient, presentation provider: local limit exceeded


@dataclass
class Listener:
    """A browser that registered an AE title, and the loop its WebSocket lives on."""

    aet: str
    websocket: WebSocket
    client: str
    loop: asyncio.AbstractEventLoop


@dataclass
class Pending:
    """An inbound association announced to a listener, waiting for /dicom-ws/accept."""

    id: str
    listener: Listener
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    calling: str
    timer: asyncio.TimerHandle | None = None


class Gateway:
    """One per web app: the registry of listeners and pending associations."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.listeners: dict[str, Listener] = {}
        self.pending: dict[str, Pending] = {}
        self.open: Counter[str] = Counter()
        self._policy: GatewayPolicy | None = None
        # Registered AE titles, as seen by the other processes of the archive.
        self.shared = SharedRegistrations(ctx, self.archive_address, self.listeners.__contains__)

    @property
    def policy(self) -> GatewayPolicy:
        if self._policy is None:
            self._policy = GatewayPolicy(self.settings, self.ctx.authenticator.developer_mode)
        return self._policy

    @property
    def accept_timeout(self) -> float:
        return min(self.settings.network_timeout, 30.0)

    def archive_address(self) -> tuple[str, int] | None:
        """Where the DICOM port is reachable from here (loopback for a wildcard bind)."""
        router = self.ctx.dicom_home or self.ctx.router
        if router is None:
            return None
        bound, port = router.server_address[:2]
        host = bound.decode() if isinstance(bound, (bytes, bytearray)) else bound
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return host, port

    # ------------------------------------------------------------ admission

    def admit(self, websocket: WebSocket) -> str:
        """Check Origin and credentials (permission dicom-ws); returns the client's key."""
        headers = websocket.headers
        if not self.policy.origin_allowed(headers.get("origin"), headers.get("host")):
            raise Refusal(403, f"Origin {headers.get('origin')!r} may not use the gateway")
        try:
            principal = self.ctx.authenticator.require(
                _authorization(websocket),
                "dicom-ws",
                websocket.client.host if websocket.client else None,
            )
        except HTTPError as exc:
            raise Refusal(exc.status, exc.message) from None
        return principal.name

    def reserve(self, client: str) -> bool:
        """Count one more open association for `client`, unless it is at its limit."""
        if self.open[client] >= self.settings.dicom_ws_max_associations:
            return False
        self.open[client] += 1
        return True

    def release(self, client: str) -> None:
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]

    # ------------------------------------------------------------ endpoints

    async def peers(self, request: Request) -> JSONResponse:
        """GET /dicom-ws/peers: what the caller may reach and register, and the limits."""
        try:
            self.ctx.authenticator.require(
                request.headers.get("authorization"),
                "dicom-ws",
                request.client.host if request.client else None,
            )
        except HTTPError as exc:
            return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)
        address = self.archive_address()
        return JSONResponse(
            {
                "archive": self.settings.aet,
                "dicom_port": address[1] if address else None,
                "peers": self.policy.reachable(),
                "aets": list(self.policy.aets),
                "registered": sorted(self.listeners),
                "max_pdu": self.settings.dicom_ws_max_pdu,
                "max_associations": self.settings.dicom_ws_max_associations,
                "idle_timeout": self.settings.dicom_ws_idle_timeout,
            }
        )

    async def associate(self, websocket: WebSocket) -> None:
        """Outbound: relay the browser's association to a known peer."""
        try:
            client = self.admit(websocket)
            aet = websocket.query_params.get("peer", "")
            peer = self.policy.peer(aet, self.archive_address())
            if not self.reserve(client):
                raise Refusal(
                    429,
                    f"at most {self.settings.dicom_ws_max_associations} open "
                    "associations per client",
                )
        except Refusal as refusal:
            await _refuse(websocket, refusal)
            return
        try:
            await websocket.accept(subprotocol=_subprotocol(websocket))
            await self._associate(websocket, peer, client)
        finally:
            self.release(client)

    async def _associate(self, websocket: WebSocket, peer: Peer, client: str) -> None:
        timeout = min(self.settings.network_timeout, 30.0)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(peer.host, peer.port, limit=STREAM_LIMIT), timeout
            )
        except (TimeoutError, OSError) as exc:
            why = str(exc) or type(exc).__name__
            await websocket.close(
                CLOSE_PEER_UNREACHABLE,
                f"peer {peer.aet} at {peer.host}:{peer.port} unreachable: {why}"[:120],
            )
            return
        set_nodelay(writer.get_extra_info("socket"))
        state = AssociationState(browser_requests=True, max_pdu=self.settings.dicom_ws_max_pdu)
        label = f"{client} → {peer.aet}"
        try:
            request = await self._first_request(websocket, state, peer.aet)
        except _Stop as stop:
            await _close_quietly(writer)
            await stop.apply(websocket)
            return
        writer.write(request)
        await writer.drain()
        await Relay(
            websocket, reader, writer, state, self.settings.dicom_ws_idle_timeout, label
        ).run()

    async def _first_request(
        self, websocket: WebSocket, state: AssociationState, peer_aet: str
    ) -> bytes:
        """The browser's A-ASSOCIATE-RQ, validated and checked against the policy."""
        try:
            message = await asyncio.wait_for(
                websocket.receive(), self.settings.dicom_ws_idle_timeout
            )
        except TimeoutError:
            raise _Stop(CLOSE_NORMAL, "no A-ASSOCIATE-RQ") from None
        if message["type"] == "websocket.disconnect":
            raise _Stop(None, "")
        data: bytes | None = message.get("bytes")
        try:
            if data is None:
                raise PDUError(
                    "text message where an A-ASSOCIATE-RQ was expected", UNRECOGNIZED_PDU
                )
            if data[:1] != b"\x01":
                raise PDUError("the first PDU must be an A-ASSOCIATE-RQ", UNEXPECTED_PDU)
            state.check(data, "browser")
        except PDUError as problem:
            raise _Stop(
                CLOSE_BAD_PDU_FROM_BROWSER,
                f"invalid PDU from the browser: {problem}",
                pdu.abort(reason=problem.reason),
            ) from None
        assert state.request is not None
        if state.request.called_aet != peer_aet:
            raise _Stop(
                CLOSE_NORMAL,
                f"called AE title must be {peer_aet!r}",
                pdu.associate_rj(*RJ_CALLED_AE),
            )
        try:
            self.policy.may_use_aet(state.request.calling_aet)
        except Refusal as refusal:
            raise _Stop(CLOSE_NORMAL, refusal.message, pdu.associate_rj(*RJ_CALLING_AE)) from None
        return data

    async def listen(self, websocket: WebSocket) -> None:
        """Register an AE title for as long as this WebSocket stays open."""
        try:
            client = self.admit(websocket)
            aet = self.policy.may_use_aet(websocket.query_params.get("aet", ""))
            if self.ctx.router is None:
                raise Refusal(503, "the DICOM port is not running")
            if aet in self.listeners:
                raise Refusal(409, f"AE title {aet!r} is already registered")
        except Refusal as refusal:
            await _refuse(websocket, refusal)
            return
        await websocket.accept(subprotocol=_subprotocol(websocket))
        listener = Listener(aet, websocket, client, asyncio.get_running_loop())
        self._register(listener)
        try:
            await self.shared.registered(aet)
            address = self.archive_address()
            await websocket.send_json(
                {
                    "type": "registered",
                    "aet": aet,
                    "dicom_port": address[1] if address else None,
                    "max_pdu": self.settings.dicom_ws_max_pdu,
                }
            )
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass  # the listen socket carries nothing from the browser
        finally:
            self._unregister(listener)
            await self.shared.unregistered(aet)

    def _register(self, listener: Listener) -> None:
        aet = listener.aet
        self.listeners[aet] = listener
        if self.ctx.router is not None:  # listen() refuses when there is no DICOM port
            self.ctx.router.add_route(aet, self._route_handler(aet))
        if self.ctx.access is not None:
            self.ctx.access.register_destination(aet, lambda: self._move_destination(aet))
        log.info("AE title %s registered by %s", aet, listener.client)

    def _unregister(self, listener: Listener) -> None:
        aet = listener.aet
        if self.listeners.get(aet) is not listener:
            return
        del self.listeners[aet]
        if self.ctx.router is not None:
            self.ctx.router.remove_route(aet)
        if self.ctx.access is not None:
            self.ctx.access.unregister_destination(aet)
        for pending in [p for p in self.pending.values() if p.listener is listener]:
            asyncio.ensure_future(self._give_up(pending.id, RJ_NO_BROWSER))
        log.info("AE title %s unregistered", aet)

    def _move_destination(self, aet: str) -> Peer | None:
        """C-MOVE to a registered browser goes back through the DICOM port (the router)."""
        address = self.archive_address()
        if aet not in self.listeners or address is None:
            return None
        return Peer(aet, *address)

    # ------------------------------------------------------------ inbound

    def _route_handler(self, aet: str) -> Callable[[socket.socket, Any, pdu.AAssociateRQ], None]:
        def handle(sock: socket.socket, address: Any, rq: pdu.AAssociateRQ) -> None:
            # Runs in the router's thread; the loop takes the socket over.
            listener = self.listeners.get(aet)
            if listener is None or listener.loop.is_closed():
                _reject_in_thread(sock, RJ_CALLED_AE)
                return
            try:
                asyncio.run_coroutine_threadsafe(
                    self._incoming(listener, sock, address, rq), listener.loop
                )
            except RuntimeError:
                _reject_in_thread(sock, RJ_CALLED_AE)

        return handle

    async def _incoming(
        self, listener: Listener, sock: socket.socket, address: Any, rq: pdu.AAssociateRQ
    ) -> None:
        try:
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT)
        except OSError:
            sock.close()
            return
        if self.listeners.get(listener.aet) is not listener:
            await _reject_caller(reader, writer, RJ_CALLED_AE)
            return
        if not self.reserve(listener.client):
            log.warning(
                "A-ASSOCIATE-RJ to %s: %s is at its association limit",
                rq.calling_aet,
                listener.client,
            )
            await _reject_caller(reader, writer, RJ_LIMIT)
            return
        pending = Pending(self._new_id(), listener, reader, writer, rq.calling_aet)
        self.pending[pending.id] = pending
        pending.timer = asyncio.get_running_loop().call_later(
            self.accept_timeout,
            lambda: asyncio.ensure_future(self._give_up(pending.id, RJ_NO_BROWSER)),
        )
        try:
            await listener.websocket.send_json(
                {
                    "type": "association",
                    "id": pending.id,
                    "calling": rq.calling_aet,
                    "called": rq.called_aet,
                    "address": str(address[0]),
                }
            )
        except Exception:  # the listener is going away; its unregister rejects the caller
            log.info("could not announce an association to %s", listener.aet)

    def _new_id(self) -> str:
        """An association id; with workers, prefixed by this worker's name ("w0.…") so
        that an accept WebSocket reaching another worker finds its way (sibling.py)."""
        return siblings.new_id(self.ctx.worker)

    async def _give_up(self, pending_id: str, rj: tuple[int, int, int]) -> None:
        pending = self.pending.pop(pending_id, None)
        if pending is None:
            return
        if pending.timer:
            pending.timer.cancel()
        try:
            log.warning(
                "A-ASSOCIATE-RJ to %s: browser %s did not take the association",
                pending.calling,
                pending.listener.aet,
            )
            await _reject_caller(pending.reader, pending.writer, rj)
        finally:
            self.release(pending.listener.client)

    async def accept(self, websocket: WebSocket) -> None:
        """Inbound: the browser takes an announced association and acts as acceptor."""
        pending_id = websocket.query_params.get("id", "")
        if pending_id not in self.pending:
            holder = siblings.holder_of(
                pending_id, self.ctx.worker, self.ctx.siblings, websocket.headers
            )
            if holder is not None:
                await self._pass_on(websocket, holder)
                return
        try:
            client = self.admit(websocket)
            pending = self.pending.get(pending_id)
            if pending is None:
                raise Refusal(404, "no such pending association (expired or already taken)")
            if pending.listener.client != client:
                raise Refusal(403, "the association belongs to another client")
        except Refusal as refusal:
            await _refuse(websocket, refusal)
            return
        del self.pending[pending.id]
        if pending.timer:
            pending.timer.cancel()
        try:
            await websocket.accept(subprotocol=_subprotocol(websocket))
            await self._accept(websocket, pending)
        finally:
            self.release(client)

    async def _pass_on(self, websocket: WebSocket, base_url: str) -> None:
        """The accept WebSocket of an association another worker holds: relayed to
        that worker's private port, which admits the caller (sibling.py)."""
        try:
            upstream = await sibling.connect(
                websocket, base_url, self.ctx.worker, self.accept_timeout
            )
        except Refusal as refusal:
            await _refuse(websocket, refusal)
            return
        try:
            await websocket.accept(subprotocol=upstream.subprotocol)
            await sibling.relay(websocket, upstream)
        finally:
            await upstream.close()

    async def _accept(self, websocket: WebSocket, pending: Pending) -> None:
        state = AssociationState(browser_requests=False, max_pdu=self.settings.dicom_ws_max_pdu)
        label = f"{pending.calling} → {pending.listener.aet}"
        try:
            request = await asyncio.wait_for(
                read_pdu_async(pending.reader, state.max_pdu), self.accept_timeout
            )
            if request is None:
                raise _Stop(CLOSE_CALLER_GONE, "the caller left before its A-ASSOCIATE-RQ was read")
            state.check(request, "peer")
        except PDUError as problem:
            await _close_quietly(pending.writer, pdu.abort(reason=problem.reason))
            await websocket.close(
                CLOSE_BAD_PDU_FROM_PEER, f"invalid PDU from the peer: {problem}"[:120]
            )
            return
        except (TimeoutError, _Stop, OSError) as exc:
            await _close_quietly(pending.writer)
            await (
                exc.apply(websocket)
                if isinstance(exc, _Stop)
                else websocket.close(CLOSE_CALLER_GONE, "the caller is gone")
            )
            return
        await Relay(
            websocket,
            pending.reader,
            pending.writer,
            state,
            self.settings.dicom_ws_idle_timeout,
            label,
        ).run(first_to_browser=request)


class _Stop(Exception):
    """End an association before relaying starts: a PDU for the browser, then close."""

    def __init__(self, code: int | None, reason: str, to_browser: bytes | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.to_browser = code, reason, to_browser

    async def apply(self, websocket: WebSocket) -> None:
        with contextlib.suppress(Exception):
            if self.to_browser is not None:
                await websocket.send_bytes(self.to_browser)
            if self.code is not None:
                await websocket.close(self.code, self.reason[:120])


def _authorization(websocket: WebSocket) -> str | None:
    """Credentials from the Authorization header, the token subprotocol or ?token=."""
    return websocket_authorization(websocket)


def _subprotocol(websocket: WebSocket) -> str | None:
    return SUBPROTOCOL if SUBPROTOCOL in websocket.scope.get("subprotocols", []) else None


async def _refuse(websocket: WebSocket, refusal: Refusal) -> None:
    log.warning("gateway refused %s: %s", websocket.url.path, refusal.message)
    await websocket.send_denial_response(JSONResponse({"error": refusal.message}, refusal.status))


async def _close_quietly(writer: asyncio.StreamWriter, last: bytes | None = None) -> None:
    with contextlib.suppress(Exception):
        if last:
            writer.write(last)
            await asyncio.wait_for(writer.drain(), 2)
        writer.close()


async def _reject_caller(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rj: tuple[int, int, int]
) -> None:
    """Read the caller's A-ASSOCIATE-RQ (so the close is clean), answer A-ASSOCIATE-RJ."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(read_pdu_async(reader, pdu.MAX_ASSOCIATE_RQ), 5)
    writer.write(pdu.associate_rj(*rj))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.drain(), 2)
        await asyncio.wait_for(reader.read(1), 2)  # the caller closes after reading the RJ
    await _close_quietly(writer)


def _reject_in_thread(sock: socket.socket, rj: tuple[int, int, int]) -> None:
    """The blocking version of _reject_caller, for the router's thread."""
    try:
        sock.settimeout(5)
        header = sock.recv(6, socket.MSG_WAITALL)
        length = pdu.pdu_length(header)
        while length > 0:
            chunk = sock.recv(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)
        sock.sendall(pdu.associate_rj(*rj))
        sock.recv(1)
    except (OSError, PDUError):
        pass
    finally:
        sock.close()
