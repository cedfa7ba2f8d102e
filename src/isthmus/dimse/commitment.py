"""Storage Commitment Push Model, SCP (PS3.4 Annex J).

The SCU asks with N-ACTION (Action Type 1, "Request Storage Commitment", J.3.2) on
the well-known SOP instance, listing instances by class and UID under a Transaction
UID.  The answer comes as N-EVENT-REPORT (J.3.3): Event Type 1 when every instance
is committed, 2 when some failed, with the Referenced SOP Sequence of the committed
ones and the Failed SOP Sequence of the others, each with its Failure Reason.
Whether an instance is durably stored and intact is the archive's answer
(`Archive.verify`); this module only speaks DIMSE.

J.3.3 lets the SCP report on the association of the request while it is open, or on
a new one that the SCP requests (with SCP/SCU role selection).  We verify at once,
answer the N-ACTION, then send the report on the same association; if the requestor
has already asked for release (or the association cannot carry it), the report goes
on a new association to the requestor's AE title, which must be a known peer
(`AccessControl.destination`) - we never send to an address the request came from.
"""

from __future__ import annotations

import logging
import threading

from pydicom.dataset import Dataset

from isthmus.archive import Archive, Integrity
from isthmus.config import Settings
from isthmus.dicom.status import (
    INVALID_ARGUMENT_VALUE,
    INVALID_OBJECT_INSTANCE,
    NO_SUCH_ACTION,
    NOT_AUTHORIZED,
    PROCESSING_FAILURE,
    SUCCESS,
)
from isthmus.dimse import messages as msg
from isthmus.dimse.notify import ReportFailed, reporting_context, send_event_report
from isthmus.dimse.service import Channel, Message
from isthmus.node.access import AccessControl

log = logging.getLogger(__name__)

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"  # Storage Commitment Push Model SOP Class
WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"  # PS3.4 J.3.1
REQUEST_COMMITMENT = 1  # Action Type ID (PS3.4 J.3.2.1.1)
ALL_COMMITTED, SOME_FAILED = 1, 2  # Event Type IDs (PS3.4 J.3.3.1.1)


class Request:
    """A decoded Storage Commitment request: Transaction UID and (class, instance) pairs."""

    def __init__(self, information: Dataset) -> None:
        self.transaction_uid = str(information.get("TransactionUID", "")).strip()
        if not self.transaction_uid:
            raise ValueError("Transaction UID (0008,1195) is missing")
        references = information.get("ReferencedSOPSequence") or []
        self.references: list[tuple[str, str]] = []
        for item in references:
            sop_class = str(item.get("ReferencedSOPClassUID", "")).strip()
            sop_instance = str(item.get("ReferencedSOPInstanceUID", "")).strip()
            if not sop_class or not sop_instance:
                raise ValueError("a Referenced SOP Sequence item lacks a UID")
            self.references.append((sop_class, sop_instance))
        if not self.references:
            raise ValueError("Referenced SOP Sequence (0008,1199) is missing or empty")


def result_report(request: Request, integrity: dict[str, Integrity]) -> tuple[int, Dataset]:
    """The Event Type and Event Information of the result (PS3.4 J.3.3.1.1, Table J.3-2)."""
    report = Dataset()
    report.TransactionUID = request.transaction_uid
    committed, failed = [], []
    for sop_class, sop_instance in request.references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        reason = integrity[sop_instance].failure_reason
        if reason is None:
            committed.append(item)
        else:
            item.FailureReason = reason
            failed.append(item)
    if committed:
        report.ReferencedSOPSequence = committed
    if failed:
        report.FailedSOPSequence = failed
    return (SOME_FAILED if failed else ALL_COMMITTED), report


class StorageCommitmentSCP:
    """N-ACTION handler of the service table; reports results as J.3.3 says."""

    def __init__(self, archive: Archive, settings: Settings, access: AccessControl) -> None:
        self.archive = archive
        self.settings = settings
        self.access = access

    def n_action(self, channel: Channel, message: Message) -> None:
        command = message.command
        status, request = self._check(channel, message)
        channel.respond(
            message,
            msg.N_ACTION_RSP,
            status,
            extra={
                msg.AFFECTED_SOP_INSTANCE: msg.sop_instance_of(command),
                **({msg.ACTION_TYPE_ID: REQUEST_COMMITMENT} if status == SUCCESS else {}),
            },
        )
        if request is None:
            return
        event_type, report = result_report(request, self.archive.verify(request.references))
        log.info(
            "storage commitment %s from %s: %d instance(s), event type %d",
            request.transaction_uid,
            channel.calling_aet,
            len(request.references),
            event_type,
        )
        ts = channel.transfer_syntax(message)
        delivered = channel.event_report(
            message.context_id,
            STORAGE_COMMITMENT,
            WELL_KNOWN_INSTANCE,
            event_type,
            msg.encode_identifier(report, ts),
        )
        if delivered is None:
            self.report_later(channel.calling_aet, event_type, report)

    def _check(self, channel: Channel, message: Message) -> tuple[int, Request | None]:
        """The N-ACTION status (PS3.4 J.3.2.1.2) and the decoded request when it succeeds."""
        command = message.command
        if not self.access.allowed("commit", channel.calling_aet, channel.address):
            return NOT_AUTHORIZED, None
        if msg.sop_instance_of(command) != WELL_KNOWN_INSTANCE:
            return INVALID_OBJECT_INSTANCE, None
        if msg.us(command, msg.ACTION_TYPE_ID) != REQUEST_COMMITMENT:
            return NO_SUCH_ACTION, None
        if message.dataset is None:
            return INVALID_ARGUMENT_VALUE, None
        try:
            information = msg.decode_identifier(message.dataset, channel.transfer_syntax(message))
            return SUCCESS, Request(information)
        except ValueError as exc:
            log.warning("storage commitment from %s refused: %s", channel.calling_aet, exc)
            return INVALID_ARGUMENT_VALUE, None
        except Exception as exc:  # noqa: BLE001 - data set pydicom cannot read
            log.warning("storage commitment from %s: cannot decode: %s", channel.calling_aet, exc)
            return PROCESSING_FAILURE, None

    def report_later(self, aet: str, event_type: int, report: Dataset) -> threading.Thread:
        """Send the result on a new association to `aet` (PS3.4 J.3.3), in a thread so the
        release of the request's association is answered meanwhile."""
        thread = threading.Thread(
            target=self._report, args=(aet, event_type, report), name="isthmus-stgcmt"
        )
        thread.daemon = True
        thread.start()
        return thread

    def _report(self, aet: str, event_type: int, report: Dataset) -> None:
        peer = self.access.destination(aet)
        if peer is None:
            log.warning(
                "storage commitment %s: %r is not a known peer, result not delivered",
                report.TransactionUID,
                aet,
            )
            return
        try:
            status = send_event_report(
                peer,
                self.settings.aet,
                STORAGE_COMMITMENT,
                WELL_KNOWN_INSTANCE,
                event_type,
                report,
                self.settings.network_timeout,
                reporting_context(self.settings, peer),
            )
            log.info(
                "storage commitment %s reported to %s: 0x%04X", report.TransactionUID, peer, status
            )
        except ReportFailed as exc:
            log.warning("storage commitment %s not delivered: %s", report.TransactionUID, exc)
