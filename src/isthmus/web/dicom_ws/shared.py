"""Registered AE titles across the processes of one archive (docs/scaling.md).

A browser's AE title lives on the process whose gateway it registered with: the
router of that process's DICOM port hands its associations to the browser.  The
gateway records each registration in the archive (`Archive.register_route`), and
answers the other processes' move destinations from it: a C-MOVE that arrives at
process 2 for a browser registered on process 1 sends its C-STORE sub-operations to
process 1's DICOM port, whose router hands them to the browser.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from isthmus.config import Peer

if TYPE_CHECKING:
    from isthmus.web.context import WebContext

log = logging.getLogger(__name__)


class SharedRegistrations:
    """The gateway's registered AE titles, as the archive's routes."""

    def __init__(
        self,
        ctx: WebContext,
        address: Callable[[], tuple[str, int] | None],
        local: Callable[[str], bool],
    ) -> None:
        self.archive = ctx.archive
        public = ctx.settings.dicom_public_host

        def shared_address() -> tuple[str, int] | None:
            here = address()
            return (public, here[1]) if here is not None and public else here

        self.address = shared_address
        self.local = local  # is the AE title registered with this process's gateway?
        here = address()
        if here is not None:
            try:
                self.archive.forget_routes_at(*here)
            except Exception:
                log.warning("cannot clear the AE titles an earlier process at %s:%d left", *here)
        if ctx.access is not None:
            ctx.access.add_resolver(self.destination)

    async def registered(self, aet: str) -> None:
        here = self.address()
        if here is None:
            return
        try:
            await asyncio.to_thread(self.archive.register_route, aet, *here)
        except Exception:  # the browser still receives through this process
            log.exception("AE title %s: not shared with the other processes", aet)

    async def unregistered(self, aet: str) -> None:
        if self.local(aet):  # registered again meanwhile
            return
        try:
            await asyncio.to_thread(self.archive.unregister_route, aet)
        except Exception:
            log.exception("AE title %s: cannot remove its shared registration", aet)

    def destination(self, aet: str) -> Peer | None:
        """Where a C-MOVE to `aet` goes when another process holds it (called by
        AccessControl.destination on the move's thread)."""
        found = self.archive.route(aet)
        if found is None:
            return None
        host, port, mine = found
        return None if mine else Peer(aet, host, port)
