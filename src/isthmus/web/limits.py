"""Limits of the HTTP door (docs/security.md, "Limits"): what a request may cost.

Two layers enforce them:

- `LimitsMiddleware` (ASGI, outermost): the length of the URL (414), the size of the
  header block (431), the number of query parameters (400), the size of a request body
  (413, from ``Content-Length`` before anything is read, or counted as it arrives) and
  the time between two chunks of a body (408).  Every refusal is the JSON error body.
- `LimitedHttpToolsProtocol` (uvicorn's httptools protocol, the one served) and
  `LimitedH11Protocol` (uvicorn's h11 protocol) with the same three additions: a deadline
  for the request line and headers (a slow-loris client gets 408 and the connection
  closes), a bound on the time an answer waits for its client to read (the connection is
  dropped), and a JSON answer with a lingering close when the parser refuses a request
  (malformed, or a head above the protocol's bound, which `http_server_options` sets
  above the middleware's limits so that those answer first).  Without the lingering
  close a client still sending its request would see a reset connection instead of the
  answer.

The number of connections is uvicorn's ``limit_concurrency`` (503 beyond it).
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from isthmus.config import Settings
from isthmus.web.errors import HTTPError, error_response

# Room for the request line's method and version and h11's own bookkeeping.
_HEAD_SLACK = 16 * 1024
LINGER_SECONDS = 2.0
# llhttp's URL parser keeps offsets in 16 bits: longer URLs cannot be parsed.
URL_PARSER_LIMIT = 65_535


class BodyTimeout(HTTPError):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            f"the request body stalled: nothing received for {seconds:g} s",
            {"Connection": "close"},
        )


class BodyTooLarge(HTTPError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"the request body is larger than {limit} bytes", {"Connection": "close"}
        )


class LimitsMiddleware:
    """Refuse requests beyond the configured limits before the application sees them."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.max_url = settings.http_max_url
        self.max_header_bytes = settings.http_max_header_bytes
        self.max_query_params = settings.http_max_query_params
        self.max_body = settings.http_max_body
        self.body_timeout = settings.http_body_timeout

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            status, message = refusal
            await error_response(status, message, {"Connection": "close"})(scope, receive, send)
            return
        await self.app(scope, self._receive(receive), send)

    def refusal(self, scope: Any) -> tuple[int, str] | None:
        """(status, message) for a request beyond a limit, or None."""
        query: bytes = scope.get("query_string", b"")
        url_length = len(scope.get("raw_path") or scope["path"].encode()) + len(query)
        if url_length > self.max_url:
            return 414, f"the URL is {url_length} bytes long; the limit is {self.max_url}"
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        header_bytes = sum(len(k) + len(v) + 4 for k, v in headers)
        if header_bytes > self.max_header_bytes:
            return 431, (
                f"the request headers are {header_bytes} bytes; "
                f"the limit is {self.max_header_bytes}"
            )
        if query:
            count = query.count(b"&") + 1
            if count > self.max_query_params:
                return 400, (
                    f"{count} query parameters; at most {self.max_query_params} are accepted"
                )
        length = _content_length(headers)
        if length is not None and self.max_body and length > self.max_body:
            return 413, f"the request body is {length} bytes; the limit is {self.max_body}"
        return None

    def _receive(self, receive: Any) -> Any:
        """`receive` with the body's size and stall limits (until the body is complete;
        later calls wait for the disconnect and must not time out)."""
        received = 0
        done = False

        async def limited() -> Any:
            nonlocal received, done
            if done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                done = True
                raise BodyTimeout(self.body_timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if self.max_body and received > self.max_body:
                    done = True
                    raise BodyTooLarge(self.max_body)
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        return limited


class Contained:
    """The outermost wrapper: an exception after a complete answer stays in the log.

    Starlette answers an unexpected exception with the JSON 500 (errors.py), logs it,
    and re-raises it to the server, and uvicorn then closes the connection, so that a
    client's next request on it would meet a reset connection.  When the answer was
    complete the exception is dropped here (it has been logged); when it was cut short
    it goes on to uvicorn, which closes the connection (the client must not take a
    partial body for a whole one)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def watched(message: Any) -> None:
            nonlocal complete
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if not complete:
                raise


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def raw_error(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 error response with the JSON body, closing the connection."""
    body = json.dumps(
        {"status": status, "error": HTTPStatus(status).phrase, "message": message}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _HeadDeadline:
    """What both HTTP protocols add to uvicorn's: a deadline for the request head, a
    deadline for a stalled answer, and JSON refusals answered with a lingering close.
    The protocol says when it waits for a head (`_waiting_for_head`), and when its
    transport pauses and resumes writing (`_watch_send`)."""

    head_timeout: float = 30.0
    send_timeout: float = 60.0
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    timeout_keep_alive_task: asyncio.TimerHandle | None
    logger: Any
    _head_timer: asyncio.TimerHandle | None
    _send_timer: asyncio.TimerHandle | None = None
    _lingering: bool

    def _waiting_for_head(self) -> bool:
        raise NotImplementedError

    def _watch_head(self) -> None:
        if not self._waiting_for_head():
            self._cancel_head_timer()
        elif self._head_timer is None and self.timeout_keep_alive_task is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._waiting_for_head():
            return
        self.logger.warning("request head not received within %g s; closing", self.head_timeout)
        self._answer_and_close(
            408, f"the request line and headers were not received within {self.head_timeout:g} s"
        )

    def _watch_send(self, paused: bool) -> None:
        """The transport's buffer is full (`paused`) or has drained below its low mark.

        uvicorn then holds the application's next send until the client reads (back-
        pressure: memory stays bounded) but for ever: a client that keeps its connection
        and stops reading held the connection, the handler and the files it sends.  The
        time counts from the pause, and starts again each time the client takes enough:
        idle time, so that a slow but live client is served whatever the answer's size."""
        if not paused:
            self._cancel_send_timer()
        elif self._send_timer is None:
            self._send_timer = self.loop.call_later(self.send_timeout, self._send_timed_out)

    def _cancel_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_timed_out(self) -> None:
        self._send_timer = None
        self.logger.warning(
            "the client read nothing of the answer for %g s; connection dropped",
            self.send_timeout,
        )
        # abort, not close: close waits for the buffer to drain, the wait that does not
        # end (also when the answer is complete and only its last bytes wait, closing);
        # uvicorn then tells the application of the disconnect
        self.transport.abort()

    def _answer_and_close(self, status: int, message: str) -> None:
        self._cancel_head_timer()
        self._lingering = True
        self.transport.write(raw_error(status, message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


class LimitedH11Protocol(_HeadDeadline, H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request head and JSON refusals
    (the fallback when httptools is not installed).

    `head_timeout` is set per server by `http_server_options` (a subclass per value)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer = None
        self._lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_send_timer()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._watch_send(paused=True)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._watch_send(paused=False)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the answer is sent; what the client still sends is dropped
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Between requests the keep-alive timeout applies; the head deadline starts
        # again with the first byte of the next request (data_received).
        self._cancel_head_timer()

    def _waiting_for_head(self) -> bool:
        return (
            self.conn.their_state is h11.IDLE
            and self.conn.our_state is h11.IDLE
            and not self.transport.is_closing()
            and not self._lingering
        )

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request: too large a head (431) or malformed (400)."""
        limit = self.config.h11_max_incomplete_event_size or 0
        if limit and len(self.conn.trailing_data[0]) > limit:
            self._answer_and_close(431, f"the request line and headers exceed {limit} bytes")
        else:
            self._answer_and_close(400, "malformed HTTP request")


class LimitedHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol (the llhttp parser, in C: about a sixth of a
    small request's time less than h11) with the same additions as
    `LimitedH11Protocol`, and the bound on the head that h11 has built in: a head
    still incomplete after `max_head` bytes is a 431 (llhttp itself would buffer
    header lines without end).

    A head is awaited from the connection's start, and from the first byte of each
    next request (llhttp's message begin) until its headers are complete; the bound
    counts the chunks received while it is awaited (so at most one chunk more).  A URL
    longer than `max_url` (at most what llhttp's URL parser can split) is refused
    here with the middleware's 414."""

    max_head: int = 0
    max_url: int = URL_PARSER_LIMIT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer = None
        self._lingering = False
        self._in_head = True
        self._head_bytes = 0
        self._messages = 0  # requests begun on the connection
        self._refusal: tuple[int, str] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_send_timer()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._watch_send(paused=True)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._watch_send(paused=False)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the answer is sent; what the client still sends is dropped
        # A chunk counts towards the head unless a later request began in it (the chunk
        # may then hold the end of the previous request, its body for one).
        messages = self._messages
        super().data_received(data)
        if self._lingering or self.transport.is_closing():
            self._cancel_head_timer()
            return
        if self._in_head and (self._messages == messages or self._messages == 1):
            self._head_bytes += len(data)
            if self.max_head and self._head_bytes > self.max_head:
                self._answer_and_close(
                    431, f"the request line and headers exceed {self.max_head} bytes"
                )
                return
        self._watch_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._messages += 1

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        if len(self.url) > self.max_url:
            # llhttp's URL parser counts in 16 bits: a longer URL cannot even be split
            self._refusal = (
                414,
                f"the URL is {len(self.url)} bytes long; the limit is {self.max_url}",
            )
            raise ValueError("URL too long")  # llhttp stops; uvicorn calls send_400_response
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._cancel_head_timer()  # the keep-alive timeout applies until the next byte

    def _waiting_for_head(self) -> bool:
        return self._in_head and not self.transport.is_closing() and not self._lingering

    def send_400_response(self, msg: str) -> None:
        """llhttp refused the request: malformed, or a URL refused above (414)."""
        status, message = self._refusal or (400, "malformed HTTP request")
        self._answer_and_close(status, message)


def http_server_options(settings: Settings, parser: str = "httptools") -> dict[str, Any]:
    """The uvicorn.Config options that enforce the limits of the connection layer, with
    llhttp (`parser="httptools"`, the default) or h11 parsing requests."""
    max_head = settings.http_max_url + settings.http_max_header_bytes + _HEAD_SLACK
    base = LimitedH11Protocol if parser == "h11" else LimitedHttpToolsProtocol
    protocol = type(
        base.__name__,
        (base,),
        {
            "head_timeout": settings.http_head_timeout,
            "send_timeout": settings.http_send_timeout,
            "max_head": max_head,
            # the middleware's limit counts path and query; the request target has a "?"
            "max_url": min(settings.http_max_url + 1, URL_PARSER_LIMIT),
        },
    )
    return {
        "http": protocol,
        "h11_max_incomplete_event_size": max_head,
        "timeout_keep_alive": settings.http_keep_alive,
        "limit_concurrency": settings.http_max_connections or None,
    }
