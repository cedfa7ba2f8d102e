"""What every web endpoint may use: settings, the archive, and the node's DICOM port."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from isthmus.archive import Archive
from isthmus.config import Settings
from isthmus.node.access import AccessControl
from isthmus.node.router import AssociationRouter


@dataclass
class WebContext:
    settings: Settings
    archive: Archive
    # The node's DICOM port and access control (isthmus.node), for doors that route
    # associations (the DICOM-over-WebSocket gateway); None when DIMSE is off.
    router: AssociationRouter | None = None
    access: AccessControl | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    # Who may do what over HTTP (web/auth.py Authenticator); create_app fills it in.  The
    # WebSocket gateway checks the "dicom-ws" permission with it.
    authenticator: Any = None
