"""The DICOM-over-WebSocket gateway: a browser as a DICOM node (docs/dicom-websocket.md).

One WebSocket carries one association, one complete PDU per binary message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Route, WebSocketRoute

from isthmus.web.dicom_ws.gateway import Gateway

if TYPE_CHECKING:
    from isthmus.web.context import WebContext


def routes(ctx: WebContext) -> list[BaseRoute]:
    """The gateway's endpoints under /dicom-ws."""
    gateway = Gateway(ctx)
    return [
        Route("/dicom-ws/peers", gateway.peers),
        WebSocketRoute("/dicom-ws/associate", gateway.associate),
        WebSocketRoute("/dicom-ws/listen", gateway.listen),
        WebSocketRoute("/dicom-ws/accept", gateway.accept),
    ]
