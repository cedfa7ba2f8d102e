"""What the two sides of the association relay (caller.py, agent.py) use of the relay
router (router.py): a protocol, so that neither side imports the router that owns them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory import Directory
from isthmus.relay.link import Link
from isthmus.relay.session import Session

# allowed(service, calling AE title, address): this node's own access rules.
Allowed = Callable[[str, str, str | None], bool]


class RelayDoor(Protocol):
    link: Link
    identity: SiteIdentity
    directory: Directory
    exports: dict[str, tuple[str, int]]
    timeout: float
    idle: float
    allowed: Allowed | None
    moves: Any  # caller.MoveElsewhere | None
    max_associations: int

    def opened(
        self,
        session: Session,
        calling_aet: str,
        called_aet: str,
        address: str,
        called_address: str | None = None,
    ) -> None:
        """A relayed association began (`called_address`: where the called AE is, when
        another site)."""

    def audit_association(
        self,
        accepted: bool,
        calling_aet: str,
        called_aet: str,
        address: str,
        reason: str | None,
        site: str = "",
        called_address: str | None = None,
    ) -> None:
        """The audit trail's Association event."""

    def sessions(self, site: str | None = None) -> int:
        """Associations relayed now (with `site`)."""

    def spawn_thread(self, target: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
        """Run `target` on a daemon thread of its own."""
