"""C-MOVE and C-GET: select instances by their unique keys, send them as C-STORE
sub-operations (PS3.4 C.4.2, C.4.3).

pynetdicom runs the sub-operations and sends the pending responses carrying the
Number of Remaining/Completed/Failed/Warning Sub-operations; the final response is
0xB000 with the Failed SOP Instance UID List when some failed.  Instances go out
in their stored transfer syntax when the peer accepted it, decompressed to
Explicit VR Little Endian otherwise.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from isthmus.archive import InstanceRow, Query, QueryError
from isthmus.dicom import uids
from isthmus.dimse.peers import STATUS_NOT_AUTHORIZED

if TYPE_CHECKING:
    from isthmus.dimse.scp import ArchiveSCP

log = logging.getLogger(__name__)

STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00
STATUS_IDENTIFIER_MISMATCH = 0xA900
MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are odd numbers 1-255


def select(scp: "ArchiveSCP", identifier: Dataset) -> list[InstanceRow]:
    """Instances named by a retrieve identifier (PS3.4 C.4.2.1.4: unique keys)."""
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    needed = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID",
              "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}.get(level)
    if needed is None:
        raise QueryError(f"QueryRetrieveLevel {level!r} is not valid")

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
        patient_id = str(identifier.PatientID)
        found = scp.archive.find(Query("STUDY", {0x00100020: patient_id, 0x0020000D: ""}))
        study = [m["0020000D"]["Value"][0] for m in found.matches]
        if not study:
            return []
    return scp.archive.instances(
        study, uids_of("SeriesInstanceUID") if level in ("SERIES", "IMAGE") else None,
        uids_of("SOPInstanceUID") if level == "IMAGE" else None)


def contexts_for(rows: list[InstanceRow]) -> list[Any]:
    """Presentation contexts to propose: each stored syntax, plus uncompressed fallbacks."""
    contexts: list[Any] = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (row.sop_class_uid, row.transfer_syntax_uid)
        if key not in seen and row.transfer_syntax_uid not in uids.PREFERRED_UNCOMPRESSED:
            seen.add(key)
            contexts.append(build_context(row.sop_class_uid, [row.transfer_syntax_uid]))
    for sop_class in dict.fromkeys(r.sop_class_uid for r in rows):
        contexts.append(build_context(sop_class, list(uids.PREFERRED_UNCOMPRESSED)))
    if len(contexts) > MAX_CONTEXTS:
        log.warning("retrieve needs %d presentation contexts; proposing the first %d",
                    len(contexts), MAX_CONTEXTS)
    return contexts[:MAX_CONTEXTS]


def load(scp: "ArchiveSCP", row: InstanceRow, accepted: set[tuple[str, str]]) -> Dataset:
    """The dataset to send, in a syntax the peer accepted.

    On failure returns a dataset without SOP Class UID, which pynetdicom counts as
    a failed sub-operation and lists in Failed SOP Instance UID List.
    """
    try:
        with scp.archive.open_instance(row) as fh:
            ds = dcmread(fh)
        if (row.sop_class_uid, row.transfer_syntax_uid) in accepted:
            return ds
        if row.transfer_syntax_uid in uids.UNCOMPRESSED:
            return ds  # pynetdicom converts between uncompressed syntaxes itself
        if any((row.sop_class_uid, ts) in accepted for ts in uids.PREFERRED_UNCOMPRESSED):
            ds.decompress(generate_instance_uid=False)  # same instance, other syntax
            return ds
        raise ValueError("no accepted presentation context")
    except Exception as exc:
        log.warning("retrieve: cannot send %s: %s", row.sop_instance_uid, exc)
        failed = Dataset()
        failed.SOPInstanceUID = row.sop_instance_uid
        return failed


def move(scp: "ArchiveSCP", event: Any) -> Iterator[Any]:
    """C-MOVE handler: destination, sub-operation count, then (status, dataset)."""
    requestor = event.assoc.requestor
    if not scp.access.allowed("move", requestor.ae_title, requestor.address):
        raise PermissionError(f"C-MOVE not authorized for {requestor.ae_title!r}")
    destination_aet = event.move_destination
    if isinstance(destination_aet, bytes):
        destination_aet = destination_aet.decode("ascii", "replace")
    peer = scp.access.destination(destination_aet)
    if peer is None:
        log.warning("C-MOVE from %r to unknown destination %r", requestor.ae_title, destination_aet)
        yield None, None  # pynetdicom answers 0xA801 (PS3.4 C.4.2.1.5)
        return
    try:
        rows = select(scp, event.identifier)
    except QueryError as exc:
        # pynetdicom associates with the destination before it takes a status.
        yield peer.host, peer.port, {"contexts": [build_context(Verification)],
                                     "ae_title": peer.aet}
        yield 1
        yield _failure(str(exc)), None
        return
    accepted: set[tuple[str, str]] = set()

    def on_accepted(accept_event: Any) -> None:
        for cx in accept_event.assoc.accepted_contexts:
            accepted.add((str(cx.abstract_syntax), str(cx.transfer_syntax[0])))

    yield peer.host, peer.port, {
        "contexts": contexts_for(rows) if rows else None,
        "ae_title": peer.aet,
        "evt_handlers": [(evt.EVT_ACCEPTED, on_accepted)],
    }
    yield len(rows)
    yield from _sub_operations(scp, event, rows, accepted)


def get(scp: "ArchiveSCP", event: Any) -> Iterator[Any]:
    """C-GET handler: count, then (status, dataset) sent on the same association."""
    requestor = event.assoc.requestor
    if not scp.access.allowed("get", requestor.ae_title, requestor.address):
        yield 1
        yield _failure("not authorized", STATUS_NOT_AUTHORIZED), None
        return
    try:
        rows = select(scp, event.identifier)
    except QueryError as exc:
        yield 1
        yield _failure(str(exc)), None
        return
    accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                for cx in event.assoc.accepted_contexts}
    yield len(rows)
    yield from _sub_operations(scp, event, rows, accepted)


def _sub_operations(scp: "ArchiveSCP", event: Any, rows: list[InstanceRow],
                    accepted: set[tuple[str, str]]) -> Iterator[tuple[int, Dataset | None]]:
    for row in rows:
        if event.is_cancelled:
            yield STATUS_CANCEL, None
            return
        yield STATUS_PENDING, load(scp, row, accepted)


def _failure(comment: str, code: int = STATUS_IDENTIFIER_MISMATCH) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status
