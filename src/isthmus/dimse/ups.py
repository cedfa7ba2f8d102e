"""Unified Procedure Step over DIMSE, SCP (PS3.4 Annex CC): Push, Pull, Watch, Query.

The work items are the archive's one store (`Archive.workitems`, archive/workitems.py),
the same that UPS-RS changes: the state machine, the attribute rules, subscriptions
and the event log run there, and every refusal arrives as a `WorkItemError` whose
status is already the DIMSE status of PS3.4 CC.2 (0xC301 wrong Transaction UID, ...).
This module decodes DIMSE-N requests, calls the store and answers.  Which operation
each SOP class allows (PS3.4 Table CC.2-1 / CC.3.1-1):

=========  =================================================================
Push       N-CREATE, N-ACTION Request Cancel (2), N-GET
Pull       C-FIND, N-GET, N-SET, N-ACTION Change State (1)
Watch      C-FIND, N-GET, N-ACTION Request Cancel (2), Subscribe (3),
           Unsubscribe (4), Suspend Global Subscription (5)
Query      C-FIND
Event      N-EVENT-REPORT, sent by the archive (ups_events.py)
=========  =================================================================

An operation a SOP class does not allow is refused before it reaches here:
"unrecognized operation" (0x0211) for another command, "no such action" (0x0123)
for another Action Type.  A subscription's Receiving AE must be a known peer (the
events go there on a new association): 0xC308 otherwise (CC.2.3.2).

Each N-CREATE, N-SET and N-ACTION Change State or Request Cancel, accepted or refused,
is told to the audit trail as a Procedure Record (PS3.15 A.5.3.15; `_record`);
subscriptions change no procedure step and are not.
"""

from __future__ import annotations

import logging
from typing import Any

from pydicom.datadict import dictionary_VR

from isthmus.archive import (
    FILTERED_SUBSCRIPTION,
    GLOBAL_SUBSCRIPTION,
    Archive,
    QueryError,
    UpsStatus,
    WorkItemError,
)
from isthmus.archive import UPS_PUSH_SOP_CLASS as UPS_PUSH
from isthmus.archive.activity import MINOR_FAILURE, SERIOUS_FAILURE
from isthmus.config import Settings
from isthmus.dicom.status import (
    CANCEL,
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    INVALID_ARGUMENT_VALUE,
    NO_SUCH_ACTION,
    NOT_AUTHORIZED,
    PENDING,
    PROCESSING_FAILURE,
    SUCCESS,
    UNABLE_TO_PROCESS,
)
from isthmus.dimse import messages as msg
from isthmus.dimse.identifiers import identifier_params
from isthmus.dimse.nmodel import decode_json, encode_json, select, to_dataset
from isthmus.dimse.service import Channel, Message, audit_query
from isthmus.node.access import AccessControl

log = logging.getLogger(__name__)

Record = tuple[str, str, str | None]  # EventActionCode, operation, work item UID

UPS_WATCH = "1.2.840.10008.5.1.4.34.6.2"
UPS_PULL = "1.2.840.10008.5.1.4.34.6.3"
UPS_EVENT = "1.2.840.10008.5.1.4.34.6.4"
UPS_QUERY = "1.2.840.10008.5.1.4.34.6.5"

CHANGE_STATE, REQUEST_CANCEL, SUBSCRIBE, UNSUBSCRIBE, SUSPEND = 1, 2, 3, 4, 5
RECORDED_ACTIONS = {
    CHANGE_STATE: "N-ACTION Change State",
    REQUEST_CANCEL: "N-ACTION Request Cancel",
}
ACTIONS = {UPS_PUSH: {REQUEST_CANCEL}, UPS_PULL: {CHANGE_STATE}}
ACTIONS[UPS_WATCH] = {REQUEST_CANCEL, SUBSCRIBE, UNSUBSCRIBE, SUSPEND}

TRANSACTION_UID = "00081195"
PROCEDURE_STEP_STATE = "00741000"
RECEIVING_AE = "00741234"
DELETION_LOCK = "00741230"


