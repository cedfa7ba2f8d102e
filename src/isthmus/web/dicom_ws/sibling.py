"""An accept WebSocket for an association another worker holds (`isthmus serve --workers N`).

A browser's listen WebSocket and the associations announced on it live on one worker
(the one whose gateway it registered with); the shared HTTP port may send its accept
WebSocket to any worker.  Association ids name their worker ("w1.<token>"), so a
worker without that association passes the accept WebSocket on to the holder's
private plain-HTTP port (`WebContext.siblings`): the same request - id, the caller's
Authorization header or ``isthmus-token.*`` subprotocol, Origin and Host - so that the
holder applies its own admission and validation; then the messages both ways,
unchanged, and each side's close code and reason to the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import cast
from urllib.parse import urlsplit

from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.typing import Origin, Subprotocol

from isthmus.web.dicom_ws.pipe import CLOSE_GATEWAY_STOPPING, CLOSE_NORMAL
from isthmus.web.dicom_ws.policy import Refusal
from isthmus.web.siblings import VIA_HEADER

log = logging.getLogger(__name__)

# Close codes that are never sent (RFC 6455 7.4.1): no code given; closed without a
# close frame (or a TLS failure).
NO_STATUS = 1005
_ABNORMAL = {None, 1006, 1015}


async def connect(
    websocket: WebSocket, base_url: str, via: str, timeout: float
) -> ClientConnection:
    """The caller's accept WebSocket, opened on the sibling at `base_url` within
    `timeout` seconds.  Raises Refusal: the sibling's own (401, 403, 404, ...), or 404
    - as for an unknown id - when it cannot be reached."""
    target = urlsplit(base_url)
    headers = websocket.headers
    host = headers.get("host") or target.netloc  # the sibling judges Origin against it
    query = f"?{websocket.url.query}" if websocket.url.query else ""
    forwarded = {VIA_HEADER: via}
    if websocket.client is not None:  # for the sibling's audit trail (trusted on loopback)
        forwarded["x-forwarded-for"] = websocket.client.host
    if "authorization" in headers:
        forwarded["authorization"] = headers["authorization"]
    try:
        return await ws_connect(
            f"ws://{host}{websocket.url.path}{query}",
            host=target.hostname,
            port=target.port or 80,
            proxy=None,
            origin=cast(Origin | None, headers.get("origin")),
            subprotocols=cast(list[Subprotocol], websocket.scope.get("subprotocols", [])),
            additional_headers=forwarded,
            compression=None,  # as the gateway's own port (server.http_config)
            open_timeout=timeout,
            ping_interval=None,  # the holder's idle timeout watches the association
            max_size=None,  # the holder checks every PDU against its limit
        )
    except InvalidStatus as refused:
        status = refused.response.status_code
        raise Refusal(status, _error_of(refused.response.body, status)) from None
    except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
        why = str(exc) or type(exc).__name__
        raise Refusal(
            404, f"no such pending association (its worker is unreachable: {why})"
        ) from None


def _error_of(body: bytes | bytearray | None, status: int) -> str:
    try:
        return str(json.loads(body or b"{}")["error"])
    except (ValueError, KeyError, TypeError):
        return f"refused by the worker holding the association (HTTP {status})"


async def relay(websocket: WebSocket, upstream: ClientConnection) -> None:
    """Messages both ways until one side closes; the other side then gets its close
    code and reason.  Closes both."""
    tasks = [
        asyncio.create_task(_to_holder(websocket, upstream)),
        asyncio.create_task(_to_caller(websocket, upstream)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()


async def _to_holder(websocket: WebSocket, upstream: ClientConnection) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            code = int(message.get("code") or CLOSE_NORMAL)
            reason = str(message.get("reason") or "")
            if code == NO_STATUS or code in _ABNORMAL:
                code = CLOSE_NORMAL
            await upstream.close(code, reason)
            return
        data = message.get("bytes")
        try:
            await upstream.send(data if data is not None else str(message.get("text") or ""))
        except ConnectionClosed:  # _to_caller tells the caller why
            await asyncio.Event().wait()


async def _to_caller(websocket: WebSocket, upstream: ClientConnection) -> None:
    try:
        while True:
            data = await upstream.recv()
            if isinstance(data, bytes):
                await websocket.send_bytes(data)
            else:
                await websocket.send_text(data)
    except ConnectionClosed:
        pass
    code, reason = upstream.close_code, upstream.close_reason or ""
    if code is None or code in _ABNORMAL:
        code, reason = CLOSE_GATEWAY_STOPPING, "the worker holding the association went away"
    elif code == NO_STATUS:
        code = CLOSE_NORMAL
    with contextlib.suppress(Exception):  # the caller may have gone meanwhile
        await websocket.close(code, reason)
