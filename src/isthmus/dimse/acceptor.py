"""The association acceptor: the upper layer of PS3.8 for the archive's own AE title.

It implements what Isthmus's services need: A-ASSOCIATE-AC/RJ with presentation
context and role negotiation (PS3.8 9.3.2-9.3.4, PS3.7 D.3.3.4), P-DATA-TF with PDV
fragmentation (PS3.8 9.3.5, E.2), A-RELEASE and A-ABORT; then DIMSE messages
(PS3.7 9.3, 10.3) go to the handlers of the node's service table (service.py),
looked up by command field and SOP class.  Each PDU is read
straight into one buffer with `recv_into`, and a C-STORE dataset reaches the
archive without another copy: pynetdicom's general machinery (a DUL thread, event
queues, copies of every fragment) cost milliseconds per instance.
"""

from __future__ import annotations

import collections
import logging
import select
import socket
import struct
import threading
from typing import Any

from isthmus import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from isthmus.config import Settings
from isthmus.dicom import pdu, uids
from isthmus.dicom.status import PENDING, PENDING_WARNING, SUCCESS, UNRECOGNIZED_OPERATION
from isthmus.dimse import messages as msg
from isthmus.dimse.service import Message, ServiceTable

log = logging.getLogger(__name__)

NATIVE = (*uids.UNCOMPRESSED, uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)  # PS3.5 A.1-A.5
HARD_PDU_LIMIT = 64 * 1024 * 1024
RESULT_ACCEPT, RESULT_ABSTRACT_NOT_SUPPORTED, RESULT_TS_NOT_SUPPORTED = 0, 3, 4


class AbortAssociation(Exception):
    """Protocol error: abort with this PS3.8 table 9-26 reason."""

    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PeerAborted(Exception):
    """The requestor sent A-ABORT or closed the connection."""


class LocalAE:
    """The node's own AE on the DICOM port: the router's handler for its AE titles.

    It serves each association with an Acceptor, from the service table the node
    built, and counts the associations being served for settings.max_associations.
    """

    def __init__(self, settings: Settings, services: ServiceTable) -> None:
        self.settings = settings
        self.services = services
        self.associations = 0
        self.associations_lock = threading.Lock()

    def __call__(self, sock: socket.socket, address: Any, rq: pdu.AssociateRequest) -> None:
        Acceptor(sock, address, rq, self).run()


