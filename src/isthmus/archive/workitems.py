"""The one store of work items (UPS, PS3.4 Annex CC), behind every door that changes them.

`Archive.workitems` is a `WorkItems`.  Doors (UPS-RS, UPS over DIMSE, Modality Worklist,
MPPS, the CLI, the viewer) call it and map its `WorkItemError.status` (a DIMSE status,
`UpsStatus`) to their own answer; the state machine and the attribute rules
(archive/workitem_rules.py) run here, once.

API (datasets are DICOM JSON dicts keyed by 8-hex-digit tags, PS3.18 F.2):

========================================================  ==================================
``create(dataset, uid=None) -> Result``                   N-CREATE / UPS-RS create (CC.2.5)
``get(uid) -> dict``                                      N-GET / retrieve; no Transaction UID
``state(uid) -> str``                                     its Procedure Step State
``update(uid, changes, transaction_uid=None) -> Result``  N-SET (CC.2.6) / UPS-RS update
``change_state(uid, state, transaction_uid) -> Result``   N-ACTION type 1 (CC.2.1)
``request_cancel(uid, request={}, aet=None) -> Result``   N-ACTION type 2 (CC.2.2)
``search(params, limit=None, offset=0, fuzzy=False)``       C-FIND / UPS-RS search (QIDO keys)
                                                          -> list[dict], by scheduled start
``subscribe(aet, uid, deletion_lock=False, filter=None)`` N-ACTION type 3 (CC.2.3); uid may be
                                                          GLOBAL_SUBSCRIPTION or
                                                          FILTERED_SUBSCRIPTION (+ filter keys)
``unsubscribe(aet, uid)``                                 N-ACTION type 4; global: from all
``suspend(aet)``                                          N-ACTION type 5: no future items
``subscribers(uid) -> list[str]``                         AE titles an event on `uid` reaches
``subscriptions(aet) -> list[Subscription]``
``pending_events(aet, after=0) -> list[WorkItemEvent]``   logged, undelivered, within retention
``mark_delivered(aet, ids) -> list[int]``                a door takes them (only those not
                                                          yet taken: send exactly these)
``mark_undelivered(aet, ids)``                            …and gives back what it could not send
``scp_status(status)``                                    SCP Status Change to every subscriber
========================================================  ==================================

`Result` has `uid`, `dataset` (as stored, without Transaction UID), `warnings`
(`UpsStatus` warnings such as 0xB300, 0xB304, 0xB306: success with a warning) and the
`events` it caused.  Every refusal raises `WorkItemError(status, reason)`; an unknown
work item is 0xC307.

**Events.** Each change logs one event report per subscribed AE (`ups_event`, kept for
`event_retention` seconds, default 3600) in the transaction that makes the change, then
publishes it on `archive.events`: topic ``ups.<work item uid>``, payload
``{"id", "aet", "uid", "type", "info"}`` (`WorkItemEvent.payload`; `type` is the Event
Type ID of PS3.4 Table CC.2.4-1: 1 State Report, 2 Cancel Requested, 3 Progress Report,
4 SCP Status Change, 5 Assigned; `info` the event information as DICOM JSON).  A door
delivers the events of the AE titles it serves (the Open Event Channel, N-EVENT-REPORT):
it calls `mark_delivered` first and sends what that returns (`mark_undelivered` when the
send fails); on reconnect it sends `pending_events` first.

**Concurrency.** Every change is a read, a check and an UPDATE guarded by the row's
`version` (``… WHERE pk = ? AND version = ?``).  When two doors change one item at once,
one UPDATE finds the version moved, and that change is checked again against the new
row: it then fails with the standard status (e.g. 0xC302 "already IN PROGRESS", 0xC301
wrong Transaction UID).  Same on SQLite and PostgreSQL, one process or several.

**Modality Worklist attributes** (what the MWL door reads, what `isthmus worklist add`
writes; PS3.4 K.6.1.2 keys from UPS attributes, a common mapping):

==================================  ====================================================
MWL attribute                        work item attribute
==================================  ====================================================
ScheduledStationAETitle              ScheduledStationNameCodeSequence[0].CodeValue
                                     (CodingSchemeDesignator ``99ISTHMUS``)
Modality                             ScheduledStationClassCodeSequence[0].CodeValue
                                     (CodingSchemeDesignator ``DCM``, CID 29 codes)
ScheduledProcedureStepStartDate/Time ScheduledProcedureStepStartDateTime (split)
ScheduledProcedureStepDescription    ProcedureStepLabel
ScheduledProcedureStepID             ReferencedRequestSequence[0].RequestedProcedureID
ScheduledPerformingPhysicianName     ScheduledHumanPerformersSequence[0].HumanPerformerName
ScheduledProtocolCodeSequence        ScheduledWorkitemCodeSequence
AccessionNumber, RequestedProcedure  ReferencedRequestSequence[0]: AccessionNumber,
ID/Description, StudyInstanceUID     RequestedProcedureID, RequestedProcedureDescription,
                                     StudyInstanceUID
Patient's Name, ID, Birth Date, Sex  the same attributes, top level
==================================  ====================================================

Work items are never deleted: COMPLETED and CANCELED ones stay retrievable (so a
deletion lock, CC.2.3.2, is always honoured).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from isthmus.archive import index as idx
from isthmus.archive import workitem_rules as r
from isthmus.archive.events import EventBus
from isthmus.archive.matchers import DateTimeRange
from isthmus.archive.workitem_events import (
    FILTERED_SUBSCRIPTION,
    GLOBAL_SUBSCRIPTION,
    EventType,
    Subscription,
    WorkItemEvent,
    cancel_requested,
    recipients,
    state_report,
    update_events,
)
from isthmus.archive.workitem_rules import Change, UpsStatus, WorkItemError
from isthmus.archive.workitem_search import Compiled, compile_keys, matches
from isthmus.dicom.uids import looks_like_uid

log = logging.getLogger(__name__)

MAX_RETRIES = 20
# The Affected SOP Instance of an SCP Status Change: the well-known UPS instance that
# stands for the SCP's UPS list (PS3.4 CC.2.4.2, as for global subscriptions).
SCP_STATUS_UID = GLOBAL_SUBSCRIPTION
_W, _S, _E = idx.workitem, idx.ups_subscription, idx.ups_event


@dataclass
class Result:
    """An accepted operation: the work item after it, warnings, the events it caused."""

    uid: str
    dataset: dict[str, Any]
    warnings: list[UpsStatus] = field(default_factory=list)
    events: list[WorkItemEvent] = field(default_factory=list)


@dataclass
class _Row:
    pk: int
    uid: str
    state: str
    transaction_uid: str | None
    version: int
    dataset: dict[str, Any]


class _Lost(Exception):
    """Another writer changed the row between our read and our UPDATE."""


Events = list[tuple[EventType, dict[str, Any]]]


class WorkItems:
    """Work items, their subscriptions and event log, in the archive's index."""

    def __init__(self, engine: Engine, events: EventBus, event_retention: float = 3600) -> None:
        self.engine = engine
        self.events = events
        self.event_retention = event_retention

    # ------------------------------------------------------------------ create
    def create(self, dataset: Mapping[str, Any], uid: str | None = None) -> Result:
        """A new SCHEDULED work item (PS3.4 CC.2.5); 0x0111 if the UID exists."""
        r.check_shape(dataset)
        uid = str(uid or r.value(dataset, r.SOP_INSTANCE_UID) or "")
        if not uid:
            from pydicom.uid import generate_uid

            uid = str(generate_uid())
        if not looks_like_uid(uid):
            raise WorkItemError(UpsStatus.INVALID_ATTRIBUTE_VALUE, f"{uid[:80]!r} is not a UID")
        given = r.value(dataset, r.SOP_INSTANCE_UID)
        if given and given != uid:
            raise WorkItemError(
                UpsStatus.INVALID_ATTRIBUTE_VALUE, "the dataset names another SOP Instance UID"
            )
        change = r.check_create(dataset, uid, _dt(_now()))
        now = _now()
        try:
            with self.engine.begin() as conn:
                pk = conn.execute(
                    _W.insert().values(
                        sop_instance_uid=uid,
                        state=r.SCHEDULED,
                        transaction_uid=None,
                        version=1,
                        created_at=now,
                        updated_at=now,
                        **_columns(change.dataset),
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                logged = self._log(conn, pk, uid, change.dataset, [_state(change.dataset)])
        except sa.exc.IntegrityError:
            raise WorkItemError(
                UpsStatus.DUPLICATE_SOP_INSTANCE, f"work item {uid} already exists"
            ) from None
        self._publish(logged)
        return Result(uid, change.dataset, change.warnings, logged)

    # -------------------------------------------------------------------- read
    def get(self, uid: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return self._row(conn, uid).dataset

    def state(self, uid: str) -> str:
        with self.engine.connect() as conn:
            return self._row(conn, uid).state

    def search(
        self,
        params: Mapping[str, str],
        limit: int | None = None,
        offset: int = 0,
        fuzzy: bool = False,
    ) -> list[dict[str, Any]]:
        """Work items matching QIDO-style keys (PS3.4 C.2.2.2 via archive/matchers.py),
        in scheduled start order; raises QueryError for a bad key."""
        compiled = compile_keys(params, fuzzy)
        stmt = sa.select(_W.c.metadata, _W.c.state).order_by(_W.c.scheduled_start, _W.c.pk)
        state = _plain(params, "ProcedureStepState", r.PROCEDURE_STEP_STATE)
        if state is not None:
            stmt = stmt.where(_W.c.state == state)
        patient = _plain(params, "PatientID", r.PATIENT_ID)
        if patient is not None:
            stmt = stmt.where(_W.c.patient_id == patient)
        stmt = stmt.where(*_start_window(compiled))
        out: list[dict[str, Any]] = []
        skipped = 0
        with self.engine.connect() as conn:
            for text, _state_col in conn.execute(stmt):
                ds = json.loads(text)
                if not matches(ds, compiled):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                out.append(ds)
                if limit is not None and len(out) >= limit:
                    break
        return out

    # ----------------------------------------------------------------- changes
    def update(
        self, uid: str, changes: Mapping[str, Any], transaction_uid: str | None = None
    ) -> Result:
        """N-SET (PS3.4 CC.2.6): replace the attributes in `changes`."""
        changes = dict(changes)
        if transaction_uid is None:
            transaction_uid = r.value(changes, r.TRANSACTION_UID)
        changes.pop(r.TRANSACTION_UID, None)

        def decide(row: _Row) -> tuple[Change, Events]:
            change = r.check_update(
                row.state,
                row.transaction_uid,
                row.dataset,
                changes,
                transaction_uid,
                _dt(_now()),
            )
            return change, update_events(row.dataset, change.dataset)

        return self._change(uid, decide)

    def change_state(self, uid: str, state: str, transaction_uid: str | None) -> Result:
        """N-ACTION Change UPS State (CC.2.1): claim (IN PROGRESS with a new Transaction
        UID), complete or cancel."""

        def decide(row: _Row) -> tuple[Change, Events]:
            change = r.check_state_change(
                row.state, row.transaction_uid, row.dataset, state, transaction_uid, _dt(_now())
            )
            change.dataset[r.PROCEDURE_STEP_STATE] = r.element("CS", change.state)
            moved = change.state != row.state
            return change, [_state(change.dataset)] if moved else []

        return self._change(uid, decide)

    def request_cancel(
        self, uid: str, request: Mapping[str, Any] | None = None, aet: str | None = None
    ) -> Result:
        """N-ACTION Request UPS Cancel (CC.2.2.3).  SCHEDULED: the SCP cancels it itself
        (IN PROGRESS, then CANCELED: two State Reports).  IN PROGRESS: the subscribers
        (the performer among them) get a Cancel Requested event; the item stays as it
        is.  CANCELED: success with warning 0xB304; COMPLETED: 0xC311.  Canceling a
        SCHEDULED item meets the final state requirements: the reason code proposed,
        else "Discontinued for unspecified reason" (DCM 110513)."""
        request = dict(request or {})
        r.check_shape(request)

        def decide(row: _Row) -> tuple[Change, Events]:
            if row.state == r.COMPLETED:
                raise WorkItemError(
                    UpsStatus.ALREADY_COMPLETED_CANCEL, "the work item is COMPLETED"
                )
            if row.state == r.CANCELED:
                return Change(
                    row.state, row.transaction_uid, row.dataset, [UpsStatus.ALREADY_CANCELED]
                ), []
            if row.state == r.IN_PROGRESS:
                info = cancel_requested(request, aet)
                return Change(row.state, row.transaction_uid, row.dataset, []), [
                    (EventType.CANCEL_REQUESTED, info)
                ]
            ds = r.with_cancellation(dict(row.dataset), _dt(_now()))
            progress = r.items(ds, r.PROGRESS_INFORMATION)
            first = dict(progress[0])
            for tag in (r.REASON_FOR_CANCELLATION, r.DISCONTINUATION_REASONS):
                if tag in request:
                    first[tag] = request[tag]
            if not r.items(first, r.DISCONTINUATION_REASONS):  # the final state's need
                first[r.DISCONTINUATION_REASONS] = r.element("SQ", r.UNSPECIFIED_DISCONTINUATION)
            ds[r.PROGRESS_INFORMATION] = r.element("SQ", first, *progress[1:])
            r.check_final_state(ds, r.CANCELED)
            ds[r.PROCEDURE_STEP_STATE] = r.element("CS", r.IN_PROGRESS)
            in_progress = _state(ds)
            ds = {**ds, r.PROCEDURE_STEP_STATE: r.element("CS", r.CANCELED)}
            return Change(r.CANCELED, None, ds, []), [in_progress, _state(ds)]

        return self._change(uid, decide)

    def _change(self, uid: str, decide: Callable[[_Row], tuple[Change, Events]]) -> Result:
        """Read, decide, UPDATE where the version is still the one read; on a lost race,
        decide again on the new row (the loser then gets the standard's status)."""
        for _ in range(MAX_RETRIES):
            try:
                with self.engine.begin() as conn:
                    row = self._row(conn, uid)
                    change, events = decide(row)
                    if (
                        change.dataset != row.dataset
                        or change.state != row.state
                        or (change.transaction_uid != row.transaction_uid)
                    ):
                        self._write(conn, row, change)
                    logged = self._log(conn, row.pk, uid, change.dataset, events)
            except _Lost:
                continue
            self._publish(logged)
            return Result(uid, change.dataset, change.warnings, logged)
        raise WorkItemError(UpsStatus.PROCESSING_FAILURE, f"work item {uid} changes too often")

    def _write(self, conn: Connection, row: _Row, change: Change) -> None:
        done = conn.execute(
            _W.update()
            .where(_W.c.pk == row.pk, _W.c.version == row.version)
            .values(
                state=change.state,
                transaction_uid=change.transaction_uid,
                version=row.version + 1,
                updated_at=_now(),
                **_columns(change.dataset),
            )
        )
        if done.rowcount != 1:
            raise _Lost()

    def _row(self, conn: Connection, uid: str) -> _Row:
        found = conn.execute(
            sa.select(_W.c.pk, _W.c.state, _W.c.transaction_uid, _W.c.version, _W.c.metadata).where(
                _W.c.sop_instance_uid == uid
            )
        ).first()
        if found is None:
            raise WorkItemError(UpsStatus.NO_SUCH_WORKITEM, f"no work item {uid}")
        pk, state, tuid, version, text = found
        return _Row(pk, uid, state, tuid, version, json.loads(text))

    # ----------------------------------------------------------- subscriptions
    def subscribe(
        self,
        aet: str,
        uid: str,
        deletion_lock: bool = False,
        filter: Mapping[str, str] | None = None,
    ) -> list[UpsStatus]:
        """Subscribe `aet` to one work item, globally (GLOBAL_SUBSCRIPTION) or with a
        filter (FILTERED_SUBSCRIPTION + `filter`, QIDO-style keys).  The subscriber gets
        an initial State Report of the item(s) it now follows (CC.2.3.2); a global
        subscription reports the items not yet in a final state, and covers again the
        items `aet` unsubscribed from (Table CC.2.3-2: all Not Subscribed go to
        Subscribed)."""
        aet = _aet(aet)
        filter_json = None
        if uid == FILTERED_SUBSCRIPTION:
            compile_keys(filter or {})  # QueryError if the filter is not a valid query
            filter_json = json.dumps(dict(filter or {}), sort_keys=True)
        with self.engine.begin() as conn:
            if uid not in (GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION):
                targets = [self._row(conn, uid)]
            else:  # every item the AE left ("Not Subscribed") is subscribed again
                conn.execute(_S.delete().where(_S.c.aet == aet, _S.c.active.is_(False)))
                targets = self._open_rows(conn)
            self._put_subscription(conn, aet, uid, deletion_lock, filter_json)
            logged = []
            for row in targets:
                if filter_json and not matches(row.dataset, compile_keys(filter or {})):
                    continue
                logged += self._log_to(conn, [aet], row.uid, [_state(row.dataset)])
        self._publish(logged)
        return []

    def _put_subscription(
        self, conn: Connection, aet: str, uid: str, lock: bool, filter_json: str | None
    ) -> None:
        where = (_S.c.aet == aet, _S.c.workitem_uid == uid)
        values = {
            "active": True,
            "deletion_lock": lock,
            "filter": filter_json,
            "suspended_after": None,
        }
        if conn.execute(_S.update().where(*where).values(**values)).rowcount == 0:
            idx.insert_ignore(conn, _S, {"aet": aet, "workitem_uid": uid, **values})
            conn.execute(_S.update().where(*where).values(**values))

    def unsubscribe(self, aet: str, uid: str) -> None:
        """From one work item (a global subscription no longer covers it), or, for the
        global UIDs, from everything: every subscription of `aet` goes (CC.2.3.2)."""
        aet = _aet(aet)
        with self.engine.begin() as conn:
            if uid in (GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION):
                conn.execute(_S.delete().where(_S.c.aet == aet))
                return
            self._row(conn, uid)
            values = {
                "active": False,
                "deletion_lock": False,
                "filter": None,
                "suspended_after": None,
            }
            where = (_S.c.aet == aet, _S.c.workitem_uid == uid)
            if conn.execute(_S.update().where(*where).values(**values)).rowcount == 0:
                idx.insert_ignore(conn, _S, {"aet": aet, "workitem_uid": uid, **values})

    def suspend(self, aet: str) -> None:
        """Suspend the global subscriptions of `aet`: the work items that exist now stay
        subscribed, future ones are not (CC.2.3.2, Suspend Global Subscription)."""
        aet = _aet(aet)
        with self.engine.begin() as conn:
            last = conn.execute(sa.select(sa.func.max(_W.c.pk))).scalar() or 0
            conn.execute(
                _S.update()
                .where(
                    _S.c.aet == aet,
                    _S.c.workitem_uid.in_([GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION]),
                    _S.c.suspended_after.is_(None),
                )
                .values(suspended_after=last)
            )

    def subscriptions(self, aet: str | None = None) -> list[Subscription]:
        with self.engine.connect() as conn:
            return self._subscriptions(conn, aet)

    def subscribers(self, uid: str) -> list[str]:
        with self.engine.connect() as conn:
            row = self._row(conn, uid)
            return recipients(self._subscriptions(conn), row.pk, uid, row.dataset)

    def _subscriptions(self, conn: Connection, aet: str | None = None) -> list[Subscription]:
        stmt = sa.select(
            _S.c.aet,
            _S.c.workitem_uid,
            _S.c.active,
            _S.c.deletion_lock,
            _S.c.filter,
            _S.c.suspended_after,
        ).order_by(_S.c.pk)
        if aet is not None:
            stmt = stmt.where(_S.c.aet == aet)
        return [Subscription(*row) for row in conn.execute(stmt)]

    def _open_rows(self, conn: Connection) -> list[_Row]:
        rows = conn.execute(
            sa.select(
                _W.c.pk,
                _W.c.sop_instance_uid,
                _W.c.state,
                _W.c.transaction_uid,
                _W.c.version,
                _W.c.metadata,
            )
            .where(_W.c.state.in_([r.SCHEDULED, r.IN_PROGRESS]))
            .order_by(_W.c.pk)
        )
        return [_Row(pk, uid, st, tuid, v, json.loads(t)) for pk, uid, st, tuid, v, t in rows]

    # ------------------------------------------------------------------ events
    def _log(
        self, conn: Connection, pk: int, uid: str, ds: Mapping[str, Any], events: Events
    ) -> list[WorkItemEvent]:
        if not events:
            return []
        aets = recipients(self._subscriptions(conn), pk, uid, ds)
        return self._log_to(conn, aets, uid, events)

    def _log_to(
        self, conn: Connection, aets: Sequence[str], uid: str, events: Events
    ) -> list[WorkItemEvent]:
        now = _now()
        conn.execute(
            _E.delete().where(_E.c.created_at < now - timedelta(seconds=self.event_retention))
        )
        out = []
        for event_type, info in events:
            for aet in aets:
                pk = conn.execute(
                    _E.insert().values(
                        aet=aet,
                        workitem_uid=uid,
                        event_type=int(event_type),
                        info=json.dumps(info),
                        delivered=False,
                        created_at=now,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                out.append(WorkItemEvent(pk, aet, uid, event_type, info))
        return out

    def _publish(self, logged: Iterable[WorkItemEvent]) -> None:
        for event in logged:
            self.events.publish(f"ups.{event.workitem_uid}", event.payload())

    def report_scp_status(self, status: str) -> None:
        """`scp_status`, for start-up and shutdown: a failure is logged, not raised."""
        try:
            self.scp_status(status)
        except Exception:
            log.exception("cannot report SCP status %s to UPS subscribers", status)

    def scp_status(self, status: str) -> list[WorkItemEvent]:
        """SCP Status Change (PS3.4 CC.2.4.2, event type 4) to every subscribed AE:
        ``RESTARTED`` when the node starts, ``GOING DOWN`` when it stops.  Subscriptions
        and work items live in the index, so both lists come back warm (WARM START)."""
        info = {
            "00741242": r.element("CS", status),
            "00741244": r.element("CS", "WARM START"),
            "00741246": r.element("CS", "WARM START"),
        }
        with self.engine.begin() as conn:
            aets = sorted({s.aet for s in self._subscriptions(conn) if s.active})
            logged = self._log_to(conn, aets, SCP_STATUS_UID, [(EventType.SCP_STATUS_CHANGE, info)])
        self._publish(logged)
        return logged

    def pending_events(self, aet: str, after: int = 0) -> list[WorkItemEvent]:
        """Events for `aet` not yet delivered, younger than the retention window, in
        the order they happened."""
        since = _now() - timedelta(seconds=self.event_retention)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_E.c.pk, _E.c.aet, _E.c.workitem_uid, _E.c.event_type, _E.c.info)
                .where(
                    _E.c.aet == aet,
                    _E.c.delivered.is_(False),
                    _E.c.pk > after,
                    _E.c.created_at >= since,
                )
                .order_by(_E.c.pk)
            )
            return [
                WorkItemEvent(pk, a, u, EventType(t), json.loads(info))
                for pk, a, u, t, info in rows
            ]

    def mark_delivered(self, aet: str, ids: Iterable[int]) -> list[int]:
        """Mark events delivered; returns those that were not yet (a door sends only
        these, so two channels of one AE never send an event twice)."""
        claimed = []
        with self.engine.begin() as conn:
            for pk in ids:
                done = conn.execute(
                    _E.update()
                    .where(_E.c.aet == aet, _E.c.pk == pk, _E.c.delivered.is_(False))
                    .values(delivered=True)
                )
                if done.rowcount == 1:
                    claimed.append(pk)
        return claimed

    def mark_undelivered(self, aet: str, ids: Iterable[int]) -> None:
        """Give events back to the log (a door could not send them after all)."""
        wanted = list(ids)
        if wanted:
            with self.engine.begin() as conn:
                conn.execute(
                    _E.update().where(_E.c.aet == aet, _E.c.pk.in_(wanted)).values(delivered=False)
                )


# ----------------------------------------------------------------------- helpers
def _now() -> datetime:
    return datetime.now(UTC)


def _dt(moment: datetime) -> str:
    """A DT value with its offset from UTC (PS3.5 6.2)."""
    return moment.strftime("%Y%m%d%H%M%S.%f") + "+0000"


def _state(ds: Mapping[str, Any]) -> tuple[EventType, dict[str, Any]]:
    return EventType.STATE_REPORT, state_report(ds)


def _columns(ds: Mapping[str, Any]) -> dict[str, Any]:
    stored = {k: v for k, v in ds.items() if k != r.TRANSACTION_UID}
    start = r.value(ds, r.SCHEDULED_START)
    patient = r.value(ds, r.PATIENT_ID)
    return {
        "metadata": json.dumps(dict(sorted(stored.items()))),
        "scheduled_start": str(start)[:32] if start else None,
        "patient_id": str(patient)[:64] if patient else None,
    }


def _plain(params: Mapping[str, str], keyword: str, tag: str) -> str | None:
    """A key given as one plain value (no wildcard, list or range), for SQL narrowing."""
    for name in (keyword, tag):
        v = params.get(name)
        if v and not any(c in v for c in "*?\\"):
            return v
    return None


def _start_window(compiled: Compiled) -> list[Any]:
    """SQL bounds on the stored Scheduled Procedure Step Start DateTime that hold every
    match of a DT key on it (a superset: the matcher decides).  Stored values start with
    YYYYMMDD, so string order is date order; a day of margin covers UTC offsets."""
    for tag, matcher in compiled:
        if tag != int(r.SCHEDULED_START, 16) or not isinstance(matcher, DateTimeRange):
            continue
        out = []
        if matcher.start is not None:
            out.append(
                _W.c.scheduled_start >= (matcher.start - timedelta(days=1)).strftime("%Y%m%d")
            )
        if matcher.end is not None:  # the last date with margin, and all of that day
            after = (matcher.end + timedelta(days=2)).strftime("%Y%m%d")
            out.append(_W.c.scheduled_start < after)
        return out
    return []


def _aet(aet: str) -> str:
    """An AE title (PS3.5 6.2: 1-16 characters, no backslash or control characters)."""
    aet = aet.strip()
    if not 0 < len(aet) <= 16 or any(c == "\\" or ord(c) < 32 for c in aet):
        raise WorkItemError(UpsStatus.RECEIVING_AE_UNKNOWN, f"{aet[:20]!r} is not an AE title")
    return aet
