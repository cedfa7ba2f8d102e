"""The association acceptor: the upper layer of PS3.8 for the archive's own AE title.

It implements what Isthmus's services need: A-ASSOCIATE-AC/RJ with presentation
context and role negotiation (PS3.8 9.3.2-9.3.4, PS3.7 D.3.3.4), P-DATA-TF with PDV
fragmentation (PS3.8 9.3.5, E.2), A-RELEASE and A-ABORT; then DIMSE messages
(PS3.7 9.3, 10.3) go to the handlers of the node's service table (service.py),
looked up by command field and SOP class.  PDUs, their validation, PDVs and socket
I/O come from `isthmus.dicom.ul`, shared with the requestor and the WebSocket
gateway.  PDUs are read ahead (`transport.PDUReader`: one receive for a small
C-STORE's command and data set), each a view of the buffer `recv_into` filled, and a
C-STORE dataset reaches the archive without another copy: pynetdicom's general machinery (a
DUL thread, event queues, copies of every fragment) cost milliseconds per instance.
"""

from __future__ import annotations

import collections
import logging
import select
import socket
import ssl
import threading
import time
from typing import Any

from isthmus import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from isthmus.archive import Activity, EventBus, Transfer
from isthmus.config import Settings
from isthmus.dicom import uids
from isthmus.dicom.status import (
    PENDING,
    PENDING_WARNING,
    SUCCESS,
    UNRECOGNIZED_OPERATION,
    is_warning,
)
from isthmus.dicom.ul import errors, items, pdata, pdu, transport, validation
from isthmus.dicom.ul.errors import PDUError
from isthmus.dicom.ul.items import (
    APPLICATION_CONTEXT,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UserInformation,
)
from isthmus.dimse import messages as msg
from isthmus.dimse.service import Message, ServiceTable

log = logging.getLogger(__name__)

