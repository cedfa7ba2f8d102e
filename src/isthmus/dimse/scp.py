"""The archive's SCP services: C-ECHO, C-STORE and C-FIND (PS3.4 A, B, C.4.1), and the
service table that binds them, with retrieve.py's C-MOVE and C-GET, to command fields.

The services translate DIMSE to Archive calls and back and own nothing else; the
association itself is acceptor.py's.  `start_scp` composes the DIMSE door: the
service table (service.py), the node's own AE (acceptor.LocalAE) and the DICOM
port (isthmus.node.router), which takes the AE as a handler and imports no service.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.presentation import AllStoragePresentationContexts

from isthmus.archive import MPPS_SOP_CLASS, Archive, Query, QueryError, Transfer
from isthmus.archive import UPS_PUSH_SOP_CLASS as UPS_PUSH
from isthmus.config import Settings
from isthmus.dicom import uids
from isthmus.dicom.status import (
    CANCEL,
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    NOT_AUTHORIZED,
    PENDING,
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
    UNABLE_TO_PROCESS,
)
from isthmus.dimse import messages as msg
from isthmus.dimse.acceptor import LocalAE
from isthmus.dimse.commitment import STORAGE_COMMITMENT, StorageCommitmentSCP
from isthmus.dimse.identifiers import identifier_keys, result_identifier
from isthmus.dimse.mpps import MppsSCP
from isthmus.dimse.retrieve import RetrieveSCP
from isthmus.dimse.service import (
    Channel,
    Message,
    Service,
    ServiceHandler,
    ServiceTable,
    audit_query,
    by_sop_class,
)
from isthmus.dimse.ups import UPS_PULL, UPS_QUERY, UPS_WATCH, UpsSCP
from isthmus.dimse.ups_events import UpsEventSender
from isthmus.dimse.worklist import MODALITY_WORKLIST_FIND, WorklistSCP
from isthmus.node.access import AccessControl
from isthmus.node.router import AssociationRouter

log = logging.getLogger(__name__)

# SOP classes of the services (PS3.4 A.4, B.5, C.6.1.1, C.6.2.1)
VERIFICATION = "1.2.840.10008.1.1"
STORAGE_CLASSES = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)
FIND_ROOTS = {
    "1.2.840.10008.5.1.4.1.2.1.1": "PATIENT",
    "1.2.840.10008.5.1.4.1.2.2.1": "STUDY",
}
MOVE_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.2.1.2", "1.2.840.10008.5.1.4.1.2.2.2"})
GET_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.2.1.3", "1.2.840.10008.5.1.4.1.2.2.3"})
# What we accept for commands and identifiers: any native syntax, deflate included.
COMMAND_SYNTAXES = (
    *uids.PREFERRED_UNCOMPRESSED,
    uids.EXPLICIT_VR_BIG_ENDIAN,
    uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
)


class ArchiveSCP:
    """The DIMSE services of one Archive, with access control by AE title."""

    def __init__(self, archive: Archive, settings: Settings, access: AccessControl) -> None:
        self.archive = archive
        self.settings = settings
        self.access = access

    def c_echo(self, channel: Channel, message: Message) -> None:
        """Service table handler: C-ECHO."""
        channel.respond(message, msg.C_ECHO_RSP, self.echo(channel.calling_aet, channel.address))

    def c_store(self, channel: Channel, message: Message) -> None:
        """Service table handler: C-STORE, answered with the instance's UID (PS3.7 9.3.1.2)."""
        command = message.command
        sop_class = msg.text(command, msg.AFFECTED_SOP_CLASS)
        sop_instance = msg.text(command, msg.AFFECTED_SOP_INSTANCE)
        status, comment, offending = self.store(
            channel.calling_aet,
            channel.address,
            message.dataset,
            channel.transfer_syntax(message),
            sop_class,
            sop_instance,
            channel.transfer("stored"),
            channel.abstract_syntax(message),
        )
        extra: dict[int, Any] = {msg.AFFECTED_SOP_INSTANCE: sop_instance}
        if offending:
            extra[msg.OFFENDING_ELEMENT] = msg.attribute_tags(offending)
        channel.respond(message, msg.C_STORE_RSP, status, comment=comment, extra=extra)

    def echo(self, calling_aet: str, address: str | None) -> int:
        """C-ECHO (PS3.4 A.4)."""
        return SUCCESS if self.access.allowed("echo", calling_aet, address) else NOT_AUTHORIZED

    def store(
        self,
        calling_aet: str,
        address: str | None,
        dataset: Any,
        transfer_syntax: str,
        sop_class: str,
        sop_instance: str,
        tally: Transfer | None = None,
        abstract_syntax: str | None = None,
    ) -> tuple[int, str | None, tuple[int, ...]]:
        """C-STORE (PS3.4 B.2): keep the received bytes as they are, plus file meta.

        Returns the status, on failure or warning an error comment, and the tags of the
        elements a warning is about (its Offending Element, PS3.4 B.2.3: 0xB006 names
        the File Meta Information elements discarded from the data set); `tally` counts the
        instance for the association's audit message and the metrics.  `abstract_syntax`
        is the SOP class of the presentation context the request came on: the SOP class
        of every message on it (PS3.7 9.1.1, PS3.8 7.1.1.13), so an Affected SOP Class
        UID other than it names a SOP class not negotiated there, refused with 0x0122
        (PS3.7 C.5), as pynetdicom's C-STORE SCP does; nothing is stored.
        """
        if not self.access.allowed("store", calling_aet, address):
            if tally is not None:  # a refusal is audited too (outcome 4)
                tally.add(None, sop_class, 0, ok=False)
            return NOT_AUTHORIZED, "not authorized", ()
        if abstract_syntax is not None and sop_class != abstract_syntax:
            if tally is not None:
                tally.add(None, sop_class, 0, ok=False)
            log.warning(
                "C-STORE from %s of %s refused: Affected SOP Class UID %s is not %s, "
                "the abstract syntax of its presentation context",
                calling_aet,
                sop_instance,
                sop_class,
                abstract_syntax,
            )
            return SOP_CLASS_NOT_SUPPORTED, "Affected SOP Class UID is not the context's", ()
        result = self.archive.store(
            dataset, transfer_syntax, source_aet=calling_aet, expected=(sop_class, sop_instance)
        )
        if tally is not None:
            size = len(dataset) if dataset is not None else 0
            tally.add(result.study_instance_uid, result.sop_class_uid, size, result.ok)
        if result.ok:
            if result.warning is None:
                return SUCCESS, None, ()
            return result.dimse_status, result.reason, result.discarded
        log.warning("C-STORE from %s of %s refused: %s", calling_aet, sop_instance, result.reason)
        return result.outcome.dimse_status, result.reason, ()

    def find(self, channel: Channel, message: Message) -> None:
        """C-FIND (PS3.4 C.4.1): a pending response per match, then the final one."""
        root = FIND_ROOTS[channel.abstract_syntax(message)]
        if not self.access.allowed("find", channel.calling_aet, channel.address):
            channel.respond(message, msg.C_FIND_RSP, NOT_AUTHORIZED, comment="not authorized")
            audit_query(channel, message, "", outcome=4, description="not authorized")
            return
        ts = channel.transfer_syntax(message)
        try:
            identifier = msg.decode_identifier(message.require_dataset(), ts)
            level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
            if level not in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
                raise QueryError(
                    f"QueryRetrieveLevel {level!r} is not PATIENT, STUDY, SERIES or IMAGE"
                )
            query = Query(
                level=level, keys=identifier_keys(identifier), root=root, hierarchical=True
            )
            matches = self.archive.find(query).matches
            audit_query(channel, message, identifier.to_json())
        except QueryError as exc:
            channel.respond(
                message, msg.C_FIND_RSP, IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, comment=str(exc)
            )
            return
        except Exception as exc:  # an identifier pydicom cannot read
            log.warning("C-FIND from %s: %s", channel.calling_aet, exc)
            channel.respond(
                message,
                msg.C_FIND_RSP,
                UNABLE_TO_PROCESS,
                comment="identifier cannot be decoded",
            )
            return
        online = _availability(identifier, level)
        for match in matches:
            if channel.cancelled(message):
                channel.respond(message, msg.C_FIND_RSP, CANCEL)
                return
            result = result_identifier({**match, **online}, level, self.settings.aet, ts)
            channel.respond(message, msg.C_FIND_RSP, PENDING, dataset=result)
        channel.respond(message, msg.C_FIND_RSP, SUCCESS)


