"""What every web endpoint may use: settings, the archive, and the node's DICOM port."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from isthmus.archive import Archive
from isthmus.config import Settings
from isthmus.web.auth import Authenticator
from isthmus.web.open_channels import OpenChannels

if TYPE_CHECKING:  # for the annotations only: the web door runs without the DIMSE door
    from pathlib import Path

    from isthmus.metrics import Metrics
    from isthmus.node.access import AccessControl
    from isthmus.node.contacts import Contacts
    from isthmus.node.router import AssociationRouter


class RelayView(Protocol):
    """What the admin API shows and does of the relay (docs/relay.md, "Status")."""

    def status(self) -> dict[str, Any]:
        """Sites with fingerprints, exported and imported AE titles, transfers."""

    def accept(self, site: str, fingerprint: str) -> None:
        """Trust `site`'s new keys, compared out of band; ValueError if not offered."""


@dataclass
class WebContext:
    settings: Settings
    archive: Archive
    # The node's DICOM port and access control (isthmus.node), for doors that route
    # associations (the DICOM-over-WebSocket gateway registers browser AE titles as
    # routes and C-MOVE destinations); None when DIMSE is off.
    router: AssociationRouter | None = None
    access: AccessControl | None = None
    # A worker process's own DICOM port (workers.py), when `router`'s port is shared by
    # several workers: the one other processes reach this worker's browser AE titles at.
    dicom_home: AssociationRouter | None = None
    # Associations in progress and last contact per AE (node/contacts.py), for the
    # admin page; None when the node does not track them.
    contacts: Contacts | None = None
    # Who may do what over HTTP (web/auth.py), from the settings.  The HTTP middleware
    # and the WebSocket gateway (permission "dicom-ws") ask it.
    authenticator: Authenticator = field(init=False)
    # The node's metrics (isthmus.metrics, for /metrics) and audit log (isthmus.audit,
    # for /api/audit); None when the node runs without them.
    metrics: Metrics | None = None
    audit_log: Path | None = None
    # This site of the federation (relay/site.py `RelaySite`), for the admin page; None:
    # no relay.
    relay: RelayView | None = None
    # The UPS event channels open now (web/open_channels.py), so that stopping the node
    # lets them send "GOING DOWN" before the sockets close.
    ups_channels: OpenChannels = field(default_factory=OpenChannels)
    # With `isthmus serve --workers N`: this worker's name ("w0"), and the other
    # workers' names with the base URL of their private plain-HTTP port
    # ("http://127.0.0.1:40123"), where the gateway passes on an accept WebSocket for
    # an association another worker holds (web/dicom_ws/sibling.py).  "": one process.
    worker: str = ""
    siblings: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.authenticator = Authenticator(self.settings, self.archive.activity)
