"""The ASGI application: one Starlette app composed of each web door's routes.

Order matters: the API routes (/health, /dicom-web, /wado, the WebSocket gateway)
come first and the viewer's static files last, so a file can never shadow the API.
Middleware, outermost first: CORS (answers preflights, docs/security.md), latency and
audit of each request (observe.py), the request limits (limits.py), then authentication of the DICOMweb and WADO-URI paths (auth.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from isthmus import __version__
from isthmus.p2p.page import routes as share_page_routes
from isthmus.p2p.web import routes as p2p_routes
from isthmus.web import admin, capabilities, deidentify, dicom_ws, dicomweb, operations, wado_uri
from isthmus.web.auth import AuthMiddleware
from isthmus.web.context import WebContext
from isthmus.web.errors import EXCEPTION_HANDLERS
from isthmus.web.limits import LimitsMiddleware
from isthmus.web.observe import ObserveMiddleware
from isthmus.web.service import DICOMWEB_PREFIX, blocking

VIEWER_DIR = Path(__file__).resolve().parent.parent / "viewer"
# Headers a cross-origin DICOMweb client needs to send and to read.
CORS_ALLOW_HEADERS = ["Authorization", "Accept", "Content-Type", "Range", "Cache-Control"]
CORS_EXPOSE_HEADERS = [
    "Warning",
    "Content-Location",
    "Content-Range",
    "Accept-Ranges",
    "Content-Length",
    "Content-Type",
    "Allow",
]


def create_app(ctx: WebContext) -> Starlette:
    """Build the app; each door module contributes its routes."""

    async def health(request: Request) -> JSONResponse:
        # counting is a scan of each table in SQLite: off the event loop
        counts = await blocking(ctx.archive.counts)
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "aet": ctx.settings.aet,
                "dicom_port": ctx.settings.dicom_port,
                "counts": counts,
            }
            | ({"worker": ctx.worker, "pid": os.getpid()} if ctx.worker else {})
        )

    routes: list[BaseRoute] = [
        Route("/health", health),
        *operations.routes(),
        Route(DICOMWEB_PREFIX, capabilities.capabilities, methods=["OPTIONS"]),
        *dicomweb.routes(),
        *wado_uri.routes(),
        *deidentify.routes(),
        *dicom_ws.routes(ctx),
        *admin.routes(ctx),
        *p2p_routes(ctx),
        *share_page_routes(),
        *viewer_routes(VIEWER_DIR),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware(ctx),
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=_warm_up,
    )
    app.state.ctx = ctx
    return app


@asynccontextmanager
async def _warm_up(_app: Starlette) -> AsyncIterator[None]:
    """Before the port is reported open: one call through the handlers' worker threads
    and one through Starlette's (its static and file responses), so that the first
    request does not start them or import anyio's asyncio backend (90 ms of a fresh
    server's first STOW-RS here)."""
    await blocking(int)
    await run_in_threadpool(int)
    yield


def middleware(ctx: WebContext) -> list[Middleware]:
    stack: list[Middleware] = []
    origins = list(ctx.settings.cors_origins)
    if origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"],
                allow_headers=CORS_ALLOW_HEADERS,
                expose_headers=CORS_EXPOSE_HEADERS,
                max_age=600,
            )
        )
    stack.append(Middleware(ObserveMiddleware, activity=ctx.archive.activity))
    stack.append(Middleware(LimitsMiddleware, settings=ctx.settings))
    stack.append(Middleware(AuthMiddleware, authenticator=ctx.authenticator))
    return stack


def viewer_routes(folder: Path) -> list[BaseRoute]:
    """The viewer's static files at / (index.html for /), when the viewer is built."""
    if not (folder / "index.html").is_file():
        return []
    return [Mount("/", app=StaticFiles(directory=folder, html=True), name="viewer")]
