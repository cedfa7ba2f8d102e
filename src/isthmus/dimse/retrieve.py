"""C-MOVE and C-GET: select instances by their unique keys and send them as C-STORE
sub-operations (PS3.4 C.4.2, C.4.3).

Instances go out byte for byte as stored when the receiver accepted the stored
transfer syntax, and transcoded (isthmus.render) to one it accepted otherwise.
A pending response after each sub-operation carries the Number of Remaining,
Completed, Failed and Warning Sub-operations; the final response is 0xB000 with a
Failed SOP Instance UID List when some failed, 0xA702 when all did.  `RetrieveSCP`
holds the two handlers of the service table (service.py); presentation contexts and
encoding for the sub-operations are contexts.py's, shared with `isthmus send`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from isthmus.archive import LEVELS, Archive, InstanceRow, Query, QueryError, unique_key
from isthmus.config import ConfigError, Settings
from isthmus.dicom import status
from isthmus.dimse import messages as msg
from isthmus.dimse.contexts import accepted_syntaxes, contexts_for
from isthmus.dimse.forward import announce_outbound
from isthmus.dimse.requestor import AssociationFailed, Requestor
from isthmus.dimse.service import Channel, Message
from isthmus.node.access import AccessControl
from isthmus.node.tls import peer_context

log = logging.getLogger(__name__)


# Sends one dataset on a context; returns the C-STORE status.
Sender = Callable[[int, str, str, memoryview], int]

# The information model of each C-MOVE and C-GET SOP class (PS3.4 C.6.1.2, C.6.2.2).
RETRIEVE_ROOTS = {
    "1.2.840.10008.5.1.4.1.2.1.2": "PATIENT",
    "1.2.840.10008.5.1.4.1.2.1.3": "PATIENT",
    "1.2.840.10008.5.1.4.1.2.2.2": "STUDY",
    "1.2.840.10008.5.1.4.1.2.2.3": "STUDY",
}


def select(archive: Archive, identifier: Dataset, root: str = "PATIENT") -> list[InstanceRow]:
    """Instances named by a retrieve identifier (PS3.4 C.4.2.1.4: unique keys) of the
    information model `root`; the Study Root model has no PATIENT level (PS3.4 C.6.2).
    In the Patient Root model a Patient ID below the PATIENT level is the unique key of
    the level above: only that patient's instances are named (PS3.4 C.6.1.2)."""
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if level not in LEVELS:
        raise QueryError(f"QueryRetrieveLevel {level!r} is not valid")
    if root == "STUDY" and level == "PATIENT":
        raise QueryError("the Study Root model has no PATIENT level")
    needed = unique_key(level)

    def uids_of(keyword: str) -> list[str] | None:
        value = identifier.get(keyword)
        if value in (None, ""):
            return None
        values = list(value) if not isinstance(value, str) else value.split("\\")
        return [str(v).strip() for v in values if str(v).strip()] or None

    if uids_of(needed) is None:
        raise QueryError(f"a {level} level retrieve needs {needed}")
    study = uids_of("StudyInstanceUID")
    if level == "PATIENT" or (root == "PATIENT" and uids_of("PatientID") is not None):
        of_patient = _studies_of(archive, str(identifier.PatientID))
        if level != "PATIENT" and study is not None:
            study = [uid for uid in study if uid in of_patient]
        else:
            study = of_patient
        if not study:
            return []
    return archive.instances(
        study,
        uids_of("SeriesInstanceUID") if level in ("SERIES", "IMAGE") else None,
        uids_of("SOPInstanceUID") if level == "IMAGE" else None,
    )


def _studies_of(archive: Archive, patient_id: str) -> list[str]:
    """The Study Instance UIDs of the patient `patient_id`.  Single value matching only
    (PS3.4 C.4.2.1.4.1): "*" or "?" are no wildcards here, or PatientID "*" would
    retrieve the whole archive."""
    patient_id = patient_id.strip()  # LO: spaces are not significant
    found = archive.find(Query("STUDY", {0x00100020: patient_id, 0x0020000D: ""}))
    return [
        m["0020000D"]["Value"][0]
        for m in found.matches
        if str(m.get("00100020", {}).get("Value", [""])[0]).strip() == patient_id
    ]


