"""SCU helpers: C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET towards a peer (PS3.4).

Used by the command line and by tests.  C-ECHO, C-FIND, C-MOVE and C-GET go through
pynetdicom; C-STORE (`send`) goes through the lean requestor (requestor.py), which
sends each file's dataset bytes as they are, transcoded only when the peer accepted
none of its syntaxes (contexts.py, shared with the SCP's C-MOVE and C-GET).  A peer
with `tls` is called over TLS with the SSL context the caller passes
(node.tls.client_context, PS3.15 Annex B).
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.presentation import build_role
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # made at run time
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from isthmus import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from isthmus.config import Peer
from isthmus.dicom import part10, uids
from isthmus.dicom.status import PENDING, PENDING_WARNING, SUCCESS, is_warning
from isthmus.dimse import messages as msg
from isthmus.dimse.contexts import accepted_syntaxes, contexts_for_syntaxes, encode_for
from isthmus.dimse.requestor import AssociationFailed, Requestor
from isthmus.node.sockets import nodelay_handler

log = logging.getLogger(__name__)

FIND_MODELS = {
    "PATIENT": PatientRootQueryRetrieveInformationModelFind,
    "STUDY": StudyRootQueryRetrieveInformationModelFind,
}
MOVE_MODELS = {
    "PATIENT": PatientRootQueryRetrieveInformationModelMove,
    "STUDY": StudyRootQueryRetrieveInformationModelMove,
}
GET_MODELS = {
    "PATIENT": PatientRootQueryRetrieveInformationModelGet,
    "STUDY": StudyRootQueryRetrieveInformationModelGet,
}


class SCUError(RuntimeError):
    """A peer that refused or could not be reached; the message says which."""


def _ae(calling_aet: str) -> AE:
    ae = AE(ae_title=calling_aet)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.acse_timeout = 30
    ae.dimse_timeout = 120
    ae.network_timeout = 60
    return ae


def associate(ae: AE, peer: Peer, tls: ssl.SSLContext | None = None, **kwargs: Any) -> Association:
    """Open an association with TCP_NODELAY set, over TLS for a peer with `tls`; raise
    SCUError when refused."""
    if peer.tls:
        if tls is None:
            raise SCUError(f"{peer} is called over TLS: no TLS context given")
        kwargs["tls_args"] = (tls, peer.host)
    handlers = list(kwargs.pop("evt_handlers", []))
    connected: list[bool] = []
    rejected: list[bool] = []
    handlers.append((evt.EVT_CONN_OPEN, nodelay_handler))
    handlers.append((evt.EVT_CONN_OPEN, lambda event: connected.append(True)))
    # pynetdicom 3.0 may report an A-ASSOCIATE-RJ as an abort when the peer closes the
    # connection right after it (a race in its requestor): the PDU itself decides.
    handlers.append(
        (evt.EVT_PDU_RECV, lambda event: rejected.append(isinstance(event.pdu, A_ASSOCIATE_RJ)))
    )
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.aet, evt_handlers=handlers, **kwargs)
    if assoc.is_established:
        return assoc
    if not connected:  # pynetdicom reports a refused connection as an abort
        raise SCUError(f"cannot reach {peer}")
    if assoc.is_rejected or any(rejected):
        raise SCUError(f"{peer} rejected the association")
    if assoc.is_aborted:
        raise SCUError(f"{peer} aborted the association")
    raise SCUError(f"cannot reach {peer}")


def echo(peer: Peer, calling_aet: str = "ISTHMUS", tls: ssl.SSLContext | None = None) -> int:
    """C-ECHO; returns the status (0x0000 success)."""
    ae = _ae(calling_aet)
    ae.add_requested_context(Verification)
    assoc = associate(ae, peer, tls)
    try:
        status = assoc.send_c_echo()
        if not status:
            raise SCUError(f"{peer} did not answer the C-ECHO")
        return int(status.Status)
    finally:
        assoc.release()


@dataclass
class SendReport:
    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def send(
    peer: Peer,
    files: Iterable[Path],
    calling_aet: str = "ISTHMUS",
    progress: Callable[[int], None] | None = None,
    tls: ssl.SSLContext | None = None,
) -> SendReport:
    """C-STORE each file in its own transfer syntax, its dataset bytes as they are.

    Uses the lean requestor (requestor.py): the files are not decoded.
    """
    report = SendReport()
    items: list[tuple[Path, str, str]] = []
    for path in files:
        try:
            items.append((path, *_sop_class_and_syntax(path)))
        except (OSError, part10.InvalidDicom) as exc:
            report.failed.append((str(path), str(exc)))
            if progress:
                progress(1)
    for batch in _context_batches(items):
        contexts = contexts_for_syntaxes([(c, t) for _p, c, t in batch])
        try:
            requestor = Requestor(peer, calling_aet, contexts, tls=tls if peer.tls else None).open()
        except AssociationFailed as exc:
            raise SCUError(str(exc)) from exc
        try:
            for path, sop_class, ts in batch:
                _send_one(requestor, path, sop_class, ts, report)
                if progress:
                    progress(1)
        finally:
            requestor.release()
    return report


def _send_one(
    requestor: Requestor, path: Path, sop_class: str, ts: str, report: SendReport
) -> None:
    """Send one file as it is, or transcoded when the peer did not accept its syntax."""
    syntaxes = accepted_syntaxes(requestor.accepted, sop_class)
    try:
        data = path.read_bytes()
        meta, _ = part10.split_part10(data)
        sop_instance = str(meta.MediaStorageSOPInstanceUID) if meta is not None else ""
        context_id, dataset = encode_for(data, ts, syntaxes)
        status = requestor.store(context_id, sop_class, sop_instance, dataset)
    except ValueError as exc:  # no accepted syntax, or no codec for the conversion
        report.failed.append((str(path), f"{requestor.peer}: {exc}"))
        return
    except (OSError, AssociationFailed) as exc:
        report.failed.append((str(path), str(exc)))
        return
    if status == SUCCESS or is_warning(status):
        report.sent += 1
    else:
        report.failed.append((str(path), f"status 0x{status:04X}"))


def _sop_class_and_syntax(path: Path) -> tuple[str, str]:
    with open(path, "rb") as fh:
        head = fh.read(64 * 1024)
    meta, _rest = part10.split_part10(head)
    if meta is None or "TransferSyntaxUID" not in meta or "MediaStorageSOPClassUID" not in meta:
        raise part10.InvalidDicom(f"{path}: not a DICOM Part 10 file with file meta")
    return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)


def _context_batches(items: list[tuple[Path, str, str]]) -> Iterator[list[tuple[Path, str, str]]]:
    """Split files so that no association needs more than 128 presentation contexts."""
    batch: list[tuple[Path, str, str]] = []
    contexts: set[tuple[str, str]] = set()
    for item in items:
        key = (item[1], item[2])
        if key not in contexts and len(contexts) >= 64:  # + one fallback per class ≤ 128
            yield batch
            batch, contexts = [], set()
        contexts.add(key)
        batch.append(item)
    if batch:
        yield batch


def find(
    peer: Peer,
    identifier: Dataset,
    model: str = "STUDY",
    calling_aet: str = "ISTHMUS",
    tls: ssl.SSLContext | None = None,
) -> list[Dataset]:
    """C-FIND; returns the matches (raises SCUError on a failure status)."""
    ae = _ae(calling_aet)
    ae.add_requested_context(FIND_MODELS[model])
    assoc = associate(ae, peer, tls)
    results: list[Dataset] = []
    try:
        for status, match in assoc.send_c_find(identifier, FIND_MODELS[model]):
            if not status:
                raise SCUError(f"{peer} stopped answering the C-FIND")
            code = int(status.Status)
            if code in (PENDING, PENDING_WARNING):
                if match is not None:
                    results.append(match)
            elif code != SUCCESS:
                comment = status.get("ErrorComment", "")
                raise SCUError(f"C-FIND failed with status 0x{code:04X} {comment}".strip())
    finally:
        assoc.release()
    return results


@dataclass
class RetrieveReport:
    completed: int = 0
    failed: int = 0
    warning: int = 0
    status: int = 0
    failed_uids: list[str] = field(default_factory=list)


def move(
    peer: Peer,
    identifier: Dataset,
    destination: str,
    model: str = "STUDY",
    calling_aet: str = "ISTHMUS",
    progress: Callable[[Dataset], None] | None = None,
    tls: ssl.SSLContext | None = None,
) -> RetrieveReport:
    """C-MOVE to `destination`; returns the final counts."""
    ae = _ae(calling_aet)
    ae.add_requested_context(MOVE_MODELS[model])
    assoc = associate(ae, peer, tls)
    try:
        return _collect(assoc.send_c_move(identifier, destination, MOVE_MODELS[model]), progress)
    finally:
        assoc.release()


def get(
    peer: Peer,
    identifier: Dataset,
    on_store: Callable[[Any], int],
    sop_classes: Iterable[str],
    model: str = "STUDY",
    calling_aet: str = "ISTHMUS",
    progress: Callable[[Dataset], None] | None = None,
    tls: ssl.SSLContext | None = None,
    *,
    max_pdu: int = 16382,
    cancel: threading.Event | None = None,
) -> RetrieveReport:
    """C-GET; each received instance goes to `on_store(event)` (returns a C-STORE status).

    `max_pdu`: the Maximum Length we receive (PS3.8 D.1: larger P-DATA-TF PDUs from the
    peer, fewer reads per instance; 0 is unlimited).  When `cancel` is set meanwhile the
    association is aborted (A-ABORT, PS3.8 7.3) and SCUError raised: the instances
    `on_store` accepted before stay accepted."""
    assoc = open_get(peer, on_store, sop_classes, model, calling_aet, tls, max_pdu=max_pdu)
    done = threading.Event()
    if cancel is not None:
        threading.Thread(
            target=_abort_on, args=(cancel, done, assoc), name="scu-get-cancel", daemon=True
        ).start()
    try:
        return _collect(assoc.send_c_get(identifier, GET_MODELS[model]), progress)
    finally:
        done.set()
        if assoc.is_established:
            assoc.release()


def open_get(
    peer: Peer,
    on_store: Callable[[Any], int],
    sop_classes: Iterable[str],
    model: str = "STUDY",
    calling_aet: str = "ISTHMUS",
    tls: ssl.SSLContext | None = None,
    *,
    max_pdu: int = 16382,
) -> Association:
    """An association for C-GETs of `model` (`release` it at the end);
    the instances go to `on_store(event)`."""
    ae = _ae(calling_aet)
    ae.add_requested_context(GET_MODELS[model])
    # Two contexts per class (PS3.7 D.3.3.4 role selection: we are the storage SCP):
    # one accepting any compressed syntax as sent, one uncompressed.
    classes = list(dict.fromkeys(sop_classes))[:63]
    compressed = [ts for ts in uids.STORABLE if ts not in uids.UNCOMPRESSED]
    roles = []
    for sop_class in classes:
        ae.add_requested_context(sop_class, list(uids.PREFERRED_UNCOMPRESSED))
        ae.add_requested_context(sop_class, compressed)
        roles.append(build_role(sop_class, scp_role=True))
    return associate(
        ae,
        peer,
        tls,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
        max_pdu=max_pdu,
    )


def _abort_on(cancel: threading.Event, done: threading.Event, assoc: Association) -> None:
    """Abort `assoc` as soon as `cancel` is set, unless `done` comes first."""
    while not done.is_set():
        if cancel.wait(0.05):
            if not done.is_set():
                assoc.abort()
            return


def _collect(
    responses: Iterable[tuple[Dataset, Dataset | None]], progress: Callable[[Dataset], None] | None
) -> RetrieveReport:
    report = RetrieveReport()
    for status, identifier in responses:
        if not status:
            raise SCUError("the peer stopped answering")
        code = int(status.Status)
        report.completed = int(status.get("NumberOfCompletedSuboperations", report.completed) or 0)
        report.failed = int(status.get("NumberOfFailedSuboperations", report.failed) or 0)
        report.warning = int(status.get("NumberOfWarningSuboperations", report.warning) or 0)
        if code in (PENDING, PENDING_WARNING):
            if progress:
                progress(status)
            continue
        report.status = code
        report.failed_uids = msg.failed_sop_instance_uids(identifier)
    return report


# The storage SOP classes studies most often hold (PS3.4 B.5), offered first: a C-GET
# requestor names the classes it takes, at most about 60 of them in one association's
# 128 presentation contexts (PS3.8 9.3.2.2), and a sub-operation of any other class
# fails (PS3.4 C.4.3.3).  Images, then what a study holds beside them.
FREQUENT_STORAGE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis Image
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume
    "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.128",  # Positron Emission Tomography Image
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic Image
    "1.2.840.10008.5.1.4.1.1.12.2",  # X-Ray Radiofluoroscopic Image
    "1.2.840.10008.5.1.4.1.1.13.1.1",  # X-Ray 3D Angiographic Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.2",  # VL Microscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # Video Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.1",  # Ophthalmic Photography 8 Bit Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.4",  # Ophthalmic Tomography Image
    "1.2.840.10008.5.1.4.1.1.77.1.6",  # VL Whole Slide Microscopy Image
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT Image
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT Plan
    "1.2.840.10008.5.1.4.1.1.481.8",  # RT Ion Plan
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.50",  # Mammography CAD SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.11.2",  # Color Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.66",  # Raw Data
    "1.2.840.10008.5.1.4.1.1.66.1",  # Spatial Registration
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG Waveform
    "1.2.840.10008.5.1.4.1.1.9.1.2",  # General ECG Waveform
)


def common_storage_classes(limit: int = 60) -> list[str]:
    """The storage SOP classes to offer in a C-GET when the study's classes are unknown:
    the frequent ones first, then the others pynetdicom knows, `limit` in all."""
    known = [str(cx.abstract_syntax) for cx in StoragePresentationContexts]
    frequent = [uid for uid in FREQUENT_STORAGE_CLASSES if uid in known]
    return list(dict.fromkeys([*frequent, *known]))[:limit]