def _availability(identifier: Dataset, level: str) -> dict[str, Any]:
    """Instance Availability (0008,0056) when the identifier asks for it, at the levels
    that have it (PS3.4 C.6.1.1.3-5, C.6.2.1.2-4): every instance Isthmus holds is ONLINE,
    retrievable at once."""
    if "InstanceAvailability" not in identifier or level == "PATIENT":
        return {}
    return {"00080056": {"vr": "CS", "Value": ["ONLINE"]}}


def service_table(archive: Archive, settings: Settings, access: AccessControl) -> ServiceTable:
    """The archive's DIMSE services by command field (PS3.7 9.3): what the acceptor serves.

    A new service is one more entry here; `workflow_services` adds the DIMSE-N commands
    and widens C-FIND to the worklist and UPS models.
    """
    scp = ArchiveSCP(archive, settings, access)
    retrieve = RetrieveSCP(archive, settings, access)
    services = {
        msg.C_ECHO_RQ: Service(
            "C-ECHO", frozenset({VERIFICATION}), COMMAND_SYNTAXES, scp.c_echo, needs_dataset=False
        ),
        msg.C_STORE_RQ: Service("C-STORE", STORAGE_CLASSES, uids.STORABLE, scp.c_store),
        msg.C_FIND_RQ: Service("C-FIND", frozenset(FIND_ROOTS), COMMAND_SYNTAXES, scp.find),
        msg.C_MOVE_RQ: Service("C-MOVE", MOVE_CLASSES, COMMAND_SYNTAXES, retrieve.move),
        msg.C_GET_RQ: Service("C-GET", GET_CLASSES, COMMAND_SYNTAXES, retrieve.get),
    }
    services.update(workflow_services(archive, settings, access, scp.find))
    return ServiceTable(services, scp_role_classes=STORAGE_CLASSES)


