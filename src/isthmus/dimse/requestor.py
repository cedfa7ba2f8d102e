"""A lean storage requestor: C-STORE of stored bytes to a peer (PS3.7 9.1.1, PS3.8 9.3).

C-MOVE sub-operations send instances exactly as stored; going through pynetdicom
would decode and re-encode every dataset.  This opens an association, negotiates
the presentation contexts the caller asks for, and sends each dataset's bytes in
P-DATA fragments sized to the peer's maximum PDU length.  PDUs, their validation and
PDVs come from `isthmus.dicom.ul`, as for the acceptor.  With an SSL context
(node.tls.client_context) the association runs over TLS (PS3.15 Annex B), the peer's
certificate verified for its host.
"""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass, field

from isthmus import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from isthmus.config import Peer
from isthmus.dicom.ul import pdata, pdu, transport, validation
from isthmus.dicom.ul.errors import PDUError
from isthmus.dicom.ul.items import PresentationContextRQ, RoleSelection, UserInformation
from isthmus.dimse import messages as msg
from isthmus.node.sockets import set_nodelay

log = logging.getLogger(__name__)

OUR_MAX_PDU = 262_144


class AssociationFailed(ConnectionError):
    """The peer could not be reached, rejected the association or aborted it."""


@dataclass
class Requestor:
    """One association to a storage SCP."""

    peer: Peer
    calling_aet: str
    contexts: list[tuple[str, list[str]]]  # (abstract syntax, transfer syntaxes) per context
    timeout: float = 60.0
    tls: ssl.SSLContext | None = None  # TLS when set (peers with `tls`)
    sock: socket.socket | None = None
    accepted: dict[tuple[str, str], int] = field(default_factory=dict)  # (class, ts) → id
    syntax_of: dict[int, str] = field(default_factory=dict)  # accepted context id → ts
    scp_roles: tuple[str, ...] = ()  # classes we serve as SCP on it (C-GET, PS3.7 D.3.3.4)
    max_pdu: int = 0
    _next_id: int = 1

    def open(self) -> Requestor:
        if len(self.contexts) > 128:
            raise ValueError("at most 128 presentation contexts (PS3.8 9.3.2.2)")
        if self.peer.tls and self.tls is None:  # never a peer that must use TLS in clear
            raise AssociationFailed(f"{self.peer} is called over TLS: no TLS context given")
        try:
            self.sock = socket.create_connection(
                (self.peer.host, self.peer.port), timeout=self.timeout
            )
        except OSError as exc:
            raise AssociationFailed(f"cannot connect to {self.peer}: {exc}") from exc
        set_nodelay(self.sock)
        if self.tls is not None:
            self._secure(self.tls)
        try:
            self.sock.sendall(self._associate_rq())
            kind, body = self._read_pdu()
        except OSError as exc:  # AssociationFailed included: the socket is not ours to keep
            self.close()
            raise AssociationFailed(
                f"{self.peer} did not answer the A-ASSOCIATE-RQ: {exc}"
            ) from exc
        if kind == pdu.A_ASSOCIATE_RJ:
            self.close()
            try:
                rj = validation.validate_associate_rj(
                    pdu.AAssociateRJ.decode(pdu.header(kind, len(body)) + body)
                )
            except PDUError as exc:
                raise AssociationFailed(f"{self.peer} sent a bad A-ASSOCIATE-RJ: {exc}") from None
            raise AssociationFailed(
                f"{self.peer} rejected the association "
                f"(result {rj.result}, source {rj.source}, reason {rj.reason})"
            )
        if kind != pdu.A_ASSOCIATE_AC:
            self.abort()
            raise AssociationFailed(f"{self.peer} answered PDU 0x{kind:02X} to A-ASSOCIATE-RQ")
        self._read_ac(pdu.header(kind, len(body)) + body)
        if 0 < self.max_pdu < pdata.MIN_PEER_MAX_LENGTH:  # no P-DATA-TF would fit (PS3.8 D.1)
            self.abort()
            raise AssociationFailed(f"{self.peer} accepts PDUs of {self.max_pdu} bytes at most")
        return self

    def _secure(self, context: ssl.SSLContext) -> None:
        """The TLS handshake, within the timeout; AssociationFailed when it fails."""
        assert self.sock is not None
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=self.peer.host)
        except (OSError, ValueError) as exc:  # ssl.SSLError (certificate), timeout, reset
            self.close()
            raise AssociationFailed(f"TLS with {self.peer} failed: {exc}") from exc

    def _associate_rq(self) -> bytes:
        """Our A-ASSOCIATE-RQ (PS3.8 9.3.2): context IDs 1, 3, 5... in the caller's order."""
        contexts = tuple(
            PresentationContextRQ(2 * index + 1, abstract, tuple(syntaxes))
            for index, (abstract, syntaxes) in enumerate(self.contexts)
        )
        user = UserInformation(
            max_length=OUR_MAX_PDU,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            roles=tuple(RoleSelection(c, scu_role=False, scp_role=True) for c in self.scp_roles),
        )
        rq = pdu.AAssociateRQ(self.peer.aet, self.calling_aet, user=user, contexts=contexts)
        return rq.encode()

    def _read_ac(self, data: bytes) -> None:
        """Accepted contexts and the peer's maximum PDU length (PS3.8 9.3.3)."""
        proposed = {2 * i + 1: abstract for i, (abstract, _ts) in enumerate(self.contexts)}
        try:
            ac = validation.parse_associate_ac(data, proposed)
        except PDUError as exc:
            self.abort()
            raise AssociationFailed(f"{self.peer} sent a bad A-ASSOCIATE-AC: {exc}") from None
        for cx in ac.contexts:
            if cx.result == 0 and cx.transfer_syntax is not None:
                self.syntax_of[cx.context_id] = cx.transfer_syntax
                self.accepted.setdefault(
                    (proposed[cx.context_id], cx.transfer_syntax), cx.context_id
                )
        self.max_pdu = ac.max_length

    def context_for(self, sop_class: str, transfer_syntax: str) -> int | None:
        return self.accepted.get((sop_class, transfer_syntax))

    def accepted_syntaxes(self, sop_class: str) -> list[str]:
        return [ts for (abstract, ts) in self.accepted if abstract == sop_class]

    def store(
        self,
        context_id: int,
        sop_class: str,
        sop_instance: str,
        dataset: bytes | memoryview,
        originator: tuple[str, int] | None = None,
    ) -> int:
        """C-STORE one dataset; returns the response status (PS3.4 B.2.3).  Raises
        AssociationFailed when the association is gone (then it stays closed)."""
        if self.sock is None:
            raise AssociationFailed(f"the association with {self.peer} has ended")
        message_id = self._next_id
        self._next_id = self._next_id % 65535 + 1
        command = msg.c_store_rq(message_id, sop_class, sop_instance, originator)
        parts: list[bytes | memoryview] = list(
            pdata.fragment(context_id, command, True, self.max_pdu)
        )
        parts += pdata.fragment(context_id, dataset, False, self.max_pdu)
        try:
            transport.send_all(self.sock, parts)
            return self._response(message_id)
        except OSError as exc:  # reset, timeout, A-ABORT: no later C-STORE can succeed
            self.abort()
            if isinstance(exc, AssociationFailed):
                raise
            raise AssociationFailed(f"association with {self.peer} failed: {exc}") from exc

    def _response(self, message_id: int) -> int:
        """The status of the response to `message_id` (PS3.7 9.3.1.2); other responses,
        and any data set one carries, are read and dropped."""
        assembler = pdata.Assembler()
        while True:
            kind, body = self._read_pdu()
            if kind == pdu.A_ABORT:
                raise AssociationFailed(f"{self.peer} aborted the association")
            if kind != pdu.P_DATA_TF:
                raise AssociationFailed(f"unexpected PDU 0x{kind:02X} from {self.peer}")
            try:
                for fragment in pdata.split_pdvs(memoryview(body)):
                    payload = assembler.add(*fragment)
                    if payload is None:
                        continue
                    if not assembler.in_command:  # a data set: nothing we asked for
                        assembler.reset()
                        continue
                    command = msg.decode_command(payload)
                    if msg.us(command, msg.DATASET_TYPE) != msg.NO_DATASET:
                        assembler.expect_dataset()
                        continue
                    assembler.reset()
                    if msg.us(command, msg.MESSAGE_ID_RESPONDED) == message_id:
                        return msg.us(command, msg.STATUS)
            except (PDUError, msg.MalformedCommand) as exc:
                raise AssociationFailed(f"{self.peer} sent a bad response: {exc}") from exc

    def release(self) -> None:
        """A-RELEASE (PS3.8 7.2); closes the connection whatever the peer says."""
        if self.sock is None:
            return
        try:
            self.sock.sendall(pdu.RELEASE_RQ)
            self._read_pdu()
        except (OSError, EOFError, AssociationFailed):
            pass
        self.close()

    def abort(self) -> None:
        if self.sock is not None:
            try:
                self.sock.sendall(pdu.abort(pdu.ABORT_SOURCE_USER, 0))
            except OSError:
                pass
            self.close()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def _read_pdu(self) -> tuple[int, bytearray]:
        assert self.sock is not None
        try:
            return transport.read_pdu(self.sock)
        except PDUError as exc:
            raise AssociationFailed(f"{self.peer} sent a bad PDU: {exc}") from exc
        except EOFError as exc:
            raise AssociationFailed(f"{self.peer} closed the connection") from exc
