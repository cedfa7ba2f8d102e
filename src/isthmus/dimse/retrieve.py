"""C-MOVE and C-GET: select instances by their unique keys and send them as C-STORE
sub-operations (PS3.4 C.4.2, C.4.3).

Instances go out byte for byte as stored when the receiver accepted the stored
transfer syntax, and transcoded (isthmus.render) to one it accepted otherwise.
A pending response after each sub-operation carries the Number of Remaining,
Completed, Failed and Warning Sub-operations; the final response is 0xB000 with a
Failed SOP Instance UID List when some failed, 0xA702 when all did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from isthmus.archive import LEVELS, InstanceRow, Query, QueryError, unique_key
from isthmus.dicom import part10, uids
from isthmus.dimse import messages as msg
from isthmus.dimse.peers import STATUS_NOT_AUTHORIZED
from isthmus.dimse.requestor import AssociationFailed, Requestor

if TYPE_CHECKING:
    from isthmus.dimse.acceptor import Acceptor, Message
    from isthmus.dimse.scp import ArchiveSCP

log = logging.getLogger(__name__)

STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00
STATUS_WARNING = 0xB000
STATUS_SUB_OPERATIONS_FAILED = 0xA702
STATUS_DESTINATION_UNKNOWN = 0xA801
STATUS_IDENTIFIER_MISMATCH = 0xA900
MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are odd numbers 1-255


def is_warning(status: int) -> bool:
    """A status of the Warning class (PS3.7 C.1): 0001, Bxxx, 0107 or 0116."""
    return status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF


# Sends one dataset on a context; returns the C-STORE status.
Sender = Callable[[int, str, str, memoryview], int]


def select(scp: ArchiveSCP, identifier: Dataset) -> list[InstanceRow]:
    """Instances named by a retrieve identifier (PS3.4 C.4.2.1.4: unique keys)."""
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if level not in LEVELS:
        raise QueryError(f"QueryRetrieveLevel {level!r} is not valid")
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
    if level == "PATIENT":
        # Single value matching only (PS3.4 C.4.2.1.4.1): "*" or "?" are no wildcards here,
        # or PatientID "*" would retrieve the whole archive.
        patient_id = str(identifier.PatientID).strip()  # LO: spaces are not significant
        found = scp.archive.find(Query("STUDY", {0x00100020: patient_id, 0x0020000D: ""}))
        study = [
            m["0020000D"]["Value"][0]
            for m in found.matches
            if str(m.get("00100020", {}).get("Value", [""])[0]).strip() == patient_id
        ]
        if not study:
            return []
    return scp.archive.instances(
        study,
        uids_of("SeriesInstanceUID") if level in ("SERIES", "IMAGE") else None,
        uids_of("SOPInstanceUID") if level == "IMAGE" else None,
    )


def contexts_for(rows: list[InstanceRow]) -> list[tuple[str, list[str]]]:
    """Presentation contexts to propose for stored instances."""
    return contexts_for_syntaxes([(r.sop_class_uid, r.transfer_syntax_uid) for r in rows])


def contexts_for_syntaxes(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """For (SOP class, transfer syntax) pairs: each syntax in a context of its own, so
    that instances go as they are, plus one uncompressed context per class, the fallback
    we can always transcode to (PS3.5 10)."""
    contexts: list[tuple[str, list[str]]] = []
    for sop_class, ts in dict.fromkeys(pairs):
        contexts.append((sop_class, [ts]))
    for sop_class in dict.fromkeys(c for c, _t in pairs):
        contexts.append((sop_class, list(uids.PREFERRED_UNCOMPRESSED)))
    if len(contexts) > MAX_CONTEXTS:
        log.warning(
            "sending needs %d presentation contexts; proposing the first %d",
            len(contexts),
            MAX_CONTEXTS,
        )
    return contexts[:MAX_CONTEXTS]


def encode_for(
    data: bytes, transfer_syntax: str, syntaxes: dict[str, int]
) -> tuple[int, memoryview]:
    """The context and dataset bytes to send a Part 10 file on: as stored when its syntax
    was accepted, otherwise transcoded to an accepted one (uncompressed first)."""
    if transfer_syntax in syntaxes:
        context_id = syntaxes[transfer_syntax]
    else:
        target = next(
            (ts for ts in (*uids.PREFERRED_UNCOMPRESSED, *syntaxes) if ts in syntaxes), None
        )
        if target is None:
            raise ValueError("the receiver accepted no transfer syntax for this SOP class")
        from isthmus.render.transcode import transcode

        data = transcode(data, target)
        context_id = syntaxes[target]
    return context_id, memoryview(data)[part10.dataset_offset(data) :]


@dataclass
class Progress:
    """Sub-operation counts (PS3.4 C.4.2.1.6) and the failed instances."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def record(self, uid: str, status: int | None) -> None:
        self.remaining -= 1
        if status == 0x0000:
            self.completed += 1
        elif status is not None and is_warning(status):
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
    scp: ArchiveSCP, row: InstanceRow, syntaxes: dict[str, int], send: Sender
) -> int | None:
    """One C-STORE sub-operation; None when it could not even be attempted, or when the
    association to a C-MOVE destination failed.  Errors of the requestor's own association
    (C-GET on it) are not this sub-operation's: they propagate and end that association."""
    try:
        syntax, dataset = scp.archive.dataset_for(row, syntaxes)
        context_id = syntaxes[syntax]
    except Exception as exc:  # unreadable blob, no codec, codec error: this one fails
        log.warning("retrieve: cannot send %s: %s", row.sop_instance_uid, exc)
        return None
    try:
        return send(context_id, row.sop_class_uid, row.sop_instance_uid, dataset)
    except AssociationFailed as exc:
        log.warning("retrieve: cannot send %s: %s", row.sop_instance_uid, exc)
        return None


