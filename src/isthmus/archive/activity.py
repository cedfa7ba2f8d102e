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
- ``audit.procedure-record``: a procedure step created or changed (PS3.15 A.5.3.15
  "Procedure Record"): a UPS by N-CREATE, N-SET, N-ACTION Change State or Request Cancel
  or their UPS-RS transactions, an MPPS by N-CREATE or N-SET; accepted (outcome 0) or
  refused (4, the status's reason in ``description``; 8 when the archive itself failed).
  ``detail``: ``{"action": "C"|"U", "sop_class", "sop_instance", "operation",
  "state"?, "accession"?, "patient_id"?, "patient_name"?}``: "C" for a creation, "U" for
  any other change (a state change, a cancel request); the step's SOP Class (UPS Push
  for a work item, MPPS) and SOP Instance UID; the operation as the door names it
  ("N-SET", "change state", …); the step's state after it; its patient when the step
  names one.  ``studies``: the studies the step names (Study Instance UID at the top, in
  the Referenced Request Sequence or the Scheduled Step Attributes Sequence), each with
  that patient.  `Activity.procedure_record` builds it from the step's DICOM JSON.
- ``audit.security-alert``: a Security Alert (PS3.15 A.5.3.11); ``detail`` ``{"type":
  "node-authentication"}`` for a node refused at a TLS handshake (``user`` and
  ``address`` its address, the reason in ``description``; no ``local``: the handshake
  comes before any called AE title, and the message names the archive by its audit
  source).
- ``metrics.instance``: one instance received or sent (``door``, ``direction``
  "received"/"sent", ``bytes``); published per instance, so it is lean.
- ``metrics.association``: an association ended (``door``, ``seconds``).
- ``metrics.request``: an HTTP request answered (``route``, ``method``, ``status``, ``seconds``).
- ``metrics.error``: an index or blob store error (``store``: "index" or "blob").
- ``metrics.p2p``: a transfer between WebRTC peers (``direction``).

``audit.share-link`` (p2p/offers.py `audit`; detail ``{"action":
"created"|"used"|"revoked", "link": id}``, a refused use outcome 4) and ``audit.relay-transfer``
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
    "share-link",  # a share link created, used (or refused) or revoked
    "relay-transfer",  # a study sent to or received from another site (a future door)
    "procedure-record",  # a work item (UPS) or performed step (MPPS) created or changed
    "security-alert",  # a node refused at the TLS handshake (detail {"type": "node-authentication"})
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

    def node_authentication_failed(self, address: str | None, reason: str) -> None:
        """A peer node refused at the TLS handshake of a secure transport connection: its
        certificate from another CA or missing where required, a protocol or suites it
        may not use (PS3.15 B.9).  A Security Alert of type Node Authentication (PS3.15
        A.5.3.11, CID 403 110126; IHE ATNA's "node-authentication-failure"), outcome 4:
        the refusal is the mitigation, and it worked."""
        self.audit(
            "security-alert",
            outcome=MINOR_FAILURE,
            description=reason,
            door="dimse",
            user=address or "unknown",
            address=address,
            detail={"type": "node-authentication"},
        )

    def procedure_record(
        self,
        action: str,
        sop_class: str,
        sop_instance: str,
        step: Mapping[str, Any] | None,
        *,
        operation: str,
        outcome: int = SUCCESS,
        description: str | None = None,
        door: str,
        user: str,
        address: str | None,
        local: str,
    ) -> None:
        """A procedure step created ("C") or changed ("U"), or a refused attempt (PS3.15
        A.5.3.15): `step` is its DICOM JSON as it is now (the request's, or the stored one,
        when the change was refused), where its patient and studies are found."""
        subject = step_subject(step or {})
        patient = {k: subject[k] for k in ("patient_id", "patient_name") if k in subject}
        studies = [{"uid": uid, **patient} for uid in subject.pop("studies")]
        detail = {
            "action": action,
            "sop_class": sop_class,
            "sop_instance": sop_instance,
            "operation": operation,
            **subject,
        }
        self.audit(
            "procedure-record",
            outcome=outcome,
            description=description,
            door=door,
            user=user,
            address=address,
            local=local,
            studies=studies,
            detail=detail,
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


# The attributes of a procedure step (PS3.4 Table CC.2.5-3 for a UPS, F.7.2-1 for an MPPS)
# that say whom and what it is about.
PATIENT_NAME, PATIENT_ID, STUDY_INSTANCE_UID = "00100010", "00100020", "0020000D"
ACCESSION_NUMBER = "00080050"
REFERENCED_REQUEST, SCHEDULED_STEP_ATTRIBUTES = "0040A370", "00400270"
STEP_STATES = ("00741000", "00400252")  # Procedure Step State, PPS Status


def step_subject(step: Mapping[str, Any]) -> dict[str, Any]:
    """The patient, studies, accession and state a procedure step (DICOM JSON) names:
    ``{"studies": [uid, …], "patient_id"?, "patient_name"?, "accession"?, "state"?}``.
    A UPS names its studies in the Referenced Request Sequence, an MPPS in the Scheduled
    Step Attributes Sequence (the Study Instance UID is type 1 in their items)."""
    out: dict[str, Any] = {"studies": []}
    patient_id = _first(step, PATIENT_ID)
    if isinstance(patient_id, str) and patient_id:
        out["patient_id"] = patient_id
        out["patient_name"] = _person_name(_first(step, PATIENT_NAME))
    requests = [step, *_items(step, REFERENCED_REQUEST), *_items(step, SCHEDULED_STEP_ATTRIBUTES)]
    for item in requests:
        uid = _first(item, STUDY_INSTANCE_UID)
        if isinstance(uid, str) and uid and uid not in out["studies"]:
            out["studies"].append(uid)
        accession = _first(item, ACCESSION_NUMBER)
        if isinstance(accession, str) and accession and "accession" not in out:
            out["accession"] = accession
    for tag in STEP_STATES:
        state = _first(step, tag)
        if isinstance(state, str) and state:
            out["state"] = state.strip()
            break
    return out


def _first(ds: Mapping[str, Any], tag: str) -> Any:
    element = ds.get(tag)
    values = element.get("Value") if isinstance(element, Mapping) else None
    return values[0] if isinstance(values, list) and values else None


def _items(ds: Mapping[str, Any], tag: str) -> list[Mapping[str, Any]]:
    element = ds.get(tag)
    values = element.get("Value") if isinstance(element, Mapping) else None
    return [i for i in values if isinstance(i, Mapping)] if isinstance(values, list) else []


def _person_name(value: Any) -> str:
    """A PN value of DICOM JSON (PS3.18 F.2.2): its Alphabetic group, as the index keeps it."""
    if isinstance(value, Mapping):
        return str(value.get("Alphabetic") or "")
    return str(value) if isinstance(value, str) else ""


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
