"""Relaying one association between a WebSocket and a TCP connection.

Framing: one complete PDU per binary WebSocket message, both ways.  From TCP the
gateway reads a PDU header, then exactly the length it names (PS3.8 9.3.1), so a
PDU is never split nor merged (`isthmus.dicom.ul.transport.read_pdu_async`).  Every
PDU is checked (the phase machine in validation.py, the PS3.8 validator of
`isthmus.dicom.ul`) before it is
forwarded; a bad one aborts this association only - both sides get an A-ABORT,
the WebSocket closes with a code that says which side erred.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

from isthmus.dicom.ul.errors import UNRECOGNIZED_PDU, PDUError
from isthmus.dicom.ul.pdu import A_ABORT, A_ASSOCIATE_RJ, abort
from isthmus.dicom.ul.transport import read_pdu_async
from isthmus.web.dicom_ws.validation import AssociationState

log = logging.getLogger(__name__)

# WebSocket close codes (docs/dicom-websocket.md)
CLOSE_NORMAL = 1000
CLOSE_BAD_PDU_FROM_BROWSER = 4400
CLOSE_BAD_PDU_FROM_PEER = 4402
CLOSE_IDLE = 4408
CLOSE_CALLER_GONE = 4410
CLOSE_PEER_UNREACHABLE = 4502
CLOSE_PEER_CLOSED = 4503
CLOSE_GATEWAY_STOPPING = 1001

# Read TCP in large steps; the stream pauses the socket beyond twice this.
STREAM_LIMIT = 4 * 1024 * 1024


class Ended(Exception):
    """The relay is over: how the WebSocket closes, and what to send the peer first."""

    def __init__(
        self, code: int, reason: str, to_peer: bytes | None = None, to_browser: bytes | None = None
    ) -> None:
        super().__init__(reason)
        self.code, self.reason, self.to_peer, self.to_browser = code, reason, to_peer, to_browser


@dataclass
class Relay:
    """One association: a WebSocket on one side, a TCP stream on the other."""

    websocket: WebSocket
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    state: AssociationState
    idle_timeout: float
    label: str

    def __post_init__(self) -> None:
        self.last_activity = time.monotonic()

    async def run(self, first_to_browser: bytes | None = None) -> None:
        """Relay until the association is over; then close both sides."""
        tasks = [
            asyncio.create_task(self._browser_to_peer()),
            asyncio.create_task(self._peer_to_browser(first_to_browser)),
            asyncio.create_task(self._watch_idle()),
        ]
        ended = Ended(CLOSE_GATEWAY_STOPPING, "gateway stopping", to_peer=abort())
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            ended = _outcome(done.pop())
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._finish(ended)

    async def _browser_to_peer(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                if self.state.finished:
                    raise Ended(CLOSE_NORMAL, "association over")
                log.info("%s: browser left mid-association; A-ABORT to the peer", self.label)
                raise Ended(CLOSE_NORMAL, "browser disconnected", to_peer=abort())
            data = message.get("bytes")
            if data is None:
                raise self._bad(
                    "browser", PDUError("text message where a PDU was expected", UNRECOGNIZED_PDU)
                )
            try:
                kind = self.state.check(data, "browser")
            except PDUError as problem:
                raise self._bad("browser", problem) from None
            self.last_activity = time.monotonic()
            try:
                self.writer.write(data)
                await self.writer.drain()
            except (ConnectionError, OSError) as exc:  # the peer is gone: not our error
                if self.state.finished:
                    raise Ended(CLOSE_NORMAL, f"association {self.state.outcome}") from None
                raise Ended(CLOSE_PEER_CLOSED, f"connection to the peer failed: {exc}") from None
            if kind == A_ABORT:
                raise Ended(CLOSE_NORMAL, "association aborted by the browser")

    async def _peer_to_browser(self, first: bytes | None) -> None:
        if first is not None:
            await self._to_browser(first)
        while True:
            try:
                data = await read_pdu_async(self.reader, self.state.max_pdu)
                if data is None:
                    if self.state.finished:
                        raise Ended(CLOSE_NORMAL, f"association {self.state.outcome}")
                    raise Ended(
                        CLOSE_PEER_CLOSED, "the peer closed the connection without release or abort"
                    )
                self.state.check(data, "peer")
            except PDUError as problem:
                raise self._bad("peer", problem) from None
            except (ConnectionError, OSError) as exc:
                raise Ended(CLOSE_PEER_CLOSED, f"connection to the peer failed: {exc}") from None
            await self._to_browser(data)
            if data[0] in (A_ABORT, A_ASSOCIATE_RJ):
                raise Ended(CLOSE_NORMAL, f"association {self.state.outcome} by the peer")

    async def _to_browser(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        await self.websocket.send_bytes(data)

    def _bad(self, side: str, problem: PDUError) -> Ended:
        log.warning(
            "%s: invalid PDU from the %s, association aborted: %s", self.label, side, problem
        )
        code = CLOSE_BAD_PDU_FROM_BROWSER if side == "browser" else CLOSE_BAD_PDU_FROM_PEER
        to_both = abort(reason=problem.reason)
        return Ended(
            code,
            f"invalid PDU from the {side}: {problem}"[:120],
            to_peer=to_both,
            to_browser=to_both,
        )

    async def _watch_idle(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.idle_timeout / 4))
            if time.monotonic() - self.last_activity > self.idle_timeout:
                log.info("%s: idle for %.0f s, aborted", self.label, self.idle_timeout)
                raise Ended(
                    CLOSE_IDLE,
                    f"no PDU for {self.idle_timeout:g} s",
                    to_peer=abort(),
                    to_browser=abort(),
                )

    async def _finish(self, ended: Ended) -> None:
        if ended.to_peer is not None and not self.state.finished:
            with contextlib.suppress(Exception):
                self.writer.write(ended.to_peer)
                await asyncio.wait_for(self.writer.drain(), 2)
        with contextlib.suppress(Exception):
            self.writer.close()
        if ended.to_browser is not None:
            with contextlib.suppress(Exception):
                await self.websocket.send_bytes(ended.to_browser)
        with contextlib.suppress(Exception):
            await self.websocket.close(ended.code, ended.reason)
        log.debug("%s: closed (%s, %s)", self.label, ended.code, ended.reason)


def _outcome(task: asyncio.Task[None]) -> Ended:
    exc = task.exception()
    if isinstance(exc, Ended):
        return exc
    if isinstance(exc, WebSocketDisconnect):
        return Ended(CLOSE_NORMAL, "browser disconnected", to_peer=abort())
    if exc is not None:
        log.error("gateway relay failed: %r", exc)
        return Ended(1011, "gateway error", to_peer=abort(), to_browser=abort())
    return Ended(CLOSE_NORMAL, "association over")