class UpsSCP:
    """Service table handlers for the UPS SOP classes."""

    def __init__(self, archive: Archive, settings: Settings, access: AccessControl) -> None:
        self.workitems = archive.workitems
        self.settings = settings
        self.access = access

    # ---------------------------------------------------------------- N-CREATE
    def n_create(self, channel: Channel, message: Message) -> None:
        """N-CREATE (CC.2.5.1.1): a new SCHEDULED work item."""
        uid = msg.text(message.command, msg.AFFECTED_SOP_INSTANCE) or None
        created: list[str] = []

        def create(ds: dict[str, Any]) -> Any:
            result = self.workitems.create(ds, uid=uid)
            created.append(result.uid)
            return result

        status, comment = self._run(
            channel, message, create, needs_dataset=True, record=("C", "N-CREATE", uid)
        )
        named = created[0] if created else uid  # the SCP's UID when the SCU gave none
        extra = {msg.AFFECTED_SOP_INSTANCE: named} if named else {}
        channel.respond(message, msg.N_CREATE_RSP, status, comment=comment, extra=extra)

    # ------------------------------------------------------------------- N-SET
    def n_set(self, channel: Channel, message: Message) -> None:
        """N-SET (CC.2.5.1.2): the Transaction UID comes in the modification list."""
        uid = msg.sop_instance_of(message.command)
        status, comment = self._run(
            channel,
            message,
            lambda ds: self.workitems.update(uid, ds),
            needs_dataset=True,
            record=("U", "N-SET", uid),
        )
        channel.respond(
            message,
            msg.N_SET_RSP,
            status,
            comment=comment,
            extra={msg.AFFECTED_SOP_INSTANCE: uid},
        )

    # ------------------------------------------------------------------- N-GET
    def n_get(self, channel: Channel, message: Message) -> None:
        """N-GET (CC.2.7): the attributes the Attribute Identifier List names, all when it
        is empty (PS3.7 10.1.2.1.3); never the Transaction UID (CC.2.7.1)."""
        uid = msg.sop_instance_of(message.command)
        extra: dict[int, Any] = {msg.AFFECTED_SOP_INSTANCE: uid}
        if not self.access.allowed("ups", channel.calling_aet, channel.address):
            channel.respond(message, msg.N_GET_RSP, NOT_AUTHORIZED, extra=extra)
            return
        try:
            item = self.workitems.get(uid)
        except WorkItemError as exc:
            channel.respond(message, msg.N_GET_RSP, exc.status, comment=exc.reason, extra=extra)
            return
        wanted = msg.tags(message.command, msg.ATTRIBUTE_IDENTIFIER_LIST)
        if wanted:
            item = select(item, {f"{t:08X}": {"vr": _vr(t)} for t in wanted})
        item.pop(TRANSACTION_UID, None)
        data = encode_json(item, channel.transfer_syntax(message))
        channel.respond(message, msg.N_GET_RSP, SUCCESS, dataset=data, extra=extra)

    # ---------------------------------------------------------------- N-ACTION
    def n_action(self, channel: Channel, message: Message) -> None:
        """N-ACTION: Change State, Request Cancel, (Un)subscribe, Suspend (CC.2.1-CC.2.3)."""
        action = msg.us(message.command, msg.ACTION_TYPE_ID)
        uid = msg.sop_instance_of(message.command)
        extra: dict[int, Any] = {msg.AFFECTED_SOP_INSTANCE: uid, msg.ACTION_TYPE_ID: action}
        record = ("U", RECORDED_ACTIONS[action], uid) if action in RECORDED_ACTIONS else None
        if action not in ACTIONS.get(channel.abstract_syntax(message), set()):
            if record is not None:
                self._record(channel, record, None, NO_SUCH_ACTION, "no such action")
            channel.respond(message, msg.N_ACTION_RSP, NO_SUCH_ACTION, extra=extra)
            return
        operations = {
            CHANGE_STATE: lambda ds: self._change_state(uid, ds),
            REQUEST_CANCEL: lambda ds: self.workitems.request_cancel(
                uid, ds, aet=channel.calling_aet
            ),
            SUBSCRIBE: lambda ds: self._subscribe(uid, ds),
            UNSUBSCRIBE: lambda ds: self.workitems.unsubscribe(self._receiver(ds), uid),
            SUSPEND: lambda ds: self._suspend(uid, ds),
        }
        status, comment = self._run(channel, message, operations[action], record=record)
        channel.respond(message, msg.N_ACTION_RSP, status, comment=comment, extra=extra)

    def _change_state(self, uid: str, ds: dict[str, Any]) -> Any:
        state = _value(ds, PROCEDURE_STEP_STATE)
        if not state:
            raise WorkItemError(UpsStatus.MISSING_ATTRIBUTE, "Procedure Step State is missing")
        return self.workitems.change_state(uid, str(state), _value(ds, TRANSACTION_UID))

    def _subscribe(self, uid: str, ds: dict[str, Any]) -> list[UpsStatus]:
        receiver = self._receiver(ds)
        lock = str(_value(ds, DELETION_LOCK) or "FALSE").strip().upper() == "TRUE"
        filter_keys = None
        if uid == FILTERED_SUBSCRIPTION:  # the other attributes are the matching keys
            keys = {t: e for t, e in ds.items() if t not in (RECEIVING_AE, DELETION_LOCK)}
            filter_keys = {k: v for k, v in identifier_params(to_dataset(keys)).items() if v}
        return self.workitems.subscribe(receiver, uid, deletion_lock=lock, filter=filter_keys)

    def _suspend(self, uid: str, ds: dict[str, Any]) -> None:
        if uid not in (GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION):
            raise WorkItemError(
                UpsStatus.INVALID_ATTRIBUTE_VALUE, "only a global subscription is suspended"
            )
        self.workitems.suspend(self._receiver(ds))

    def _receiver(self, ds: dict[str, Any]) -> str:
        """The Receiving AE (0074,1234): a known peer, since events go to its address."""
        aet = str(_value(ds, RECEIVING_AE) or "").strip()
        if not aet:
            raise WorkItemError(UpsStatus.MISSING_ATTRIBUTE, "Receiving AE is missing")
        if self.access.destination(aet) is None:
            raise WorkItemError(UpsStatus.RECEIVING_AE_UNKNOWN, f"{aet!r} is not a known peer")
        return aet

    # ------------------------------------------------------------------ C-FIND
    def c_find(self, channel: Channel, message: Message) -> None:
        """C-FIND on work items (CC.2.8): the query engine's matching over the store."""
        if not self.access.allowed("ups", channel.calling_aet, channel.address):
            channel.respond(message, msg.C_FIND_RSP, NOT_AUTHORIZED, comment="not authorized")
            audit_query(channel, message, "", outcome=4, description="not authorized")
            return
        ts = channel.transfer_syntax(message)
        try:
            identifier = msg.decode_identifier(message.require_dataset(), ts)
            wanted = identifier.to_json_dict(bulk_data_threshold=1 << 30)
            matches = self.workitems.search(identifier_params(identifier))
            audit_query(channel, message, identifier.to_json())
        except QueryError as exc:
            channel.respond(
                message, msg.C_FIND_RSP, IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, comment=str(exc)
            )
            return
        except Exception as exc:  # noqa: BLE001 - an identifier pydicom cannot read
            log.warning("UPS C-FIND from %s: %s", channel.calling_aet, exc)
            channel.respond(message, msg.C_FIND_RSP, UNABLE_TO_PROCESS, comment="undecodable")
            return
        wanted.pop("00080005", None)
        for item in matches:
            if channel.cancelled(message):
                channel.respond(message, msg.C_FIND_RSP, CANCEL)
                return
            result = select(item, wanted)
            result.pop(TRANSACTION_UID, None)  # never disclosed (CC.2.8.3)
            data = encode_json(result, ts)  # declares ISO_IR 192 if need be
            channel.respond(message, msg.C_FIND_RSP, PENDING, dataset=data)
        channel.respond(message, msg.C_FIND_RSP, SUCCESS)

    # ----------------------------------------------------------------- helpers
    def _run(
        self,
        channel: Channel,
        message: Message,
        operation: Any,
        needs_dataset: bool = False,
        record: Record | None = None,
    ) -> tuple[int, str | None]:
        """Decode the data set, run the store operation; its status and error comment.
        A change of a work item (`record`: action, operation, UID) is told to the audit
        trail, accepted or refused (`_record`)."""
        try:
            status, comment, ds, result = self._operate(channel, message, operation, needs_dataset)
        except Exception:
            if record is not None:  # the archive failed (an index down): serious (8)
                self._record(
                    channel,
                    record,
                    None,
                    PROCESSING_FAILURE,
                    "processing failure",
                    None,
                    SERIOUS_FAILURE,
                )
            raise
        if record is not None:
            self._record(channel, record, ds, status, comment, result)
        return status, comment

    def _operate(
        self, channel: Channel, message: Message, operation: Any, needs_dataset: bool
    ) -> tuple[int, str | None, dict[str, Any] | None, Any]:
        """`_run`'s work: the status, comment, the data set decoded and the result."""
        if not self.access.allowed("ups", channel.calling_aet, channel.address):
            return NOT_AUTHORIZED, "not authorized", None, None
        if message.dataset is None:
            if needs_dataset:
                return INVALID_ARGUMENT_VALUE, "no data set", None, None
            ds: dict[str, Any] = {}
        else:
            try:
                ds = decode_json(message.dataset, channel.transfer_syntax(message))
            except ValueError as exc:
                return PROCESSING_FAILURE, str(exc), None, None
        try:
            result = operation(ds)
        except WorkItemError as exc:
            log.info("UPS %s from %s refused: %s", message.field, channel.calling_aet, exc)
            return int(exc.status), exc.reason, ds, None
        except QueryError as exc:
            return int(UpsStatus.INVALID_ATTRIBUTE_VALUE), str(exc), ds, None
        warnings = getattr(result, "warnings", result if isinstance(result, list) else [])
        return (int(warnings[0]) if warnings else SUCCESS), None, ds, result

    def _record(
        self,
        channel: Channel,
        record: Record,
        request: dict[str, Any] | None,
        status: int,
        comment: str | None,
        result: Any = None,
        outcome: int = MINOR_FAILURE,
    ) -> None:
        """A Procedure Record of one change (PS3.15 A.5.3.15): accepted (a success or
        warning status, PS3.7 C.1, C.3) with the item as it is now, or refused (`outcome`
        4; 8 when the archive itself failed) with the item as stored (a creation: as
        asked) and the status's reason."""
        action, operation, uid = record
        failed = status != SUCCESS and not 0xB000 <= status <= 0xBFFF
        step = getattr(result, "dataset", None)
        if step is None:
            step = request if action == "C" else self._stored(uid) or request
        channel.activity.procedure_record(
            action,
            UPS_PUSH,  # a work item's SOP Class, whichever of Push, Pull, Watch asked
            str(getattr(result, "uid", None) or uid or ""),
            step,
            operation=operation,
            outcome=outcome if failed else 0,
            description=(comment or f"status 0x{status:04X}") if failed else None,
            door="dimse",
            user=channel.calling_aet,
            address=channel.address,
            local=channel.called_aet,
        )

    def _stored(self, uid: str | None) -> dict[str, Any] | None:
        """The work item as stored, for the audit of a refused change: whom it is about."""
        if not uid:
            return None
        try:
            return self.workitems.get(uid)
        except Exception:  # noqa: BLE001 - an unknown item, an index down: no subject
            return None


def _value(ds: dict[str, Any], tag: str) -> Any:
    values = (ds.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"
