"""What the node's DICOM port is doing: associations in progress, last contact per AE.

Doors publish ``association.opened`` and ``association.closed`` on the archive's event
bus (payload: ``id``, ``direction`` "inbound" or "outbound", ``calling_aet``,
``called_aet``, ``address``); `Contacts` listens and keeps, in memory, the associations
open now and when each AE title was last in contact (the peer we called, or the peer
that called us), for the admin page.  A restart forgets it: it is a view, not a record
(the audit trail is the record).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from isthmus.archive import Event, EventBus

MAX_CONTACTS = 1000  # AE titles remembered (a caller may invent any number of them)


class Contacts:
    """Associations in progress and the last contact of each AE title."""

    def __init__(self, events: EventBus) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, dict[str, Any]] = {}
        self._last: dict[str, dict[str, Any]] = {}
        self._unsubscribe: Callable[[], None] = events.subscribe("association.", self._on_event)

    def _on_event(self, event: Event) -> None:
        payload = dict(event.payload)
        key = str(payload.get("id", ""))
        now = datetime.now(UTC).isoformat()
        direction = payload.get("direction", "inbound")
        peer = payload.get("called_aet" if direction == "outbound" else "calling_aet", "")
        with self._lock:
            if event.topic == "association.opened":
                self._open[key] = {**payload, "since": now}
            elif event.topic == "association.closed":
                self._open.pop(key, None)
            else:
                return
            aet = str(peer).strip()
            self._last.pop(aet, None)
            if len(self._last) >= MAX_CONTACTS:  # forget the least recent
                self._last.pop(next(iter(self._last)))
            self._last[aet] = {
                "time": now,
                "direction": direction,
                "address": payload.get("address"),
            }

    def associations(self) -> list[dict[str, Any]]:
        """The associations open now, oldest first."""
        with self._lock:
            return sorted(self._open.values(), key=lambda a: str(a["since"]))

    def last_contact(self, aet: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._last.get(aet.strip())
            return dict(found) if found else None

    def contacts(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self._last.items()}

    def close(self) -> None:
        self._unsubscribe()
