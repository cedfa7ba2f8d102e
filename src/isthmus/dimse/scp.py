"""The archive's SCP: C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET handlers (PS3.4 B, C).

Handlers translate DIMSE to Archive calls and back; they own nothing else.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.presentation import (AllStoragePresentationContexts, PresentationContext,
                                     build_context)
from pynetdicom.sop_class import (PatientRootQueryRetrieveInformationModelFind,
                                  PatientRootQueryRetrieveInformationModelGet,
                                  PatientRootQueryRetrieveInformationModelMove,
                                  StudyRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelGet,
                                  StudyRootQueryRetrieveInformationModelMove, Verification)

from isthmus import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from isthmus.archive import Archive, Query, QueryError
from isthmus.config import Settings
from isthmus.dicom import uids
from isthmus.dimse import retrieve
from isthmus.dimse.identifiers import identifier_keys, result_dataset
from isthmus.dimse.peers import STATUS_NOT_AUTHORIZED, AccessControl
from isthmus.dimse.router import AssociationRouter

log = logging.getLogger(__name__)

# C-STORE statuses (PS3.4 B.2.3)
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_PROCESSING_FAILURE = 0x0110
# C-FIND (PS3.4 C.4.1.1.4)
STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00
STATUS_IDENTIFIER_MISMATCH = 0xA900

QR_ROOTS = {
    str(PatientRootQueryRetrieveInformationModelFind): "PATIENT",
    str(StudyRootQueryRetrieveInformationModelFind): "STUDY",
    str(PatientRootQueryRetrieveInformationModelMove): "PATIENT",
    str(StudyRootQueryRetrieveInformationModelMove): "STUDY",
    str(PatientRootQueryRetrieveInformationModelGet): "PATIENT",
    str(StudyRootQueryRetrieveInformationModelGet): "STUDY",
}


def storage_contexts() -> list[PresentationContext]:
    """Every storage SOP class pynetdicom knows, with every syntax kept as sent."""
    return [build_context(cx.abstract_syntax, list(uids.STORABLE))
            for cx in AllStoragePresentationContexts]


def make_ae(settings: Settings) -> AE:
    """The application entity with the archive's supported presentation contexts."""
    ae = AE(ae_title=settings.aet)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.maximum_pdu_size = settings.max_pdu
    ae.maximum_associations = settings.max_associations
    ae.network_timeout = settings.network_timeout
    ae.acse_timeout = 30
    ae.dimse_timeout = max(30.0, settings.network_timeout)
    ae.require_called_aet = False  # the router decides on called AE titles
    ae.add_supported_context(Verification)
    for uid in QR_ROOTS:
        ae.add_supported_context(uid, list(uids.PREFERRED_UNCOMPRESSED) + [uids.EXPLICIT_VR_BIG_ENDIAN])
    for cx in storage_contexts():
        ae.add_supported_context(cx.abstract_syntax, cx.transfer_syntax,
                                 scu_role=True, scp_role=True)
    return ae


class ArchiveSCP:
    """Binds the DIMSE services to one Archive."""

    def __init__(self, archive: Archive, settings: Settings, access: AccessControl) -> None:
        self.archive = archive
        self.settings = settings
        self.access = access

    def handlers(self) -> list[tuple[Any, Any]]:
        return [(evt.EVT_C_ECHO, self.on_echo), (evt.EVT_C_STORE, self.on_store),
                (evt.EVT_C_FIND, self.on_find), (evt.EVT_C_MOVE, self.on_move),
                (evt.EVT_C_GET, self.on_get)]

    def _allowed(self, service: str, event: Any) -> bool:
        requestor = event.assoc.requestor
        return self.access.allowed(service, requestor.ae_title, requestor.address)

    def echo(self, calling_aet: str, address: str | None) -> int:
        """C-ECHO (PS3.4 A.4)."""
        return STATUS_SUCCESS if self.access.allowed("echo", calling_aet, address) \
            else STATUS_NOT_AUTHORIZED

    def store(self, calling_aet: str, address: str | None, dataset: Any, transfer_syntax: str,
              sop_class: str, sop_instance: str) -> tuple[int, str | None]:
        """C-STORE (PS3.4 B.2): keep the received bytes as they are, plus file meta.

        Returns the status and, on failure, an error comment.
        """
        if not self.access.allowed("store", calling_aet, address):
            return STATUS_NOT_AUTHORIZED, "not authorized"
        result = self.archive.store(dataset, transfer_syntax, source_aet=calling_aet,
                                    expected=(sop_class, sop_instance))
        if result.ok:
            return STATUS_SUCCESS, None
        log.warning("C-STORE from %s refused: %s", calling_aet, result.reason)
        return _store_failure_status(result.failure, result.reason), result.reason

    def on_echo(self, event: Any) -> int:
        requestor = event.assoc.requestor
        return self.echo(requestor.ae_title, requestor.address)

    def on_store(self, event: Any) -> int:
        requestor, request = event.assoc.requestor, event.request
        status, _comment = self.store(
            requestor.ae_title, requestor.address, request.DataSet.getbuffer(),
            event.context.transfer_syntax, str(request.AffectedSOPClassUID),
            str(request.AffectedSOPInstanceUID))
        return status

    def on_find(self, event: Any) -> Iterator[tuple[Any, Dataset | None]]:
        """C-FIND (PS3.4 C.4.1): one pending response per match."""
        if not self._allowed("find", event):
            yield _status(STATUS_NOT_AUTHORIZED, "not authorized"), None
            return
        try:
            query = self._query(event)
            matches = self.archive.find(query).matches
        except QueryError as exc:
            yield _status(STATUS_IDENTIFIER_MISMATCH, str(exc)), None
            return
        for match in matches:
            if event.is_cancelled:
                yield STATUS_CANCEL, None
                return
            yield STATUS_PENDING, result_dataset(match, query.level, self.settings.aet)

    def _query(self, event: Any) -> Query:
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
            raise QueryError(f"QueryRetrieveLevel {level!r} is not PATIENT, STUDY, SERIES or IMAGE")
        root = QR_ROOTS.get(str(event.request.AffectedSOPClassUID), "STUDY")
        return Query(level=level, keys=identifier_keys(identifier), root=root, hierarchical=True)

    def on_move(self, event: Any) -> Iterator[Any]:
        """C-MOVE (PS3.4 C.4.2): sub-operations to a known destination only."""
        return retrieve.move(self, event)

    def on_get(self, event: Any) -> Iterator[Any]:
        """C-GET (PS3.4 C.4.3): sub-operations on the same association."""
        return retrieve.get(self, event)


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status


def _store_failure_status(failure: str | None, reason: str | None) -> int:
    if failure == "resources":
        return STATUS_OUT_OF_RESOURCES
    if failure == "invalid":
        return STATUS_CANNOT_UNDERSTAND
    if failure == "mismatch":
        return STATUS_DATASET_MISMATCH
    return STATUS_PROCESSING_FAILURE


def start_scp(archive: Archive, settings: Settings, access: AccessControl) -> AssociationRouter:
    """Bind the DICOM port and serve in a background thread; returns the router."""
    import threading

    ae = make_ae(settings)
    scp = ArchiveSCP(archive, settings, access)
    server = ae.make_server((settings.host, settings.dicom_port), ae_title=settings.aet,
                            evt_handlers=scp.handlers(), server_class=AssociationRouter)
    assert isinstance(server, AssociationRouter)
    server.own_aets = {settings.aet}
    server.accept_any = settings.accept_any_called_aet
    server.scp = scp  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="isthmus-dimse", daemon=True)
    thread.start()
    ae._servers.append(server)
    return server
