"""The browser recipient's page: ``GET /share/{link_id}`` (docs/p2p.md, "The browser recipient").

The page (viewer/share.html and viewer/recipient/*.js) holds no patient data and needs no
account: it reads the secret from the URL fragment, which never reaches this server, and
pulls the study over WebRTC.  It is the same page for every link id, known or not, so it
tells nothing about which links exist (the offer's refusal says that, to whoever holds the
secret).  It is not cached and sends no Referer; its Content-Security-Policy lets it load
only this node's scripts and talk only to this node (signalling) and WebRTC peers.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

PAGE = Path(__file__).resolve().parent.parent / "viewer" / "share.html"
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:;"
        " connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


async def share_page(request: Request) -> Response:
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers=HEADERS)


def routes() -> list[BaseRoute]:
    if not PAGE.is_file():
        return []
    return [Route("/share/{link_id}", share_page, methods=["GET", "HEAD"])]