NATIVE = (*uids.UNCOMPRESSED, uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)  # PS3.5 A.1-A.5
RELEASE_GRACE = 2.0  # seconds an N-EVENT-REPORT-RSP may follow the requestor's A-RELEASE-RQ


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
    built, and counts the associations being served, in total and per calling host
    and AE title, for the limits of settings (max_associations, _per_host, _per_aet).
    """

    def __init__(
        self, settings: Settings, services: ServiceTable, activity: Activity | None = None
    ) -> None:
        self.settings = settings
        self.services = services
        # Where associations, queries and transfers are told (audit trail, metrics).
        self.activity = activity if activity is not None else Activity()
        self.associations = 0
        self.per_host: collections.Counter[str] = collections.Counter()
        self.per_aet: collections.Counter[str] = collections.Counter()
        self.associations_lock = threading.Lock()
        # Where associations are announced (``association.opened``/``closed``, read by
        # node/contacts.py for the admin page); set by start_scp.
        self.events: EventBus | None = None

    def announce(self, topic: str, acceptor: Acceptor) -> None:
        if self.events is not None:
            self.events.publish(
                topic,
                {
                    "id": f"in-{id(acceptor):x}",
                    "direction": "inbound",
                    "calling_aet": acceptor.calling_aet.strip(),
                    "called_aet": acceptor.rq.called_aet.strip(),
                    "address": acceptor.address,
                },
                local=True,
            )

    def __call__(self, sock: socket.socket, address: Any, rq: pdu.AAssociateRQ) -> None:
        Acceptor(sock, address, rq, self).run()

    def enter(self, host: str, aet: str) -> str | None:
        """Count one more association; the name of the limit it exceeds, or None."""
        settings = self.settings
        with self.associations_lock:
            self.associations += 1
            self.per_host[host] += 1
            self.per_aet[aet] += 1
            if self.associations > settings.max_associations:
                return "max_associations"
            if self.per_host[host] > settings.max_associations_per_host:
                return "max_associations_per_host"
            if self.per_aet[aet] > settings.max_associations_per_aet:
                return "max_associations_per_aet"
            return None

    def leave(self, host: str, aet: str) -> None:
        with self.associations_lock:
            self.associations -= 1
            for counter, key in ((self.per_host, host), (self.per_aet, aet)):
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]


class Acceptor:
    """Serves one association on a connected socket until release, abort or error."""

    def __init__(
        self, sock: socket.socket, address: Any, rq: pdu.AAssociateRQ, ae: LocalAE
    ) -> None:
        self.sock = sock
        self.reader = transport.PDUReader(sock)  # after the A-ASSOCIATE-RQ: run() reads it
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
        self._pdvs: collections.deque[pdata.Fragment] = collections.deque()
        self._assembler = pdata.Assembler()
        self._cancelled: set[int] = set()
        self._deferred: list[Message] = []
        self._next_id = 1
        self.stored = 0
        self.activity = ae.activity
        self.transfers: dict[tuple[str, str], Transfer] = {}

    # -- association -----------------------------------------------------
    def run(self) -> None:
        ae = self.ae
        counted = (self.address, self.calling_aet)  # the router's view of the request
        too_many = ae.enter(*counted)
        started = time.monotonic()
        announced = False
        try:
            self.sock.settimeout(self.settings.network_timeout)
            self._read_associate_rq()
            if too_many:
                log.warning(
                    "A-ASSOCIATE-RJ to %s (%s): %s exceeded",
                    self.calling_aet,
                    self.address,
                    too_many,
                )
                self._send_quietly(
                    pdu.associate_rj(
                        pdu.RESULT_TRANSIENT,
                        pdu.SOURCE_SERVICE_PROVIDER_PRESENTATION,
                        pdu.REASON_LOCAL_LIMIT_EXCEEDED,
                    )
                )
                self._tell_association(f"{too_many} exceeded")
                return
            if self._accept():
                ae.announce("association.opened", self)
                announced = True
                self._serve()
        except (AbortAssociation, PDUError) as exc:
            log.warning("A-ABORT to %s (%s): %s", self.calling_aet, self.address, exc)
            self._send_quietly(pdu.abort(pdu.ABORT_SOURCE_PROVIDER, exc.reason))
        except (PeerAborted, EOFError, ConnectionError, ssl.SSLError):  # SSLError: TLS gone
            if self.release_requested:  # released in the middle of C-GET sub-operations
                self._send_quietly(pdu.RELEASE_RP)
            log.info("association from %s ended without release", self.calling_aet)
        except transport.PDUTimeout as exc:
            log.warning("A-ABORT to %s: PDU too slow (pdu_timeout): %s", self.calling_aet, exc)
            self._send_quietly(pdu.abort())
        except TimeoutError:
            log.warning("association from %s idle too long: A-ABORT", self.calling_aet)
            self._send_quietly(pdu.abort())
        except Exception:  # a bug must cost this association only, and tell the peer
            log.exception("association from %s: internal error, A-ABORT", self.calling_aet)
            self._send_quietly(pdu.abort())
        finally:
            if announced:
                ae.announce("association.closed", self)
            ae.leave(*counted)
            _close(self.sock)
            for transfer in self.transfers.values():
                transfer.close()
            self.activity.association_ended("dimse", time.monotonic() - started)
            if self.stored:
                log.info(
                    "association from %s: %d instance(s) stored", self.calling_aet, self.stored
                )

    def _read_associate_rq(self) -> None:
        """Read the A-ASSOCIATE-RQ the router peeked at, and decode and validate all of it
        (PS3.8 9.3.2; the policy is `ul.validation`'s)."""
        deadline = time.monotonic() + self.settings.pdu_timeout
        header = transport.recv_exactly(self.sock, pdu.PDU_HEADER, deadline)
        if header[0] != pdu.A_ASSOCIATE_RQ:
            raise AbortAssociation(errors.UNEXPECTED_PDU, "no A-ASSOCIATE-RQ")
        length = transport.check_header(header, self.settings.max_associate_rq - pdu.PDU_HEADER)
        body = transport.recv_exactly(self.sock, length, deadline)
        self.sock.settimeout(self.settings.network_timeout)
        data = bytes(header) + body
        try:
            self.rq = validation.parse_associate_rq(data)
        except PDUError as exc:
            self._tell_malformed(data, exc)
            raise
        self.calling_aet = self.rq.calling_aet
        self.peer_max_pdu = self.rq.max_length

    def _accept(self) -> bool:
        """Negotiate (PS3.8 9.3.3, PS3.7 D.3.2): the first proposed syntax we support."""
        rq = self.rq
        refusal = self._refusal(rq)
        if refusal is not None:
            self._send_quietly(pdu.associate_rj(pdu.RESULT_PERMANENT, *refusal))
            self._tell_association(f"A-ASSOCIATE-RJ source {refusal[0]} reason {refusal[1]}")
            return False
        roles = tuple(
            RoleSelection(
                r.sop_class,
                r.scu_role,
                r.scp_role and r.sop_class in self.services.scp_role_classes,
            )
            for r in rq.roles
        )
        self.scp_role = {r.sop_class for r in roles if r.scp_role}
        results = [self._negotiate(cx) for cx in rq.contexts]
        user = UserInformation(
            max_length=self.settings.max_pdu,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            roles=roles,
        )
        ac = pdu.AAssociateAC(rq.called_aet, rq.calling_aet, user=user, contexts=tuple(results))
        self.sock.sendall(ac.encode())
        self._tell_association(None)
        return True

    def _tell_association(self, refusal: str | None) -> None:
        """Publish the association's result for the audit trail and the metrics."""
        self.activity.association(
            refusal is None, self.calling_aet, self.rq.called_aet, self.address, refusal
        )

    def _tell_malformed(self, data: bytes, error: PDUError) -> None:
        """Audit an A-ASSOCIATE-RQ aborted for a protocol error as an association refused
        (docs/operations.md), with its AE titles as sent: the audit message replaces what
        XML cannot hold."""
        try:
            titles = pdu.parse_titles(data)
            calling, called = titles.calling_aet, titles.called_aet
        except PDUError:
            calling = called = ""
        self.activity.association(False, calling, called, self.address, f"A-ABORT: {error}")

    @property
    def called_aet(self) -> str:
        return self.rq.called_aet

    def transfer(self, event: str, peer: str = "") -> Transfer:
        """The tally of instances this association stores or sends (to `peer`), told
        once, when the association ends (one audit message per study)."""
        key = (event, peer)
        tally = self.transfers.get(key)
        if tally is None:
            tally = self.activity.transfer(
                event,
                "dimse",
                user=self.calling_aet,
                address=self.address,
                local=self.rq.called_aet,
                peer=peer,
            )
            self.transfers[key] = tally
        return tally

    def _refusal(self, rq: pdu.AAssociateRQ) -> tuple[int, int] | None:
        """Source and reason of a permanent A-ASSOCIATE-RJ (PS3.8 9.3.4), or None."""
        if not rq.protocol_version & 1:  # PS3.8 9.3.2: only bit 0 (version 1) is tested
            return pdu.SOURCE_SERVICE_PROVIDER_ACSE, pdu.REASON_PROTOCOL_VERSION_NOT_SUPPORTED
        if rq.application_context != APPLICATION_CONTEXT:
            return pdu.SOURCE_SERVICE_USER, pdu.REASON_APPLICATION_CONTEXT_NOT_SUPPORTED
        if 0 < rq.max_length < pdata.MIN_PEER_MAX_LENGTH:
            # No P-DATA-TF fits (PS3.8 D.1): fragmenting for it would never end.
            log.warning(
                "A-ASSOCIATE-RJ to %s: maximum PDU length %d", rq.calling_aet, rq.max_length
            )
            return pdu.SOURCE_SERVICE_USER, pdu.REASON_NO_REASON
        return None

    def _negotiate(self, cx: PresentationContextRQ) -> PresentationContextAC:
        offered = self.services.transfer_syntaxes(cx.abstract_syntax)
        if not offered:  # no service of the table serves this SOP class
            return PresentationContextAC(
                cx.context_id, items.ABSTRACT_SYNTAX_NOT_SUPPORTED, cx.transfer_syntaxes[0]
            )
        proposed = cx.transfer_syntaxes
        if cx.abstract_syntax in self.scp_role:
            # We send on this context (C-GET sub-operations): a native syntax first, which
            # every stored instance can be turned into (an encoder may refuse an image),
            # and one not yet accepted on another context of the same SOP class, so that
            # a requestor proposing the same list on several contexts gets each of its
            # syntaxes and an instance goes as stored when it proposed that syntax.
            taken = {
                ts for cid, ts in self.syntaxes.items() if self.abstract[cid] == cx.abstract_syntax
            }
            proposed = tuple(sorted(proposed, key=lambda ts: (ts not in NATIVE, ts in taken)))
        choice = next((ts for ts in proposed if ts in offered), None)
        if choice is None:
            return PresentationContextAC(
                cx.context_id, items.TRANSFER_SYNTAXES_NOT_SUPPORTED, cx.transfer_syntaxes[0]
            )
        self.syntaxes[cx.context_id] = choice
        self.abstract[cx.context_id] = cx.abstract_syntax
        return PresentationContextAC(cx.context_id, items.ACCEPTANCE, choice)

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
                self.sock.sendall(pdu.RELEASE_RP)
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
        elif field_ & 0x8000:
            log.info("late response 0x%04X from %s dropped", field_, self.calling_aet)
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
        if field_ == msg.C_STORE_RSP and (status == SUCCESS or is_warning(status)):
            self.stored += 1  # a warning status is stored too (PS3.4 B.2.3)
        fields: dict[int, int | str | bytes] = {
            msg.AFFECTED_SOP_CLASS: msg.sop_class_of(message.command),
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
            pdata.fragment(context_id, command, True, self.peer_max_pdu)
        )
        if dataset is not None:
            parts += pdata.fragment(context_id, dataset, False, self.peer_max_pdu)
        transport.send_all(self.sock, parts)

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
        reply = self._await_response(msg.C_STORE_RSP, message_id)
        if reply is None:  # the requestor may not answer any more (PS3.8 Sta7)
            raise PeerAborted("A-RELEASE-RQ during C-GET sub-operations")
        return msg.us(reply.command, msg.STATUS)

    def _await_response(self, field: int, message_id: int) -> Message | None:
        """Read messages until the response `field` to our request `message_id`; None
        when the requestor asked for release first.  A C-CANCEL-RQ meanwhile is noted,
        another request is deferred (answered after this one)."""
        while True:
            reply = self.next_message()
            if reply is None:
                return None
            responded = msg.us(reply.command, msg.MESSAGE_ID_RESPONDED)
            if reply.field == field and responded == message_id:
                return reply
            if reply.field == msg.C_CANCEL_RQ:
                self._cancelled.add(responded)
            elif not reply.field & 0x8000:
                self._deferred.append(reply)

    def context_for(self, sop_class: str) -> int | None:
        """An accepted presentation context of `sop_class`, or None."""
        return next((cid for cid, a in self.abstract.items() if a == sop_class), None)

    def event_report(
        self,
        context_id: int,
        sop_class: str,
        sop_instance: str,
        event_type: int,
        dataset: bytes | None,
    ) -> int | None:
        """Send N-EVENT-REPORT-RQ to the requestor on this association (PS3.7 10.3.1: the
        performing SCP reports to the SCU that asked, e.g. Storage Commitment, PS3.4 J.3.3)
        and return the status of its response; None when the association can no longer
        carry it (the requestor asked for release: PS3.8 Sta8 lets us send, but a
        requestor that released need not answer), so the caller reports another way."""
        self._take_pending()
        if self.release_requested:
            return None
        message_id = self._next_id
        self._next_id = self._next_id % 65535 + 1
        command = msg.n_event_report_rq(
            message_id, sop_class, sop_instance, event_type, dataset is not None
        )
        self._send_message(context_id, command, dataset)
        reply = self._await_response(msg.N_EVENT_REPORT_RSP, message_id)
        if reply is None:
            return self._response_after_release(message_id)
        return msg.us(reply.command, msg.STATUS)

    def _response_after_release(self, message_id: int) -> int | None:
        """The requestor asked for release while our N-EVENT-REPORT-RQ was on its way.  In
        PS3.8 Sta7 it may still answer, and some do right after their A-RELEASE-RQ
        (pynetdicom, when the request reached it before it released): wait RELEASE_GRACE
        seconds for that answer, so the report is not sent a second time elsewhere."""
        self.release_requested = False
        self.sock.settimeout(RELEASE_GRACE)
        try:
            while (reply := self.next_message()) is not None:
                if (
                    reply.field == msg.N_EVENT_REPORT_RSP
                    and msg.us(reply.command, msg.MESSAGE_ID_RESPONDED) == message_id
                ):
                    return msg.us(reply.command, msg.STATUS)
            return None
        except (TimeoutError, OSError, PDUError):  # no answer: report another way
            return None
        finally:
            self.release_requested = True
            self.sock.settimeout(self.settings.network_timeout)

    def _take_pending(self) -> None:
        """Read, without waiting, what has already arrived: C-CANCEL-RQs are noted, other
        requests deferred, an A-RELEASE-RQ sets release_requested."""
        while not self.release_requested and (
            self._pdvs or self.reader.pending() or _readable(self.sock)
        ):
            other = self.next_message()
            if other is None:
                break
            if other.field == msg.C_CANCEL_RQ:
                self._cancelled.add(msg.us(other.command, msg.MESSAGE_ID_RESPONDED))
            else:
                self._deferred.append(other)

    def cancelled(self, message: Message) -> bool:
        """Has the requestor sent C-CANCEL-RQ for `message` (PS3.7 9.3.2.3)?  Only reads
        when something has arrived (in the socket, or PDVs already read with the request),
        so it does not wait.  After an A-RELEASE-RQ nothing more is read: the operation
        finishes and _serve() answers the release."""
        self._take_pending()
        return message.message_id in self._cancelled

    # -- PDUs and PDVs --------------------------------------------------------
    def next_message(self) -> Message | None:
        """Assemble the next complete message (PS3.8 E.2); None after A-RELEASE-RQ (not
        yet answered: release_requested is set)."""
        assembler = self._assembler
        command: msg.Command | None = None
        while True:
            if self.release_requested:
                assembler.reset()
                return None
            if not self._pdvs:
                if not self._read_p_data():
                    assembler.reset()
                    return None
                continue
            payload = assembler.add(*self._pdvs.popleft())
            if payload is None:
                continue
            context_id = assembler.context_id
            assert context_id is not None
            if command is not None:  # the data set
                assembler.reset()
                return Message(context_id, command, payload)
            try:
                command = msg.decode_command(payload)
            except msg.MalformedCommand as exc:
                raise AbortAssociation(errors.INVALID_PARAMETER, str(exc)) from None
            if msg.us(command, msg.DATASET_TYPE) == msg.NO_DATASET:
                assembler.reset()
                return Message(context_id, command, None)
            assembler.expect_dataset()

    def _read_p_data(self) -> bool:
        """Read one PDU; queue its PDVs.  False after A-RELEASE-RQ (to be answered)."""
        kind, body = self.reader.read(self.settings.max_pdu, self.settings.pdu_timeout)
        if kind == pdu.P_DATA_TF:
            pdata.split_pdvs(memoryview(body), self.syntaxes, self._pdvs)
            return True
        if kind == pdu.A_RELEASE_RQ:
            pdu.check_fixed_length(kind, len(body))
            self.release_requested = True
            return False
        if kind == pdu.A_ABORT:  # of any length: the association ends either way
            raise PeerAborted("A-ABORT from the requestor")
        raise AbortAssociation(errors.UNEXPECTED_PDU, f"unexpected PDU 0x{kind:02X}")

    def _send_quietly(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass


def _readable(sock: socket.socket) -> bool:
    """Is something there to read?  Over TLS, decrypted bytes select() cannot see too."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    ready, _, _ = select.select([sock], [], [], 0)
    return bool(ready)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
