"""What every web endpoint may use: settings, the archive, and the DIMSE node's hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from isthmus.archive import Archive
from isthmus.config import Settings
from isthmus.web.auth import Authenticator

if TYPE_CHECKING:  # for the annotations only: the web door runs without the DIMSE door
    from isthmus.dimse.peers import AccessControl
    from isthmus.dimse.router import AssociationRouter


@dataclass
class WebContext:
    settings: Settings
    archive: Archive
    # The DIMSE association router and access control, for doors that route
    # associations (the DICOM-over-WebSocket gateway registers browser AE titles as
    # routes and C-MOVE destinations); None when DIMSE is off.
    router: AssociationRouter | None = None
    access: AccessControl | None = None
    # Who may do what over HTTP (web/auth.py), from the settings.  The HTTP middleware
    # and the WebSocket gateway (permission "dicom-ws") ask it.
    authenticator: Authenticator = field(init=False)

    def __post_init__(self) -> None:
        self.authenticator = Authenticator(self.settings)
