"""Activity: the facts doors publish on the event bus for the audit trail and the metrics.

A door knows when something happens (an association accepted, a query answered,
instances stored or sent, a login refused); it calls one method here and goes on.  The
method publishes an event on `archive.events` (events.py), and the subscribers decide
what to make of it: the audit trail (isthmus.audit) writes a DICOM audit message
(PS3.15 A.5), the metrics (isthmus.metrics) count.  Neither reaches into a door.

Topics and payloads (JSON-serializable, so a cross-process bus can carry them):

- ``audit.<event>``: a security-relevant event, one audit message per study it names
  (or one without studies).  ``<event>`` is one of `AUDIT_EVENTS`.  Payload keys:
  ``time`` (ISO 8601), ``outcome`` (0, 4, 8, 12: PS3.15 A.5.1 EventOutcomeIndicator),
  ``description`` (why it failed), ``door`` ("dimse", "dicomweb", "wado-uri", "relay"…),
  ``user`` and ``address`` (who asked, and from where), ``local`` (our AE title or URL
  path), ``peer`` (the other party of a transfer: C-MOVE destination, export target),
  ``studies`` (``[{"uid", "sop_classes": {uid: count}, "patient_id"?, "patient_name"?}]``),
  ``query`` (the query as received, for "query"), ``sop_class``, ``detail`` (a mapping).
- ``metrics.instance``: one instance received or sent (``door``, ``direction``
  "received"/"sent", ``bytes``); published per instance, so it is lean.
- ``metrics.association``: an association ended (``door``, ``seconds``).
- ``metrics.request``: an HTTP request answered (``route``, ``method``, ``status``, ``seconds``).
- ``metrics.error``: an index or blob store error (``store``: "index" or "blob").
- ``metrics.p2p``: a transfer between WebRTC peers (``direction``).

Future doors publish the documented events too: ``audit.share-link`` (detail
``{"action": "created"|"used"|"revoked", "link": id}``) and ``audit.relay-transfer``
(``peer`` the remote site, ``detail`` ``{"direction": "sent"|"received"}``; counted
by the metrics too), with ``metrics.instance`` per instance (``door`` "relay" or "p2p").
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from isthmus.archive.events import EventBus, LocalEventBus

AUDIT_EVENTS = (
    "application",  # start, stop (detail {"state": "started"|"stopped"})
    "association",  # accepted, rejected (outcome 4 with the reason)
    "authentication",  # a user authenticated, or failed to
    "query",  # C-FIND, QIDO-RS
    "stored",  # instances received: C-STORE, STOW-RS, import
    "transferred",  # instances sent: C-MOVE, C-GET, WADO-RS, WADO-URI
    "exported",  # instances sent out of the archive's control (forwarding, export)
    "deleted",  # instances deleted
    "share-link",  # a share link created, used or revoked (a future door)
    "relay-transfer",  # a study sent to or received from another site (a future door)
)
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = 0, 4, 8, 12


def os_user() -> str:
    """Who runs a command (an import, a de-identification into the archive) on this
    machine: the user its audit message names."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def now() -> str:
    """The current time as ISO 8601 with a UTC offset (xsd:dateTime)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Activity:
    """Publishes the facts of one archive's doors on its event bus."""

    def __init__(self, events: EventBus | None = None) -> None:
        """Publish on `events` (a private bus nobody hears when None: tests, tools)."""
        self.events: EventBus = events if events is not None else LocalEventBus()

    def audit(
        self,
        event: str,
        *,
        outcome: int = SUCCESS,
        description: str | None = None,
        door: str = "",
        user: str = "",
        address: str | None = None,
        local: str = "",
        peer: str = "",
        studies: Sequence[Mapping[str, Any]] = (),
        query: str | None = None,
        sop_class: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish ``audit.<event>`` (see the module docstring for the keys)."""
        if event not in AUDIT_EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        payload: dict[str, Any] = {
            "time": now(),
            "outcome": outcome,
            "door": door,
            "user": user,
            "address": address,
            "local": local,
            "peer": peer,
            "studies": [dict(s) for s in studies],
        }
        for key, value in (
            ("description", description),
            ("query", query),
            ("sop_class", sop_class),
            ("detail", dict(detail) if detail else None),
        ):
            if value is not None:
                payload[key] = value
        self.events.publish(f"audit.{event}", payload, local=True)

    def association(
        self,
        accepted: bool,
        calling_aet: str,
        called_aet: str,
        address: str | None,
        reason: str | None = None,
    ) -> None:
        """An A-ASSOCIATE-RQ answered with AC (accepted) or RJ (PS3.8 9.3.3, 9.3.4)."""
        self.audit(
            "association",
            outcome=SUCCESS if accepted else MINOR_FAILURE,
            description=reason,
            door="dimse",
            user=calling_aet,
            address=address,
            local=called_aet,
        )

    def instance(self, door: str, direction: str, size: int) -> None:
        """One instance "received" or "sent" through `door` (metrics only)."""
        self.events.publish(
            "metrics.instance", {"door": door, "direction": direction, "bytes": size}, local=True
        )

    def association_ended(self, door: str, seconds: float) -> None:
        self.events.publish("metrics.association", {"door": door, "seconds": seconds}, local=True)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.events.publish(
            "metrics.request",
            {"route": route, "method": method, "status": status, "seconds": seconds},
            local=True,
        )

    def error(self, store: str) -> None:
        """An index ("index") or blob store ("blob") operation failed."""
        self.events.publish("metrics.error", {"store": store}, local=True)

    def transfer(self, event: str, door: str, **who: Any) -> Transfer:
        """A tally of the instances one association or request stores or sends; its
        `close()` publishes one ``audit.<event>`` naming every study it saw."""
        return Transfer(self, event, door, who)


class Transfer:
    """Instances of one association or request, by study and SOP class.

    `add` is on the ingest path: a dictionary update and one lean metrics event."""

    def __init__(self, activity: Activity, event: str, door: str, who: Mapping[str, Any]) -> None:
        self.activity = activity
        self.event = event
        self.door = door
        self.who = dict(who)
        self.direction = "received" if event == "stored" else "sent"
        self.studies: dict[str, dict[str, int]] = {}
        self.failed = 0
        self._lock = threading.Lock()  # STOW stores the parts of one request in threads

    def add(self, study_uid: str | None, sop_class: str | None, size: int, ok: bool = True) -> None:
        if not ok or not study_uid:
            self.failed += 1
            return
        with self._lock:
            classes = self.studies.setdefault(study_uid, {})
            key = sop_class or ""
            classes[key] = classes.get(key, 0) + 1
        self.activity.instance(self.door, self.direction, size)

    def close(self, description: str | None = None) -> None:
        """Publish the tally: nothing when no instance went through and none failed."""
        if not self.studies and not self.failed:
            return
        studies = [{"uid": uid, "sop_classes": classes} for uid, classes in self.studies.items()]
        outcome = MINOR_FAILURE if self.failed else SUCCESS
        if self.failed and description is None:
            description = f"{self.failed} instance(s) failed"
        self.activity.audit(
            self.event,
            outcome=outcome,
            description=description,
            door=self.door,
            studies=studies,
            **self.who,
        )
