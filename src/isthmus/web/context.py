"""What every web endpoint may use: settings, the archive, and the DIMSE node's hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from isthmus.archive import Archive
from isthmus.config import Settings


@dataclass
class WebContext:
    settings: Settings
    archive: Archive
    # The DIMSE association router and access control, for doors that route
    # associations (the DICOM-over-WebSocket gateway); None when DIMSE is off.
    router: Any = None
    access: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    # Who may do what over HTTP (web/auth.py Authenticator); create_app fills it in.  The
    # WebSocket gateway checks the "dicom-ws" permission with it.
    authenticator: Any = None
