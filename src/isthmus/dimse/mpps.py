"""Modality Performed Procedure Step SOP Class, SCP (PS3.4 Annex F): N-CREATE, N-SET.

A modality reports a step it began (N-CREATE, IN PROGRESS) and how it ended (N-SET,
COMPLETED or DISCONTINUED).  The rules of F.7.2 and the link to the work item the
step performs are the archive's (`Archive.performed_steps`, archive/performed.py);
this module decodes the data sets to DICOM JSON, and maps refusals to statuses.
"""

from __future__ import annotations

import logging
from typing import Any

from pydicom.uid import generate_uid

from isthmus.archive import Archive, PerformedStepError
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
        )
        extra[msg.AFFECTED_SOP_INSTANCE] = uid
        channel.respond(message, msg.N_CREATE_RSP, status, comment=comment, extra=extra)

    def n_set(self, channel: Channel, message: Message) -> None:
        """N-SET (F.7.2.2) on the Requested SOP Instance."""
        uid = msg.text(message.command, msg.REQUESTED_SOP_INSTANCE)
        status, comment, extra = self._apply(
            channel, message, lambda ds: self.steps.update(uid, ds)
        )
        extra[msg.AFFECTED_SOP_INSTANCE] = uid
        channel.respond(message, msg.N_SET_RSP, status, comment=comment, extra=extra)

    def _apply(
        self, channel: Channel, message: Message, operation: Any
    ) -> tuple[int, str | None, dict[int, Any]]:
        if not self.access.allowed("mpps", channel.calling_aet, channel.address):
            return NOT_AUTHORIZED, "not authorized", {}
        if message.dataset is None:
            return INVALID_ARGUMENT_VALUE, "no attribute list", {}
        try:
            dataset = decode_json(message.dataset, channel.transfer_syntax(message))
        except ValueError as exc:
            return PROCESSING_FAILURE, str(exc), {}
        try:
            step = operation(dataset)
        except PerformedStepError as exc:
            log.warning("MPPS from %s refused: %s", channel.calling_aet, exc)
            extra = {} if exc.error_id is None else {msg.ERROR_ID: exc.error_id}
            return exc.status, exc.reason, extra
        log.info(
            "MPPS %s from %s: %s%s",
            step.uid,
            channel.calling_aet,
            step.status,
            f" (work item {step.workitem_uid})" if step.workitem_uid else "",
        )
        return SUCCESS, None, {}