@dataclass
class Progress:
    """Sub-operation counts (PS3.4 C.4.2.1.6) and the failed instances."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def record(self, uid: str, status_: int | None) -> None:
        self.remaining -= 1
        if status_ == status.SUCCESS:
            self.completed += 1
        elif status_ is not None and status.is_warning(status_):
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(uid)

    def fields(self, final: bool = False) -> dict[int, int]:
        out = {msg.COMPLETED: self.completed, msg.FAILED: self.failed, msg.WARNING: self.warning}
        if not final:
            out[msg.REMAINING] = self.remaining
        return out


def send_instance(
    archive: Archive, row: InstanceRow, syntaxes: dict[str, int], send: Sender
) -> int | None:
    """One C-STORE sub-operation; None when it could not even be attempted, or when the
    association to a C-MOVE destination failed.  Errors of the requestor's own association
    (C-GET on it) are not this sub-operation's: they propagate and end that association."""
    try:
        syntax, dataset = archive.dataset_for(row, syntaxes)
        context_id = syntaxes[syntax]
    except Exception as exc:  # unreadable blob, no codec, codec error: this one fails
        log.warning("retrieve: cannot send %s: %s", row.sop_instance_uid, exc)
        return None
    try:
        return send(context_id, row.sop_class_uid, row.sop_instance_uid, dataset)
    except AssociationFailed as exc:
        log.warning("retrieve: cannot send %s: %s", row.sop_instance_uid, exc)
        return None


class RetrieveSCP:
    """C-MOVE and C-GET of one Archive: the handlers of the service table."""

    def __init__(self, archive: Archive, settings: Settings, access: AccessControl) -> None:
        self.archive = archive
        self.settings = settings
        self.access = access

    def move(self, channel: Channel, message: Message) -> None:
        """C-MOVE SCP (PS3.4 C.4.2): sub-operations to a known destination only."""
        rows = _rows(self.archive, self.access, channel, message, msg.C_MOVE_RSP, "move")
        if rows is None:
            return
        destination = msg.text(message.command, msg.MOVE_DESTINATION)
        peer = self.access.destination(destination)
        if peer is None:
            log.warning(
                "C-MOVE from %r to unknown destination %r", channel.calling_aet, destination
            )
            channel.respond(
                message,
                msg.C_MOVE_RSP,
                status.MOVE_DESTINATION_UNKNOWN,
                comment=f"move destination {destination!r} unknown",
            )
            return
        progress = Progress(len(rows))
        if not rows:
            channel.respond(
                message, msg.C_MOVE_RSP, status.SUCCESS, extra=progress.fields(final=True)
            )
            return
        try:
            requestor = Requestor(
                peer,
                self.settings.aet,
                contexts_for(rows),
                timeout=self.settings.network_timeout,
                tls=peer_context(self.settings, peer),
            ).open()
        except (AssociationFailed, OSError, ConfigError) as exc:
            log.warning("C-MOVE to %s: %s", destination, exc)
            for row in rows:  # every sub-operation failed (PS3.4 C.4.2.1.6)
                progress.record(row.sop_instance_uid, None)
            _final(
                channel,
                message,
                msg.C_MOVE_RSP,
                progress,
                status.OUT_OF_RESOURCES_SUB_OPERATIONS,
                comment=f"cannot associate with {destination}",
            )
            return
        originator = (channel.calling_aet, message.message_id)
        ended = announce_outbound(
            self.archive, self.settings.aet, destination.strip(), f"{peer.host}:{peer.port}"
        )

        def send(context_id: int, sop_class: str, sop_instance: str, dataset: memoryview) -> int:
            return requestor.store(context_id, sop_class, sop_instance, dataset, originator)

        try:
            _sub_operations(
                self.archive,
                channel,
                message,
                msg.C_MOVE_RSP,
                rows,
                progress,
                lambda sop_class: accepted_syntaxes(requestor.accepted, sop_class),
                send,
            )
        except Exception:
            if self.settings.move_as_job:
                self._continue_as_job(rows, progress, destination, originator)
            raise
        finally:
            requestor.release()
            ended()

    def _continue_as_job(
        self,
        rows: list[InstanceRow],
        progress: Progress,
        destination: str,
        originator: tuple[str, int],
    ) -> None:
        """The C-MOVE association dropped: its remaining sub-operations go on as a
        persistent job of kind ``move`` (dimse/forward.py), so what was asked for still
        arrives, even across a restart (settings.move_as_job)."""
        remaining = rows[len(rows) - progress.remaining :]
        if not remaining:
            return
        pk = self.archive.jobs.enqueue(
            "move",
            [r.sop_instance_uid for r in remaining],
            label=originator[0].strip(),
            subject=remaining[0].study_instance_uid,
            params={"destination": destination.strip(), "originator": list(originator)},
        )
        log.warning(
            "C-MOVE from %s dropped; %d sub-operations continue as job %d",
            originator[0],
            len(remaining),
            pk,
        )

    def get(self, channel: Channel, message: Message) -> None:
        """C-GET SCP (PS3.4 C.4.3): sub-operations on the same association."""
        rows = _rows(self.archive, self.access, channel, message, msg.C_GET_RSP, "get")
        if rows is None:
            return
        _sub_operations(
            self.archive,
            channel,
            message,
            msg.C_GET_RSP,
            rows,
            Progress(len(rows)),
            channel.storage_syntaxes,
            channel.store_to_requestor,
        )


