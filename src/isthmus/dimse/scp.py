"""The archive's SCP services: C-ECHO, C-STORE and C-FIND (PS3.4 A, B, C.4.1).

They translate DIMSE to Archive calls and back and own nothing else; the
association itself is acceptor.py's, C-MOVE and C-GET are retrieve.py's.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from isthmus.archive import Archive, Query, QueryError
from isthmus.config import Settings
from isthmus.dimse import messages as msg
from isthmus.dimse.identifiers import identifier_keys, result_dataset
from isthmus.dimse.peers import STATUS_NOT_AUTHORIZED, AccessControl
from isthmus.dimse.router import AssociationRouter

if TYPE_CHECKING:
    from isthmus.dimse.acceptor import Acceptor, Message

log = logging.getLogger(__name__)

# C-STORE failure statuses (PS3.4 B.2.3) come from the store's outcome
# (isthmus.archive.outcome), the one table every door shares.
STATUS_SUCCESS = 0x0000
# C-FIND (PS3.4 C.4.1.1.4)
STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00
STATUS_IDENTIFIER_MISMATCH = 0xA900
STATUS_UNABLE_TO_PROCESS = 0xC000


class ArchiveSCP:
    """The DIMSE services of one Archive, with access control by AE title."""

    def __init__(self, archive: Archive, settings: Settings, access: AccessControl) -> None:
        self.archive = archive
        self.settings = settings
        self.access = access
        # Associations being served now, for settings.max_associations (acceptor.py).
        self.associations = 0
        self.associations_lock = threading.Lock()

    def echo(self, calling_aet: str, address: str | None) -> int:
        """C-ECHO (PS3.4 A.4)."""
        return (
            STATUS_SUCCESS
            if self.access.allowed("echo", calling_aet, address)
            else STATUS_NOT_AUTHORIZED
        )

    def store(
        self,
        calling_aet: str,
        address: str | None,
        dataset: Any,
        transfer_syntax: str,
        sop_class: str,
        sop_instance: str,
    ) -> tuple[int, str | None]:
        """C-STORE (PS3.4 B.2): keep the received bytes as they are, plus file meta.

        Returns the status and, on failure, an error comment.
        """
        if not self.access.allowed("store", calling_aet, address):
            return STATUS_NOT_AUTHORIZED, "not authorized"
        result = self.archive.store(
            dataset, transfer_syntax, source_aet=calling_aet, expected=(sop_class, sop_instance)
        )
        if result.ok:
            return STATUS_SUCCESS, None
        log.warning("C-STORE from %s refused: %s", calling_aet, result.reason)
        return result.outcome.dimse_status, result.reason

    def find(self, channel: Acceptor, message: Message, root: str) -> None:
        """C-FIND (PS3.4 C.4.1): a pending response per match, then the final one."""
        if not self.access.allowed("find", channel.calling_aet, channel.address):
            channel.respond(
                message, msg.C_FIND_RSP, STATUS_NOT_AUTHORIZED, comment="not authorized"
            )
            return
        ts = channel.transfer_syntax(message)
        try:
            identifier = msg.decode_identifier(message.dataset, ts)
            level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
            if level not in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
                raise QueryError(
                    f"QueryRetrieveLevel {level!r} is not PATIENT, STUDY, SERIES or IMAGE"
                )
            query = Query(
                level=level, keys=identifier_keys(identifier), root=root, hierarchical=True
            )
            matches = self.archive.find(query).matches
        except QueryError as exc:
            channel.respond(message, msg.C_FIND_RSP, STATUS_IDENTIFIER_MISMATCH, comment=str(exc))
            return
        except Exception as exc:  # an identifier pydicom cannot read
            log.warning("C-FIND from %s: %s", channel.calling_aet, exc)
            channel.respond(
                message,
                msg.C_FIND_RSP,
                STATUS_UNABLE_TO_PROCESS,
                comment="identifier cannot be decoded",
            )
            return
        for match in matches:
            if channel.cancelled(message):
                channel.respond(message, msg.C_FIND_RSP, STATUS_CANCEL)
                return
            result = result_dataset(match, level, self.settings.aet)
            channel.respond(
                message, msg.C_FIND_RSP, STATUS_PENDING, dataset=msg.encode_identifier(result, ts)
            )
        channel.respond(message, msg.C_FIND_RSP, STATUS_SUCCESS)


def start_scp(archive: Archive, settings: Settings, access: AccessControl) -> AssociationRouter:
    """Bind the DICOM port and serve in a background thread; returns the router."""
    scp = ArchiveSCP(archive, settings, access)
    server = AssociationRouter((settings.host, settings.dicom_port), scp)
    server.own_aets = {settings.aet}
    server.accept_any = settings.accept_any_called_aet
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.2},
        name="isthmus-dimse",
        daemon=True,
    )
    thread.start()
    return server
