"""The Open Event Channel of UPS-RS: a WebSocket per subscriber AE (PS3.18 8.10.4).

``ws://host:port/dicom-web/subscribers/{aet}`` (``wss://`` behind TLS).  The server
sends each event report for `aet` as one text frame, a DICOM JSON dataset: Affected
SOP Class UID, Command Field (N-EVENT-REPORT), Message ID, Affected SOP Instance UID,
Event Type ID and the event information (PS3.18 8.10.5, PS3.4 Table CC.2.4-1;
`WorkItemEvent.report`).  Nothing the client sends is read, except to notice that it
closed.

Missed events: the store logs every event per subscriber (archive/workitems.py).  When
a channel opens it first sends the logged events of its AE not yet delivered and not
older than the retention window (`WorkItems.event_retention`, one hour by default),
then the live ones, in order, each once (events logged by another process sharing the
index within `POLL_SECONDS`); an event counts as delivered when its frame
is handed to the socket (taken from the log just before, given back if the send fails).  PS3.18 does not require this queueing (8.10.4.2); it is what makes a
reconnecting subscriber whole.  Permission: ``read``, credentials as for the DICOM
WebSocket gateway (Authorization header, ``isthmus-token.<token>`` subprotocol or
``?token=``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from isthmus.archive import Event, WorkItemEvent, WorkItems
from isthmus.web.auth import TOKEN_PROTOCOL_PREFIX, websocket_authorization
from isthmus.web.errors import HTTPError
from isthmus.web.open_channels import OpenChannels
from isthmus.web.service import blocking, context

log = logging.getLogger(__name__)
POLICY_VIOLATION = 1008
# While no live event comes, the channel looks at the log this often: events another
# process logged (several processes sharing one index, `isthmus worklist add`) arrive
# within this delay, until a cross-process event bus carries them at once.
POLL_SECONDS = 2.0


def routes() -> list[WebSocketRoute]:
    return [WebSocketRoute("/subscribers/{aet}", event_channel)]


async def event_channel(websocket: WebSocket) -> None:
    ctx = context(websocket)  # type: ignore[arg-type]
    aet = str(websocket.path_params["aet"]).strip()
    try:
        ctx.authenticator.require(websocket_authorization(websocket), "read")
    except HTTPError as exc:
        await websocket.close(POLICY_VIOLATION, exc.message[:120])
        return
    if not 0 < len(aet) <= 16:
        await websocket.close(POLICY_VIOLATION, "the AE title must have 1 to 16 characters")
        return
    await websocket.accept(subprotocol=_subprotocol(websocket))
    workitems = ctx.archive.workitems
    loop = asyncio.get_running_loop()
    live: asyncio.Queue[WorkItemEvent] = asyncio.Queue()

    def heard(event: Event) -> None:
        if event.payload.get("aet") == aet:
            loop.call_soon_threadsafe(live.put_nowait, WorkItemEvent.from_payload(event.payload))

    unsubscribe = ctx.archive.events.subscribe("ups.", heard)  # before the replay: no gap
    closed = asyncio.ensure_future(_until_closed(websocket))
    channels = ctx.ups_channels
    with channels.opened(aet):
        try:
            for event in await blocking(workitems.pending_events, aet):
                await _send(websocket, channels, workitems, event)
            while not closed.done():
                getter = asyncio.ensure_future(live.get())
                await asyncio.wait(
                    {getter, closed}, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                if closed.done():
                    getter.cancel()
                    break
                if not getter.done():  # quiet: events logged by other processes sharing the index
                    getter.cancel()
                    for event in await blocking(workitems.pending_events, aet):
                        await _send(websocket, channels, workitems, event)
                    continue
                await _send(websocket, channels, workitems, getter.result())  # once: see _send
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the events not sent stay undelivered: the next channel sends them
        finally:
            unsubscribe()
            closed.cancel()
            with contextlib.suppress(Exception):
                await websocket.close()


async def _send(
    websocket: WebSocket, channels: OpenChannels, workitems: WorkItems, event: WorkItemEvent
) -> None:
    """Take the event from the log, then send it; give it back if the send fails.
    Taking it first means a second channel of the same AE never sends it too."""
    with channels.sending():
        if not await blocking(workitems.mark_delivered, event.aet, [event.id]):
            return  # sent already: by the replay, or by another channel of this AE
        try:
            await websocket.send_text(json.dumps(event.report()))
        except BaseException:
            await asyncio.shield(blocking(workitems.mark_undelivered, event.aet, [event.id]))
            raise


async def _until_closed(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


def _subprotocol(websocket: WebSocket) -> str | None:
    """Echo the client's first subprotocol that is not a token (browsers need one back
    when they offered any)."""
    offered: list[str] = websocket.scope.get("subprotocols", [])
    for proto in offered:
        if not proto.startswith(TOKEN_PROTOCOL_PREFIX):
            return proto
    return None