def _rows(
    archive: Archive,
    access: AccessControl,
    channel: Channel,
    message: Message,
    response: int,
    service: str,
) -> list[InstanceRow] | None:
    """The instances to send, or None after answering a refusal: 0xA900 when the
    identifier's keys do not name instances as the model wants, 0xC000 (unable to
    process, PS3.4 C.4.2.1.5, C.4.3.1.4) when it cannot be decoded or the archive
    cannot select from it, as C-FIND answers."""
    if not access.allowed(service, channel.calling_aet, channel.address):
        channel.respond(message, response, status.NOT_AUTHORIZED, comment="not authorized")
        channel.activity.audit(
            "transferred",
            outcome=4,
            description=f"C-{service.upper()} not authorized",
            door="dimse",
            user=channel.calling_aet,
            address=channel.address,
            local=channel.called_aet,
        )
        return None
    try:
        identifier = msg.decode_identifier(
            message.require_dataset(), channel.transfer_syntax(message)
        )
        rows = select(archive, identifier, RETRIEVE_ROOTS[channel.abstract_syntax(message)])
    except QueryError as exc:
        channel.respond(
            message, response, status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, comment=str(exc)
        )
        return None
    except Exception as exc:  # an identifier pydicom cannot read, an index error
        log.warning("C-%s from %s: %s", service.upper(), channel.calling_aet, exc)
        channel.respond(
            message, response, status.UNABLE_TO_PROCESS, comment="identifier cannot be processed"
        )
        return None
    if len(rows) > 65535:  # counts are US (PS3.7 E.1-1)
        channel.respond(
            message,
            response,
            status.OUT_OF_RESOURCES_SUB_OPERATIONS,
            comment="more than 65535 instances",
        )
        return None
    return rows


def _sub_operations(
    archive: Archive,
    channel: Channel,
    message: Message,
    response: int,
    rows: list[InstanceRow],
    progress: Progress,
    syntaxes_for: Callable[[str], dict[str, int]],
    send: Sender,
) -> None:
    peer = msg.text(message.command, msg.MOVE_DESTINATION) if response == msg.C_MOVE_RSP else ""
    tally = channel.transfer("transferred", peer)
    for index, row in enumerate(rows):
        if channel.cancelled(message):
            progress.failed_uids += [r.sop_instance_uid for r in rows[index:]]
            _final(channel, message, response, progress, status.CANCEL)
            return
        outcome = send_instance(archive, row, syntaxes_for(row.sop_class_uid), send)
        progress.record(row.sop_instance_uid, outcome)
        ok = outcome is not None and (outcome == status.SUCCESS or outcome & 0xF000 == 0xB000)
        tally.add(row.study_instance_uid, row.sop_class_uid, row.size, ok)
        channel.respond(message, response, status.PENDING, extra=progress.fields())
    if progress.failed and not (progress.completed or progress.warning):
        _final(channel, message, response, progress, status.OUT_OF_RESOURCES_SUB_OPERATIONS)
    elif progress.failed or progress.warning:
        _final(channel, message, response, progress, status.SUB_OPERATIONS_WITH_FAILURES)
    else:
        _final(channel, message, response, progress, status.SUCCESS)


def _final(
    channel: Channel,
    message: Message,
    response: int,
    progress: Progress,
    final: int,
    comment: str | None = None,
) -> None:
    dataset = None
    if progress.failed_uids:
        failed = Dataset()
        failed.FailedSOPInstanceUIDList = progress.failed_uids
        dataset = msg.encode_identifier(failed, channel.transfer_syntax(message))
    fields = progress.fields(final=final != status.CANCEL)
    channel.respond(message, response, final, dataset=dataset, comment=comment, extra=fields)