class Acceptor:
    """Serves one association on a connected socket until release, abort or error."""

    def __init__(
        self, sock: socket.socket, address: Any, rq: pdu.AssociateRequest, ae: LocalAE
    ) -> None:
        self.sock = sock
        self.address = address[0] if isinstance(address, tuple) else str(address)
        self.rq = rq  # the router's view (maybe AE titles only); run() reads the whole PDU
        self.calling_aet = rq.calling_aet
        self.ae = ae
        self.services = ae.services
        self.settings = ae.settings
        self.syntaxes: dict[int, str] = {}  # accepted context id → transfer syntax
        self.abstract: dict[int, str] = {}  # accepted context id → abstract syntax
        self.scp_role: set[str] = set()  # storage classes we may C-STORE to (C-GET)
        self.peer_max_pdu = 0
        self.release_requested = False  # A-RELEASE-RQ received, not yet answered
        self._pdvs: collections.deque[tuple[int, int, memoryview]] = collections.deque()
        self._cancelled: set[int] = set()
        self._deferred: list[Message] = []
        self._next_id = 1
        self.stored = 0

    # -- association -----------------------------------------------------
    def run(self) -> None:
        ae = self.ae
        with ae.associations_lock:
            ae.associations += 1
            too_many = ae.associations > self.settings.max_associations
        try:
            self.sock.settimeout(self.settings.network_timeout)
            self._read_associate_rq()
            if too_many:
                self._send_quietly(
                    pdu.associate_rj(
                        pdu.RESULT_TRANSIENT,
                        pdu.SOURCE_SERVICE_PROVIDER_PRESENTATION,
                        pdu.REASON_LOCAL_LIMIT_EXCEEDED,
                    )
                )
                return
            if self._accept():
                self._serve()
        except AbortAssociation as exc:
            log.warning("A-ABORT to %s (%s): %s", self.calling_aet, self.address, exc)
            self._send_quietly(pdu.abort(2, exc.reason))
        except (PeerAborted, EOFError, ConnectionError):
            if self.release_requested:  # released in the middle of C-GET sub-operations
                self._send_quietly(pdu.release_rp())
            log.info("association from %s ended without release", self.calling_aet)
        except TimeoutError:
            log.warning("association from %s idle too long: A-ABORT", self.calling_aet)
            self._send_quietly(pdu.abort(2, 0))
        except Exception:  # a bug must cost this association only, and tell the peer
            log.exception("association from %s: internal error, A-ABORT", self.calling_aet)
            self._send_quietly(pdu.abort(2, 0))
        finally:
            with ae.associations_lock:
                ae.associations -= 1
            _close(self.sock)
            if self.stored:
                log.info(
                    "association from %s: %d instance(s) stored", self.calling_aet, self.stored
                )

    def _read_associate_rq(self) -> None:
        """Read the A-ASSOCIATE-RQ the router peeked at and parse all of it (PS3.8 9.3.2)."""
        kind, body = self._read_pdu()
        if kind != pdu.A_ASSOCIATE_RQ or len(body) > pdu.MAX_ASSOCIATE_RQ:
            raise AbortAssociation(pdu.ABORT_UNEXPECTED_PDU, "no A-ASSOCIATE-RQ")
        try:
            self.rq = pdu.parse_associate_rq(struct.pack(">BBI", kind, 0, len(body)) + body)
        except pdu.PDUError as exc:
            raise AbortAssociation(pdu.ABORT_INVALID_PARAMETER, str(exc)) from None
        self.calling_aet = self.rq.calling_aet
        self.peer_max_pdu = self.rq.max_length

    def _accept(self) -> bool:
        """Negotiate (PS3.8 9.3.3, PS3.7 D.3.2): the first proposed syntax we support."""
        rq = self.rq
        if not rq.protocol_version & 1:
            self._send_quietly(
                pdu.associate_rj(pdu.RESULT_PERMANENT, pdu.SOURCE_SERVICE_PROVIDER_ACSE, 2)
            )
            return False
        if rq.application_context != pdu.APPLICATION_CONTEXT:
            self._send_quietly(pdu.associate_rj(pdu.RESULT_PERMANENT, pdu.SOURCE_SERVICE_USER, 2))
            return False
        if 0 < rq.max_length < pdu.MIN_PEER_MAX_LENGTH:
            # No P-DATA-TF fits (PS3.8 D.1): fragmenting for it would never end.
            log.warning(
                "A-ASSOCIATE-RJ to %s: maximum PDU length %d", self.calling_aet, rq.max_length
            )
            self._send_quietly(
                pdu.associate_rj(
                    pdu.RESULT_PERMANENT, pdu.SOURCE_SERVICE_USER, pdu.REASON_NO_REASON
                )
            )
            return False
        roles = tuple(
            pdu.RoleSelection(
                r.sop_class,
                r.scu_role,
                r.scp_role and r.sop_class in self.services.scp_role_classes,
            )
            for r in rq.roles
        )
        self.scp_role = {r.sop_class for r in roles if r.scp_role}
        results = [self._negotiate(cx) for cx in rq.contexts]
        self.sock.sendall(
            pdu.associate_ac(
                rq,
                results,
                self.settings.max_pdu,
                IMPLEMENTATION_CLASS_UID,
                IMPLEMENTATION_VERSION_NAME,
                roles,
            )
        )
        return True

    def _negotiate(self, cx: pdu.PresentationContextRQ) -> tuple[int, int, str]:
        offered = self.services.transfer_syntaxes(cx.abstract_syntax)
        if not offered:  # no service of the table serves this SOP class
            return cx.context_id, RESULT_ABSTRACT_NOT_SUPPORTED, cx.transfer_syntaxes[0]
        proposed = cx.transfer_syntaxes
        if cx.abstract_syntax in self.scp_role:
            # We send on this context (C-GET sub-operations): a native syntax first, which
            # every stored instance can be turned into; an encoder may refuse an image.
            proposed = tuple(sorted(proposed, key=lambda ts: ts not in NATIVE))
        choice = next((ts for ts in proposed if ts in offered), None)
        if choice is None:
            return cx.context_id, RESULT_TS_NOT_SUPPORTED, cx.transfer_syntaxes[0]
        self.syntaxes[cx.context_id] = choice
        self.abstract[cx.context_id] = cx.abstract_syntax
        return cx.context_id, RESULT_ACCEPT, choice

    def _serve(self) -> None:
        """Messages in order until A-RELEASE-RQ, answered once every message received
        before it has been answered (PS3.8 7.2 and state Sta8: after an A-RELEASE
        indication the acceptor may still send P-DATA)."""
        while True:
            if self._deferred:
                message: Message | None = self._deferred.pop(0)
            else:
                message = None if self.release_requested else self.next_message()
            if message is None:
                self.sock.sendall(pdu.release_rp())
                return
            self._dispatch(message)

    # -- DIMSE dispatch -------------------------------------------------------
    def _dispatch(self, message: Message) -> None:
        """Hand `message` to its service in the table (PS3.7 9.3, 10.3)."""
        field_ = message.field
        service = self.services.service_for(message, self.abstract[message.context_id])
        if service is not None:
            service.handler(self, message)
        elif field_ == msg.C_CANCEL_RQ:
            pass  # nothing outstanding: a late cancel is ignored (PS3.7 9.3.2.3)
        else:
            self.respond(message, field_ | 0x8000, UNRECOGNIZED_OPERATION)

    # -- what services use ------------------------------------------------
    def transfer_syntax(self, message: Message) -> str:
        return self.syntaxes[message.context_id]

    def abstract_syntax(self, message: Message) -> str:
        return self.abstract[message.context_id]

    def respond(
        self,
        message: Message,
        field_: int,
        status: int,
        dataset: bytes | None = None,
        comment: str | None = None,
        extra: dict[int, Any] | None = None,
    ) -> None:
        """Send a response to `message` (PS3.7 9.3: Message ID Being Responded To, Status)."""
        if field_ == msg.C_STORE_RSP and status == SUCCESS:
            self.stored += 1
        fields: dict[int, int | str | bytes] = {
            msg.AFFECTED_SOP_CLASS: msg.text(message.command, msg.AFFECTED_SOP_CLASS),
            msg.COMMAND_FIELD: field_,
            msg.MESSAGE_ID_RESPONDED: message.message_id,
            msg.DATASET_TYPE: msg.NO_DATASET if dataset is None else msg.HAS_DATASET,
            msg.STATUS: status,
        }
        if comment and status not in (SUCCESS, PENDING, PENDING_WARNING):  # failures, warnings
            fields[msg.ERROR_COMMENT] = comment[:64]
        fields.update(extra or {})
        self._send_message(message.context_id, msg.encode_command(fields), dataset)

    def _send_message(
        self, context_id: int, command: bytes, dataset: bytes | memoryview | None
    ) -> None:
        parts: list[bytes | memoryview] = list(
            msg.p_data(context_id, command, True, self.peer_max_pdu)
        )
        if dataset is not None:
            parts += msg.p_data(context_id, dataset, False, self.peer_max_pdu)
        msg.send_all(self.sock, parts)

    def storage_syntaxes(self, sop_class: str) -> dict[str, int]:
        """Transfer syntax → context id, for C-STORE sub-operations to the requestor (C-GET)."""
        if sop_class not in self.scp_role:
            return {}
        return {ts: cid for cid, ts in self.syntaxes.items() if self.abstract[cid] == sop_class}

    def store_to_requestor(
        self, context_id: int, sop_class: str, sop_instance: str, dataset: bytes | memoryview
    ) -> int:
        """A C-STORE sub-operation on this association (C-GET, PS3.4 C.4.3.3); returns status."""
        message_id = self._next_id
        self._next_id = self._next_id % 65535 + 1
        self._send_message(context_id, msg.c_store_rq(message_id, sop_class, sop_instance), dataset)
        while True:
            reply = self.next_message()
            if reply is None:  # the requestor may not answer any more (PS3.8 Sta7)
                raise PeerAborted("A-RELEASE-RQ during C-GET sub-operations")
            if (
                reply.field == msg.C_STORE_RSP
                and msg.us(reply.command, msg.MESSAGE_ID_RESPONDED) == message_id
            ):
                return msg.us(reply.command, msg.STATUS)
            if reply.field == msg.C_CANCEL_RQ:
                self._cancelled.add(msg.us(reply.command, msg.MESSAGE_ID_RESPONDED))
            elif not reply.field & 0x8000:
                self._deferred.append(reply)  # a request: answered after this one

    def cancelled(self, message: Message) -> bool:
        """Has the requestor sent C-CANCEL-RQ for `message` (PS3.7 9.3.2.3)?  Only reads
        when something has arrived (in the socket, or PDVs already read with the request),
        so it does not wait.  After an A-RELEASE-RQ nothing more is read: the operation
        finishes and _serve() answers the release."""
        while not self.release_requested and (self._pdvs or _readable(self.sock)):
            other = self.next_message()
            if other is None:
                break
            if other.field == msg.C_CANCEL_RQ:
                self._cancelled.add(msg.us(other.command, msg.MESSAGE_ID_RESPONDED))
            else:
                self._deferred.append(other)
        return message.message_id in self._cancelled

    # -- PDUs and PDVs --------------------------------------------------------
    def next_message(self) -> Message | None:
        """Assemble the next complete message; None after A-RELEASE-RQ (not yet answered:
        release_requested is set)."""
        context_id, command, fragments = None, None, []
        while True:
            if self.release_requested:
                return None
            if not self._pdvs:
                if not self._read_p_data():
                    return None
                continue
            cid, control, data = self._pdvs.popleft()
            if context_id is None:
                if not control & 1:
                    raise AbortAssociation(pdu.ABORT_UNEXPECTED_PARAMETER, "dataset before command")
                context_id = cid
            if cid != context_id:
                raise AbortAssociation(
                    pdu.ABORT_UNEXPECTED_PARAMETER, "context changed mid-message"
                )
            is_command, is_last = bool(control & 1), bool(control & 2)
            if is_command != (command is None):
                raise AbortAssociation(
                    pdu.ABORT_UNEXPECTED_PARAMETER, "command and dataset interleaved"
                )
            fragments.append(data)
            if not is_last:
                continue
            if command is None:
                try:
                    command = msg.decode_command(b"".join(fragments))
                except msg.MalformedCommand as exc:
                    raise AbortAssociation(pdu.ABORT_INVALID_PARAMETER, str(exc)) from None
                fragments = []
                if msg.us(command, msg.DATASET_TYPE) == msg.NO_DATASET:
                    return Message(context_id, command, None)
                continue
            dataset = fragments[0] if len(fragments) == 1 else memoryview(b"".join(fragments))
            return Message(context_id, command, dataset)

    def _read_p_data(self) -> bool:
        """Read one PDU; queue its PDVs.  False after A-RELEASE-RQ (to be answered)."""
        kind, body = self._read_pdu()
        if kind == pdu.A_RELEASE_RQ:
            self.release_requested = True
            return False
        if kind == pdu.A_ABORT:
            raise PeerAborted("A-ABORT from the requestor")
        if kind != pdu.P_DATA_TF:
            raise AbortAssociation(pdu.ABORT_UNEXPECTED_PDU, f"unexpected PDU 0x{kind:02X}")
        view = memoryview(body)
        pos = 0
        while pos < len(body):
            if len(body) - pos < 6:
                raise AbortAssociation(pdu.ABORT_INVALID_PARAMETER, "truncated PDV item")
            length = struct.unpack_from(">I", body, pos)[0]
            context_id, control = body[pos + 4], body[pos + 5]
            if length < 2 or pos + 4 + length > len(body):
                raise AbortAssociation(pdu.ABORT_INVALID_PARAMETER, "PDV length overruns PDU")
            if context_id not in self.syntaxes:
                raise AbortAssociation(
                    pdu.ABORT_INVALID_PARAMETER,
                    f"PDV on unaccepted presentation context {context_id}",
                )
            self._pdvs.append((context_id, control, view[pos + 6 : pos + 4 + length]))
            pos += 4 + length
        return True

    def _read_pdu(self) -> tuple[int, bytearray]:
        header = msg.recv_exactly(self.sock, 6)
        kind, length = header[0], struct.unpack(">I", header[2:6])[0]
        if kind not in pdu.PDU_TYPES:
            raise AbortAssociation(pdu.ABORT_UNRECOGNIZED_PDU, f"PDU type 0x{kind:02X}")
        if length > HARD_PDU_LIMIT:
            raise AbortAssociation(pdu.ABORT_INVALID_PARAMETER, f"PDU of {length} bytes")
        return kind, msg.recv_exactly(self.sock, length)

    def _send_quietly(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass


def _readable(sock: socket.socket) -> bool:
    ready, _, _ = select.select([sock], [], [], 0)
    return bool(ready)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
