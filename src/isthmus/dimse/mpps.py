"""Modality Performed Procedure Step SOP Class, SCP (PS3.4 Annex F): N-CREATE, N-SET.

A modality reports a step it began (N-CREATE, IN PROGRESS) and how it ended (N-SET,
COMPLETED or DISCONTINUED).  The rules of F.7.2 and the link to the work item the
step performs are the archive's (`Archive.performed_steps`, archive/performed.py);
this module decodes the data sets to DICOM JSON, and maps refusals to statuses.  Each
N-CREATE and N-SET, accepted or refused, is told to the audit trail as a Procedure
Record (PS3.15 A.5.3.15; `_record`).
"""

from __future__ import annotations

import logging
from typing import Any

from pydicom.uid import generate_uid

from isthmus.archive import MPPS_SOP_CLASS, Archive, PerformedStepError
from isthmus.archive.activity import MINOR_FAILURE, SERIOUS_FAILURE
from isthmus.archive.activity import SUCCESS as AUDIT_SUCCESS
from isthmus.config import Settings
from isthmus.dicom.status import (
    INVALID_ARGUMENT_VALUE,
    NOT_AUTHORIZED,
    PROCESSING_FAILURE,
    SUCCESS,
)
from isthmus.dimse import messages as msg
from isthmus.dimse.nmodel import decode_json
from isthmus.dimse.service import Channel, Message
from isthmus.node.access import AccessControl

log = logging.getLogger(__name__)

Record = tuple[str, str, str]  # EventActionCode, operation, SOP Instance UID


class MppsSCP:
    """N-CREATE and N-SET handlers of the service table for the MPPS SOP Class."""

    def __init__(self, archive: Archive, settings: Settings, access: AccessControl) -> None:
        self.steps = archive.performed_steps
        self.settings = settings
        self.access = access

    def n_create(self, channel: Channel, message: Message) -> None:
        """N-CREATE (F.7.2.1): the SCU names the SOP instance; if not, we do (PS3.7 10.1.5)."""
        uid = msg.text(message.command, msg.AFFECTED_SOP_INSTANCE) or str(generate_uid())
        status, comment, extra = self._apply(
            channel,
            message,
            lambda ds: self.steps.create(uid, ds, source_aet=channel.calling_aet),
            ("C", "N-CREATE", uid),
        )
        extra[msg.AFFECTED_SOP_INSTANCE] = uid
        channel.respond(message, msg.N_CREATE_RSP, status, comment=comment, extra=extra)

    def n_set(self, channel: Channel, message: Message) -> None:
        """N-SET (F.7.2.2) on the Requested SOP Instance."""
        uid = msg.text(message.command, msg.REQUESTED_SOP_INSTANCE)
        status, comment, extra = self._apply(
            channel, message, lambda ds: self.steps.update(uid, ds), ("U", "N-SET", uid)
        )
        extra[msg.AFFECTED_SOP_INSTANCE] = uid
        channel.respond(message, msg.N_SET_RSP, status, comment=comment, extra=extra)

    def _apply(
        self, channel: Channel, message: Message, operation: Any, record: Record
    ) -> tuple[int, str | None, dict[int, Any]]:
        """Run `operation` on the decoded data set; tell the audit trail (`_record`)."""
        try:
            status, comment, extra, step = self._operate(channel, message, operation)
        except Exception:  # the archive failed (an index down): serious (8), and raised
            self._record(channel, record, None, "processing failure", SERIOUS_FAILURE)
            raise
        if status == SUCCESS:
            self._record(channel, record, step, None, AUDIT_SUCCESS)
        else:
            self._record(channel, record, step, comment or f"status 0x{status:04X}")
        return status, comment, extra

    def _operate(
        self, channel: Channel, message: Message, operation: Any
    ) -> tuple[int, str | None, dict[int, Any], dict[str, Any] | None]:
        """`_apply`'s work: status, comment, extra command fields, and the step's data
        set (as stored after the change; as asked when refused)."""
        if not self.access.allowed("mpps", channel.calling_aet, channel.address):
            return NOT_AUTHORIZED, "not authorized", {}, None
        if message.dataset is None:
            return INVALID_ARGUMENT_VALUE, "no attribute list", {}, None
        try:
            dataset = decode_json(message.dataset, channel.transfer_syntax(message))
        except ValueError as exc:
            return PROCESSING_FAILURE, str(exc), {}, None
        try:
            step = operation(dataset)
        except PerformedStepError as exc:
            log.warning("MPPS from %s refused: %s", channel.calling_aet, exc)
            extra = {} if exc.error_id is None else {msg.ERROR_ID: exc.error_id}
            return exc.status, exc.reason, extra, dataset
        log.info(
            "MPPS %s from %s: %s%s",
            step.uid,
            channel.calling_aet,
            step.status,
            f" (work item {step.workitem_uid})" if step.workitem_uid else "",
        )
        return SUCCESS, None, {}, step.dataset

    def _record(
        self,
        channel: Channel,
        record: Record,
        step: dict[str, Any] | None,
        description: str | None,
        outcome: int = MINOR_FAILURE,
    ) -> None:
        """A Procedure Record (PS3.15 A.5.3.15) of one N-CREATE or N-SET: the step as it
        is after an accepted one; for a refused N-SET the step as stored (its patient and
        studies; an N-SET may not change them, F.7.2.2), for a refused N-CREATE as asked."""
        action, operation, uid = record
        if outcome != AUDIT_SUCCESS and action == "U":
            step = self._stored(uid) or step
        channel.activity.procedure_record(
            action,
            MPPS_SOP_CLASS,
            uid,
            step,
            operation=operation,
            outcome=outcome,
            description=description,
            door="dimse",
            user=channel.calling_aet,
            address=channel.address,
            local=channel.called_aet,
        )

    def _stored(self, uid: str) -> dict[str, Any] | None:
        try:
            return self.steps.get(uid).dataset
        except Exception:  # noqa: BLE001 - an unknown step, an index down: no subject
            return None
