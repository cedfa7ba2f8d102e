"""What every DICOMweb handler needs: the context, the service root URL, blocking calls.

The archive is synchronous (SQL and file I/O); handlers are async, so each
archive call runs in a pool of worker threads and the event loop stays free.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from starlette.requests import Request

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
