"""The ASGI application: one Starlette app composed of each web door's routes."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from isthmus import __version__
from isthmus.web.context import WebContext


def create_app(ctx: WebContext) -> Starlette:
    """Build the app; each door module contributes `routes(ctx)`."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({
            "status": "ok",
            "version": __version__,
            "aet": ctx.settings.aet,
            "dicom_port": ctx.settings.dicom_port,
            "counts": ctx.archive.counts(),
        })

    routes: list[BaseRoute] = [Route("/health", health)]
    app = Starlette(routes=routes)
    app.state.ctx = ctx
    return app