def move(scp: ArchiveSCP, channel: Acceptor, message: Message, root: str) -> None:
    """C-MOVE SCP (PS3.4 C.4.2): sub-operations to a known destination only."""
    rows = _rows(scp, channel, message, msg.C_MOVE_RSP, "move")
    if rows is None:
        return
    destination = msg.text(message.command, msg.MOVE_DESTINATION)
    peer = scp.access.destination(destination)
    if peer is None:
        log.warning("C-MOVE from %r to unknown destination %r", channel.calling_aet, destination)
        channel.respond(
            message,
            msg.C_MOVE_RSP,
            STATUS_DESTINATION_UNKNOWN,
            comment=f"move destination {destination!r} unknown",
        )
        return
    progress = Progress(len(rows))
    if not rows:
        channel.respond(message, msg.C_MOVE_RSP, 0x0000, extra=progress.fields(final=True))
        return
    try:
        requestor = Requestor(
            peer, scp.settings.aet, contexts_for(rows), timeout=scp.settings.network_timeout
        ).open()
    except (AssociationFailed, OSError) as exc:
        log.warning("C-MOVE to %s: %s", destination, exc)
        for row in rows:  # every sub-operation failed (PS3.4 C.4.2.1.6)
            progress.record(row.sop_instance_uid, None)
        _final(
            channel,
            message,
            msg.C_MOVE_RSP,
            progress,
            STATUS_SUB_OPERATIONS_FAILED,
            comment=f"cannot associate with {destination}",
        )
        return
    originator = (channel.calling_aet, message.message_id)

    def send(context_id: int, sop_class: str, sop_instance: str, dataset: memoryview) -> int:
        return requestor.store(context_id, sop_class, sop_instance, dataset, originator)

    try:
        _sub_operations(
            scp,
            channel,
            message,
            msg.C_MOVE_RSP,
            rows,
            progress,
            lambda sop_class: {
                ts: requestor.context_for(sop_class, ts)
                for ts in requestor.accepted_syntaxes(sop_class)
            },
            send,
        )
    finally:
        requestor.release()


def get(scp: ArchiveSCP, channel: Acceptor, message: Message, root: str) -> None:
    """C-GET SCP (PS3.4 C.4.3): sub-operations on the same association."""
    rows = _rows(scp, channel, message, msg.C_GET_RSP, "get")
    if rows is None:
        return
    _sub_operations(
        scp,
        channel,
        message,
        msg.C_GET_RSP,
        rows,
        Progress(len(rows)),
        channel.storage_syntaxes,
        channel.store_to_requestor,
    )


def _rows(
    scp: ArchiveSCP, channel: Acceptor, message: Message, response: int, service: str
) -> list[InstanceRow] | None:
    """The instances to send, or None after answering a refusal."""
    if not scp.access.allowed(service, channel.calling_aet, channel.address):
        channel.respond(message, response, STATUS_NOT_AUTHORIZED, comment="not authorized")
        return None
    try:
        identifier = msg.decode_identifier(message.dataset, channel.transfer_syntax(message))
        rows = select(scp, identifier)
    except QueryError as exc:
        channel.respond(message, response, STATUS_IDENTIFIER_MISMATCH, comment=str(exc))
        return None
    except Exception as exc:
        log.warning("C-%s from %s: %s", service.upper(), channel.calling_aet, exc)
        channel.respond(
            message, response, STATUS_IDENTIFIER_MISMATCH, comment="identifier cannot be decoded"
        )
        return None
    if len(rows) > 65535:  # counts are US (PS3.7 E.1-1)
        channel.respond(
            message, response, STATUS_SUB_OPERATIONS_FAILED, comment="more than 65535 instances"
        )
        return None
    return rows


def _sub_operations(
    scp: ArchiveSCP,
    channel: Acceptor,
    message: Message,
    response: int,
    rows: list[InstanceRow],
    progress: Progress,
    syntaxes_for: Callable[[str], dict[str, int]],
    send: Sender,
) -> None:
    for index, row in enumerate(rows):
        if channel.cancelled(message):
            progress.failed_uids += [r.sop_instance_uid for r in rows[index:]]
            _final(channel, message, response, progress, STATUS_CANCEL)
            return
        status = send_instance(scp, row, syntaxes_for(row.sop_class_uid), send)
        progress.record(row.sop_instance_uid, status)
        channel.respond(message, response, STATUS_PENDING, extra=progress.fields())
    if progress.failed and not (progress.completed or progress.warning):
        _final(channel, message, response, progress, STATUS_SUB_OPERATIONS_FAILED)
    elif progress.failed or progress.warning:
        _final(channel, message, response, progress, STATUS_WARNING)
    else:
        _final(channel, message, response, progress, 0x0000)


def _final(
    channel: Acceptor,
    message: Message,
    response: int,
    progress: Progress,
    status: int,
    comment: str | None = None,
) -> None:
    dataset = None
    if progress.failed_uids:
        failed = Dataset()
        failed.FailedSOPInstanceUIDList = progress.failed_uids
        dataset = msg.encode_identifier(failed, channel.transfer_syntax(message))
    fields = progress.fields(final=status != STATUS_CANCEL)
    channel.respond(message, response, status, dataset=dataset, comment=comment, extra=fields)