def workflow_services(
    archive: Archive, settings: Settings, access: AccessControl, find: ServiceHandler
) -> dict[int, Service]:
    """The workflow services by command field: Storage Commitment (PS3.4 J), MPPS (F),
    Modality Worklist (K) and UPS (CC); C-FIND also keeps `find` (the Q/R models)."""
    commitment = StorageCommitmentSCP(archive, settings, access)
    mpps = MppsSCP(archive, settings, access)
    ups = UpsSCP(archive, settings, access)
    worklist = WorklistSCP(archive, settings, access)
    syntaxes = COMMAND_SYNTAXES
    return {
        msg.C_FIND_RQ: by_sop_class(
            "C-FIND",
            {
                **dict.fromkeys(FIND_ROOTS, find),
                MODALITY_WORKLIST_FIND: worklist.find,
                **dict.fromkeys((UPS_PULL, UPS_WATCH, UPS_QUERY), ups.c_find),
            },
            syntaxes,
        ),
        msg.N_ACTION_RQ: by_sop_class(
            "N-ACTION",
            {
                STORAGE_COMMITMENT: commitment.n_action,
                **dict.fromkeys((UPS_PUSH, UPS_PULL, UPS_WATCH), ups.n_action),
            },
            syntaxes,
        ),
        msg.N_CREATE_RQ: by_sop_class(
            "N-CREATE", {MPPS_SOP_CLASS: mpps.n_create, UPS_PUSH: ups.n_create}, syntaxes
        ),
        msg.N_SET_RQ: by_sop_class(
            "N-SET", {MPPS_SOP_CLASS: mpps.n_set, UPS_PULL: ups.n_set}, syntaxes
        ),
        msg.N_GET_RQ: by_sop_class(
            "N-GET", dict.fromkeys((UPS_PUSH, UPS_PULL, UPS_WATCH), ups.n_get), syntaxes
        ),
    }


def start_scp(
    archive: Archive,
    settings: Settings,
    access: AccessControl,
    tls: ssl.SSLContext | None = None,
    beside: AssociationRouter | None = None,
    listening: socket.socket | None = None,
) -> AssociationRouter:
    """Bind the DICOM port and serve in a background thread; returns the router.

    With `tls` (node.tls.server_context) the TLS DICOM port, on `dicom_tls_port`; next to
    the plain router `beside`, it shares that one's AE (so the association limits count
    both ports) and routing table.  With `listening`, serve that socket, bound already
    (a port shared by several worker processes, or a worker's own, workers.py).
    """
    if beside is not None:
        own = beside.own
    else:
        own = LocalAE(settings, service_table(archive, settings, access), archive.activity)
        own.events = archive.events
    port = settings.dicom_tls_port if tls else settings.dicom_port
    server = AssociationRouter((settings.host, port), own, tls=tls, listening=listening)
    if beside is not None:
        server.share_routes(beside)
    server.activity = archive.activity
    server.admit = access.admit
    server.own_aets = {settings.aet}
    server.accept_any = settings.accept_any_called_aet
    server.peek_timeout = settings.pdu_timeout
    server.max_associate_rq = settings.max_associate_rq
    server.remote = _held_elsewhere(archive)
    server.forward_timeout = settings.network_timeout
    if beside is None:  # one sender of UPS event reports per node, not per port
        server.on_close.append(UpsEventSender(archive, settings, access).close)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.2},
        name="isthmus-dimse-tls" if tls else "isthmus-dimse",
        daemon=True,
    )
    thread.start()
    return server


def _held_elsewhere(archive: Archive) -> Callable[[str], tuple[str, int] | None]:
    """The router's `remote`: the DICOM port of another process of the archive that
    holds an AE title (a browser registered with its gateway, docs/scaling.md)."""

    def remote(aet: str) -> tuple[str, int] | None:
        found = archive.route(aet)
        if found is None or found[2]:  # unknown, or this process's own registration
            return None
        return found[0], found[1]

    return remote
