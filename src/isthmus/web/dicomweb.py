"""The DICOMweb service (PS3.18 10): every RESTful resource, mounted under /dicom-web.

Routes with the same path and different methods (GET retrieve, POST store,
DELETE, OPTIONS capabilities) are listed separately; Starlette picks by method.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount

from isthmus.web import (
    bulkdata,
    capabilities,
    delete,
    frames,
    metadata,
    qido,
    rendered,
    stow,
    ups,
    ups_channel,
    wado,
)
from isthmus.web.service import DICOMWEB_PREFIX


def routes() -> list[BaseRoute]:
    """QIDO-RS, WADO-RS, STOW-RS, delete, UPS-RS and capabilities, under the service root."""
    inner: list[BaseRoute] = [
        *qido.routes(),
        *metadata.routes(),
        *frames.routes(),
        *bulkdata.routes(),
        *rendered.routes(),
        *wado.routes(),
        *stow.routes(),
        *delete.routes(),
        *ups.routes(),
        *ups_channel.routes(),
        *capabilities.routes(),
    ]
    return [Mount(DICOMWEB_PREFIX, routes=inner)]
