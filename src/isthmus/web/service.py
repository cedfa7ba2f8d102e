"""What every DICOMweb handler needs: the context, the service root URL, blocking calls,
and a streamed answer that lets go of what it reads from when the client goes away.

The archive is synchronous (SQL and file I/O); handlers are async, so each
archive call runs in a pool of worker threads and the event loop stays free.
"""

from __future__ import annotations

import asyncio
import functools
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from isthmus.web.context import WebContext

DICOMWEB_PREFIX = "/dicom-web"
WADO_URI_PREFIX = "/wado"
T = TypeVar("T")
P = ParamSpec("P")
# The handlers' worker threads: as many as Starlette's (anyio's default limit, 40).
# The loop's own executor hands a call over and back in a third of anyio's Python (its
# capacity limiter, cancel scope and worker queue): 30-80 µs of a small search's 0.45 ms
# in-process (docs/performance.md, "At 100k in a quieter hour").
WORKERS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="isthmus-web")


def context(request: Request) -> WebContext:
    """The context create_app left in the app's state."""
    ctx = request.app.state.ctx
    if not isinstance(ctx, WebContext):
        raise TypeError(f"app.state.ctx is {type(ctx).__name__}, not WebContext")
    return ctx


def base_url(request: Request) -> str:
    """The externally visible base URL: `public_url` if configured, else from the request."""
    public = context(request).settings.public_url
    if public:
        return public.rstrip("/")
    scheme = request.headers.get("x-forwarded-proto") or request.url.scheme
    host = request.headers.get("x-forwarded-host") or request.headers.get("host") or ""
    host = host.split(",")[0].strip()
    server = request.scope.get("server")
    if not host and server:
        host = f"{server[0]}:{server[1]}"
    elif (
        server
        and not _has_port(host)
        and "x-forwarded-host" not in request.headers
        and server[1] != DEFAULT_PORTS.get(scheme)
    ):
        # Some clients (dicomweb-client) send Host without the port they connected to.
        host = f"{host}:{server[1]}"
    root_path = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    return f"{scheme}://{host}{root_path}".rstrip("/")


DEFAULT_PORTS = {"http": 80, "https": 443}


def _has_port(host: str) -> bool:
    if host.startswith("["):
        return "]:" in host
    return ":" in host


def service_root(request: Request) -> str:
    """The absolute DICOMweb service root (PS3.18 8.2), e.g. http://host:8042/dicom-web."""
    return base_url(request) + DICOMWEB_PREFIX


async def blocking(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking archive or codec call off the event loop."""
    loop = asyncio.get_running_loop()
    if kwargs:
        return await loop.run_in_executor(WORKERS, functools.partial(func, *args, **kwargs))
    return await loop.run_in_executor(WORKERS, func, *args)


class ClosingStreamingResponse(StreamingResponse):
    """Starlette's StreamingResponse, letting go of its body iterator however the answer
    ends.

    When the client disconnects in the middle of a body, Starlette cancels the sending
    and leaves the iterator as it was: suspended at a `yield`, its `finally` (which
    closes the blobs it reads) not run; or, cancelled inside it, finished but with its
    frame, and the files and memory mappings its locals hold, kept alive by the
    traceback of the cancellation (with the last chunk sent, in Starlette's frame), in
    a reference cycle.  Either way they were released only when the cyclic garbage
    collector got to them, so a server whose clients go away mid-retrieval (a viewer
    scrolling past a series) held open files without bound.  Here the iterator is
    closed, and the frames of the traceback cleared, as soon as the answer ends."""

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        except BaseException as exc:  # the cancellation of a client gone, mostly
            traceback.clear_frames(exc.__traceback__)
            raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
